"""``LiveTrainer``: the learning side of the event engine's live mode (``fedsim.engine.trainer.Trainer``).

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

Checkpoints (``cfg.checkpoint_every`` steps, ``cfg.checkpoint_path``): at the end of a round the trainer
saves the whole training state (``fedsim.learn.checkpoint``: every LoRA, optimiser and data order, the torch
RNG, the curve) plus what the engine needs to time the same rounds again: per round the blocks the adaptive
cut rule moved, the layout after them and whether the run stopped, and the simulated time at the end of
the round. A SimPy run cannot be saved (its processes are generators), so a resumed run *replays* the
engine from the start with the same seeded RNG: the trainer answers the replayed rounds from that log
without computing anything, checks that the replayed clock reaches the saved simulated time exactly, then
loads the training state and continues live. Curve, engine rows and simulated times equal an
uninterrupted run's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from fedsim.errors import InputError
from fedsim.learn.checkpoint import restore_rng, resume_point, save_checkpoint
from fedsim.learn.config import TrainConfig
from fedsim.learn.federated.systems import SplitFedSystem, build_system
from fedsim.learn.records import ConvergenceRecord
from fedsim.learn.train import TrainData, final_metrics, make_record, perplexity


class LiveTrainer:
    """Real split-LoRA training driven event by event (contract: ``fedsim/engine/trainer.py``)."""

    def __init__(self, system: SplitFedSystem, cfg: TrainConfig, data: TrainData, progress: bool = False,
                 source: str = ""):  # fmt: skip
        self.system, self.cfg, self.data, self.source = system, cfg, data, source
        self.eval_batch = cfg.batch_size * cfg.num_clients
        self.steps = 0  # local iterations completed (server steps over a full set of clients count as one)
        self._round_losses: list[float] = []
        self._last_eval_step = 0
        self.final: dict | None = None  # set by final_metrics()
        self._ckpt = Path(cfg.checkpoint_path) if cfg.checkpoint_every and cfg.checkpoint_path else None
        self._resume = resume_point(self._ckpt, cfg.model_dump())
        self._rounds = 0  # rounds ended so far (replayed ones included)
        self._log: list[dict] = []  # per round: blocks moved, layout after them, stop (what the engine saw)
        self._replay_layout: tuple[list, list] | None = None
        self.curve: list[dict] = []
        if self._resume is not None:
            if "live" not in self._resume:
                raise InputError(f"checkpoint {self._ckpt}: not a live-run checkpoint; delete it or rename it")
            self._log = [dict(r) for r in self._resume["live"]["log"]]
        else:
            ppl = perplexity(system, data, self.eval_batch)
            self.curve = [{"step": 0, "round": 0.0, "val_ppl": ppl, "sim_time_s": 0.0}]
        self._cut_rows = [{"round": 0, "client": k, "cut": c} for k, c in enumerate(system.layout.cuts)]
        self.allocator = None  # set_allocator: the radio re-optimised after cut moves (issue 23)
        self._bar = tqdm(
            total=cfg.steps // cfg.local_iterations, disable=not progress, desc="live", unit="round"
        )

    @property
    def replaying(self) -> bool:
        """True while a resumed run replays the rounds its checkpoint already holds (no computation)."""
        return self._resume is not None

    @classmethod
    def from_config(
        cls,
        cfg: TrainConfig,
        model=None,
        data: TrainData | None = None,
        *,
        progress: bool = True,
        source: str = "",
    ) -> LiveTrainer:
        """Load the model and E2E data ``cfg`` names (unless given) and build the split-federated system."""
        if cfg.scheme != "split_fed":
            raise ValueError("live co-simulation drives the split_fed scheme")
        if model is None or data is None:
            from fedsim.learn.setup import load

            model, _, data = load(cfg, progress=progress)
        return cls(
            build_system(model, cfg, data.train, partition=data.partition), cfg, data, progress, source
        )

    # --- the engine's Trainer protocol ---
    def client_forward(self, client: int) -> None:
        if not self.replaying:
            self.system.client_forward(client)

    def server_step(self, clients: Sequence[int]) -> None:
        if not self.replaying:
            self._round_losses.append(self.system.server_step(list(clients)))

    def client_backward(self, client: int) -> None:
        if not self.replaying:
            self.system.client_backward(client)

    def aggregate(self, clients: Sequence[int]) -> None:
        if not self.replaying:
            self.system.aggregate(list(clients))

    def take_cut_moves(self) -> list[dict]:
        """SplitFT: the blocks moved by the adaptive cut rule since the last call (the engine charges them)."""
        if self.replaying:
            logged = self._log[self._rounds]
            if logged["moves"]:
                self._replay_layout = logged["layout"]
            return [dict(m) for m in logged["moves"]]
        adapter = self.system.adapter
        moves = adapter.take_moves() if adapter is not None else []
        layout = None
        if moves:
            cuts, ranks = self.layout()
            layout = [cuts, ranks]
        self._log.append(_plain({"moves": moves, "layout": layout, "stop": False}))
        return moves

    def probe_batches(self) -> list[float] | None:
        """The score rule's probe (``adaptive_cuts.probe_size``): per client, its probe set in batches of
        ``batch_size`` (n_k / b), measured after every aggregation; the engine times those forward passes.
        None without a probe. Fixed by the config, so replayed rounds are timed the same."""
        adapter = self.system.adapter
        if adapter is None or adapter.probes is None:
            return None
        return [len(p) / self.cfg.batch_size for p in adapter.probes]

    def set_allocator(self, allocator) -> None:
        """SplitFT with the radio re-optimised after cut moves: ``allocator(round_index, cuts, ranks)`` returns
        the new radio allocation for the layout after a move (built above ``fedsim.learn``, which may not import
        the optimiser; ``fedsim.experiments.live.cut_planner.LinkReallocator``)."""
        self.allocator = allocator

    @property
    def reallocates(self) -> bool:
        """True when the engine is to take a new radio allocation after each cut move (``take_allocation``)."""
        return self.allocator is not None

    def take_allocation(self, round_index: int):
        """The radio allocation for the layout after the moves of round ``round_index`` (the engine calls this
        after ``take_cut_moves`` returned moves), or None without an allocator. Deterministic in the layout, so
        a resumed run's replayed rounds get the same allocations."""
        if self.allocator is None:
            return None
        cuts, ranks = self.layout()
        return self.allocator(round_index, cuts, ranks)

    def layout(self):
        """(cuts (K,), ranks (K, J)) as the engine times them (``fedsim.learn.split.layout.Layout``)."""
        if self.replaying and self._replay_layout is not None:
            cuts, ranks = self._replay_layout
            return list(cuts), np.asarray(ranks, dtype=int)
        return list(self.system.layout.cuts), self.system.layout.ranks_matrix()

    def cut_rows(self) -> list[dict]:
        """One row per (round, client): client k's cut after round r (what it runs next; round 0 = start)."""
        return list(self._cut_rows)

    def cut_changes(self) -> list[dict]:
        """Every change of the adaptive rule: round, client, old, new, blocks, score, loss, reason."""
        adapter = self.system.adapter
        return list(adapter.rows) if adapter is not None else []

    def quality_rows(self) -> list[dict]:
        """Adaptive cuts: per round and client the batch, probe and EMA loss (the score rule's quality signal)."""
        adapter = self.system.adapter
        return list(adapter.quality_rows) if adapter is not None else []

    def quality_noise(self) -> list[dict]:
        """Adaptive cuts: per client the round-to-round noise of each quality signal (``CutAdapter.quality_noise``)."""
        adapter = self.system.adapter
        return adapter.quality_noise() if adapter is not None else []

    def end_round(self, round_index: int, sim_time_s: float) -> bool:
        """Log the round; evaluate when due; checkpoint when due. True = target perplexity reached (the engine
        stops)."""
        if len(self._log) == self._rounds and not self.replaying:  # an engine that never asks for moves
            self._log.append({"moves": [], "layout": None, "stop": False})
        if self.replaying:
            return self._replayed(round_index, sim_time_s)
        self._rounds += 1
        before = self.steps
        reached = self._end_round(round_index, sim_time_s)
        self._log[-1]["stop"] = bool(reached)
        every = self.cfg.checkpoint_every
        if self._ckpt is not None and (self.steps // every > before // every or reached):
            live = _plain({"rounds": self._rounds, "sim_time_s": float(sim_time_s), "log": self._log,
                           "cut_rows": self._cut_rows, "last_eval_step": self._last_eval_step})  # fmt: skip
            save_checkpoint(self._ckpt, self.cfg.model_dump(), self.steps, curve=self.curve,
                            system_state=self.system.state_dict(), extra={"live": live})  # fmt: skip
        return reached

    def _replayed(self, round_index: int, sim_time_s: float) -> bool:
        """A round the checkpoint holds: answer from its log; after the last one, load the training state."""
        state = self._resume["live"]
        self._rounds += 1
        self._bar.update(1)
        if self._rounds < state["rounds"]:
            return bool(self._log[self._rounds - 1]["stop"])
        if round_index + 1 != state["rounds"] or float(sim_time_s) != state["sim_time_s"]:
            raise InputError(
                f"checkpoint {self._ckpt}: the replayed engine ended round {round_index + 1} at "
                f"t = {sim_time_s!r} s, the checkpoint at round {state['rounds']}, t = {state['sim_time_s']!r} s "
                "(engine inputs changed); delete it to train from the start"
            )
        self.system.load_state_dict(self._resume["system"])
        restore_rng(self._resume)
        self.steps, self.curve = int(self._resume["step"]), list(self._resume["curve"])
        self._cut_rows, self._last_eval_step = list(state["cut_rows"]), int(state["last_eval_step"])
        stop, self._resume, self._replay_layout = bool(self._log[-1]["stop"]), None, None
        return stop

    def _end_round(self, round_index: int, sim_time_s: float) -> bool:
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
        if self.replaying:
            raise InputError(
                f"checkpoint {self._ckpt}: the engine stopped after round {self._rounds}, before the "
                f"checkpoint's round {self._resume['live']['rounds']} (engine inputs changed); delete it"
            )
        self.final = final_metrics(self.system, self.cfg, self.data)
        return self.final

    def record(self) -> ConvergenceRecord:
        """The convergence record so far (curve rows also carry ``sim_time_s``; ``final`` once computed)."""
        return make_record(self.cfg, self.curve, self.source, final=self.final)


def _plain(value):
    """``value`` with numpy scalars and arrays turned into Python ones (a checkpoint loads only those)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value
