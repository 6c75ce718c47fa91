"""``LiveTrainer``: the learning side of the event engine's live mode (``fedsim.engine.live.Trainer``).

The engine calls one method per compute event, at that event's simulated start time; each call runs the
matching real computation on the split-federated system. ``end_round`` evaluates validation perplexity
when ``eval_every`` steps have passed (and on the last round of ``cfg.steps``), appends a curve row stamped
with the simulated time, and returns True once the target perplexity is reached. When the run ends, the
runner calls ``final_metrics()`` (test perplexity, generation BLEU / ROUGE-L), which the record then holds.

Scenario runner usage::

    trainer = LiveTrainer.from_config(cfg, progress=True, source="scenarios/live.toml")
    result = simulate(drop, workload, alloc, cfg.batch_size, cfg.local_iterations, max_rounds, engine_cfg,
                      rng, trainer=trainer)
    trainer.final_metrics()
    trainer.record().save("results/records/...json")
"""

from __future__ import annotations

from collections.abc import Sequence

from tqdm.auto import tqdm

from fedsim.learn.config import TrainConfig
from fedsim.learn.records import ConvergenceRecord
from fedsim.learn.systems import SplitFedSystem, build_system
from fedsim.learn.train import TrainData, final_metrics, make_record, perplexity


class LiveTrainer:
    """Real split-LoRA training driven event by event (contract: ``fedsim/engine/live.py``)."""

    def __init__(self, system: SplitFedSystem, cfg: TrainConfig, data: TrainData, progress: bool = False,
                 source: str = ""):  # fmt: skip
        self.system, self.cfg, self.data, self.source = system, cfg, data, source
        self.eval_batch = cfg.batch_size * cfg.num_clients
        self.steps = 0  # local iterations completed (server steps over a full set of clients count as one)
        self._round_losses: list[float] = []
        self._last_eval_step = 0
        self.final: dict | None = None  # set by final_metrics()
        self.curve: list[dict] = [
            {"step": 0, "round": 0.0, "val_ppl": perplexity(system, data, self.eval_batch), "sim_time_s": 0.0}
        ]
        self._cut_rows = [{"round": 0, "client": k, "cut": c} for k, c in enumerate(system.layout.cuts)]
        self._bar = tqdm(
            total=cfg.steps // cfg.local_iterations, disable=not progress, desc="live", unit="round"
        )

    @classmethod
    def from_config(cls, cfg: TrainConfig, model=None, data: TrainData | None = None, progress: bool = True,
                    source: str = "") -> LiveTrainer:  # fmt: skip
        """Load the model and E2E data ``cfg`` names (unless given) and build the split-federated system."""
        if cfg.scheme != "split_fed":
            raise ValueError("live co-simulation drives the split_fed scheme")
        if model is None or data is None:
            from fedsim.learn.setup import load

            model, _, data = load(cfg, progress=progress)
        return cls(build_system(model, cfg, data.train, data.partition), cfg, data, progress, source)

    # --- the engine's Trainer protocol ---
    def client_forward(self, client: int) -> None:
        self.system.client_forward(client)

    def server_step(self, clients: Sequence[int]) -> None:
        self._round_losses.append(self.system.server_step(list(clients)))

    def client_backward(self, client: int) -> None:
        self.system.client_backward(client)

    def aggregate(self, clients: Sequence[int]) -> None:
        self.system.aggregate(list(clients))

    def take_cut_moves(self) -> list[dict]:
        """SplitFT: the blocks moved by the adaptive cut rule since the last call (the engine charges them)."""
        adapter = self.system.adapter
        return adapter.take_moves() if adapter is not None else []

    def layout(self):
        """(cuts (K,), ranks (K, J)) as the engine times them (``fedsim.learn.layout.Layout``)."""
        return list(self.system.layout.cuts), self.system.layout.ranks_matrix()

    def cut_rows(self) -> list[dict]:
        """One row per (round, client): client k's cut after round r (what it runs next; round 0 = start)."""
        return list(self._cut_rows)

    def cut_changes(self) -> list[dict]:
        """Every change of the adaptive rule: round, client, old, new, blocks, score, loss, reason."""
        adapter = self.system.adapter
        return list(adapter.rows) if adapter is not None else []

    def end_round(self, round_index: int, sim_time_s: float) -> bool:
        """Log the round; evaluate when due. True = target perplexity reached (the engine stops)."""
        self.steps = (round_index + 1) * self.cfg.local_iterations
        row = {"step": self.steps, "round": float(round_index + 1), "sim_time_s": float(sim_time_s)}
        if self._round_losses:
            row["train_loss"] = sum(self._round_losses) / len(self._round_losses)
        self._round_losses = []
        due = self.steps // self.cfg.eval_every > self._last_eval_step // self.cfg.eval_every
        if due or self.steps >= self.cfg.steps:
            row["val_ppl"] = perplexity(self.system, self.data, self.eval_batch)
            self._last_eval_step = self.steps
        self.curve.append(row)
        self._cut_rows += [
            {"round": round_index + 1, "client": k, "cut": c} for k, c in enumerate(self.system.layout.cuts)
        ]
        self._bar.update(1)
        reached = self.cfg.target_ppl is not None and row.get("val_ppl", float("inf")) <= self.cfg.target_ppl
        if reached:
            self._bar.close()
        return reached

    def final_metrics(self) -> dict:
        """End-of-run evaluation of the deployed split model (``fedsim.learn.train.final_metrics``): test
        perplexity and, if ``cfg.generate_mrs`` > 0, BLEU / ROUGE-L of generation on the test MRs. Stored for
        ``record()``."""
        self._bar.close()
        self.final = final_metrics(self.system, self.cfg, self.data)
        return self.final

    def record(self) -> ConvergenceRecord:
        """The convergence record so far (curve rows also carry ``sim_time_s``; ``final`` once computed)."""
        return make_record(self.cfg, self.curve, self.source, self.final)
