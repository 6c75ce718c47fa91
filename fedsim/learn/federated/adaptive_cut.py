"""Adaptive per-client cuts in training (spec §10b): fedsim's own score heuristic (SplitFT describes adaptive
cuts but publishes no formula) moves each client's cut by one block.

Every tau global rounds each client gets the score

    s_k = (1 - gamma) · F_k / mean(F) + gamma · q_k / mean(q)

with F_k its compute [FLOP/s] and q_k = exp(-loss_k) its model quality, loss_k the token-weighted mean loss
of its own batches since the last decision, measured by the main server on each fresh batch *before* the
update it causes (a progressive-validation estimate: no extra forward passes). A client with s_k > 1 + eps
takes one more block, one with s_k < 1 - eps one fewer, within [cut_min, cut_max,k]; cut_max,k is the
smallest of the configured cut_max, the memory bound (``fedsim.core.memory``) and the per-iteration
compute-time bound. Every decision that moves a cut is logged as a row.

**A quality signal above noise** (``probe_size`` > 0): each client gets a fixed probe set (``probe_size``
examples of its own partition, or all of them if it has fewer, drawn once from a generator seeded by the
run's seed), and after every aggregation the deployed model's loss on it is measured (so q_k says how well
the global model fits client k's data); an exponential moving average over rounds (``ema_weight`` = beta:
ema_t = beta · loss_t + (1 - beta) · ema_(t-1)) of that loss gives q_k = exp(-ema_k). Without a probe the EMA
runs over each round's batch loss; with neither (beta = 1, no probe) the rule reads the batches since the
last decision, as before. Every round's batch, probe and EMA loss per client is kept (``quality_rows``) and
their round-to-round jumps summarised (``quality_noise``): the noise of each signal. The probe's forward
passes cost time: the event engine charges them after each aggregation (client forward, activation upload,
server forward; ``fedsim.engine.rounds._probe``), before the cut decision that reads them.

**optimiser**: at each decision a planner (given by the live runs, ``fedsim.experiments.live.cut_planner``:
learn/ does not import the optimiser) returns the delay model's per-client cuts for the drop and the
clients' compute within [cut_min, cut_max,k]; the cuts move there at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from fedsim.core.cut_rule import balanced_cuts, decide, ema, relative_quality, step_std, time_bound, toward
from fedsim.errors import InputError

PROBE_STREAM = 23  # seed slot of the probe sets, apart from the batch streams (seed, k)


def probe_sets(partition: Sequence[Sequence[int]], size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Each client's fixed probe set: ``size`` distinct examples of its own partition drawn from ``rng``
    (sorted), or its whole partition when it has fewer (a skewed split can leave a client a handful)."""
    out = []
    for part in partition:
        part = np.asarray(part, dtype=np.int64)
        out.append(np.sort(rng.choice(part, size=min(size, len(part)), replace=False)))
    return out


def memory_caps(config, tcfg, num_blocks: int) -> list[int]:
    """Each client's memory bound: the largest cut in 1..J-1 whose client memory (``fedsim.core.memory``:
    weights, LoRA state and activations at ``tcfg``'s b, L and r) fits its ``adaptive_cuts.memory_bytes``;
    InputError naming the field if a budget is below one block."""
    from fedsim.core.memory import client_memory_bytes

    need = [
        client_memory_bytes(config, c, tcfg.batch_size, seq_len=tcfg.seq_len, rank=tcfg.rank)
        for c in range(1, num_blocks)
    ]
    caps = []
    for i, budget in enumerate(tcfg.adaptive_cuts.memory_bytes):
        fits = [c for c, n in zip(range(1, num_blocks), need, strict=True) if n <= budget]
        if not fits:
            raise InputError(
                f"adaptive_cuts.memory_bytes: client {i}'s budget {budget:.3g} B is below one block "
                f"({need[0]:.3g} B for cut 1 at b = {tcfg.batch_size}, L = {tcfg.seq_len})"
            )
        caps.append(fits[-1])
    return caps


class CutAdapter:
    """Runs the rule on a ``SplitFedSystem`` after each aggregation and moves the cuts it decides."""

    def __init__(self, system, cfg, *, dataset=None, partition: Sequence[Sequence[int]] | None = None):
        self.system, self.cfg = system, cfg
        k, j = len(system.clients), system.layout.num_blocks
        self.compute = list(cfg.client_flops_per_s) if cfg.client_flops_per_s else [1.0] * k
        self.block_flops = [1.0] * j  # per-block FP + BP work; equal blocks until set_compute says otherwise
        top = j - 1 if cfg.cut_max is None else cfg.cut_max
        self.cut_max = [top] * k
        if cfg.memory_bytes is not None:
            self.cut_max = [
                min(a, b)
                for a, b in zip(self.cut_max, memory_caps(system.model.config, system.cfg, j), strict=True)
            ]
        self.round = 0
        self.rows: list[dict] = []
        self._pending: list[dict] = []
        self._nll = np.zeros(k)
        self._tokens = np.zeros(k)
        self._round_nll, self._round_tokens = np.zeros(k), np.zeros(k)
        self._ema = np.full(k, np.nan)
        self.quality_rows: list[dict] = []  # per round and client: batch, probe and EMA loss
        self.planner: Callable | None = None
        self.dataset, self.probes = dataset, None
        if cfg.probe_size:
            if dataset is None or partition is None:
                raise InputError("adaptive_cuts.probe_size: the probe needs the training data and partition")
            rng = np.random.default_rng((system.cfg.seed, PROBE_STREAM))
            self.probes = probe_sets(partition, cfg.probe_size, rng)
        self._check_bounds()

    def _check_bounds(self) -> None:
        low = self.cfg.cut_min
        for i, top in enumerate(self.cut_max):
            if top < low:
                raise InputError(
                    f"adaptive_cuts: client {i}'s largest feasible cut {top} is below cut_min {low}"
                )

    def set_compute(self, flops_per_s: Sequence[float], block_flops: Sequence[float] | None = None) -> None:
        """Client compute F_k (live runs: the drop's) and, for the time budget, per-block FP + BP FLOPs."""
        self.compute = [float(f) for f in flops_per_s]
        if block_flops is not None:
            self.block_flops = [float(b) for b in block_flops]
        if block_flops is not None and self.cfg.iteration_time_s is not None:
            for i, f in enumerate(self.compute):
                self.cut_max[i] = min(self.cut_max[i], time_bound(block_flops, f, self.cfg.iteration_time_s))
            self._check_bounds()

    def set_planner(self, planner: Callable) -> None:
        """The ``optimiser`` rule's planner: ``planner(cuts, compute, cut_max) -> (cuts, predicted T [s])``,
        the delay model's per-client cuts within [cut_min, cut_max_k] for client compute ``compute``."""
        self.planner = planner

    def observe(self, clients: Sequence[int], per_client: Sequence[tuple[float, int]]) -> None:
        for k, (nll, n) in zip(clients, per_client, strict=True):
            self._nll[k] += nll
            self._tokens[k] += n
            self._round_nll[k] += nll
            self._round_tokens[k] += n

    def _probe_losses(self) -> np.ndarray:
        """The deployed model's token-mean loss on each client's probe set (after this round's aggregation)."""
        system = self.system
        batch = system.cfg.batch_size * len(system.clients)
        sums = [system.eval_nll(self.dataset, p, batch) for p in self.probes]
        return np.array([nll / max(n, 1) for nll, n in sums])

    def _measure(self) -> np.ndarray:
        """This round's per-client loss (probe, else this round's batches), into the EMA and the quality rows.
        Returns the loss the rule reads."""
        with np.errstate(invalid="ignore", divide="ignore"):
            batch = np.where(self._round_tokens > 0, self._round_nll / self._round_tokens, np.nan)
        probe = self._probe_losses() if self.probes is not None else np.full(len(batch), np.nan)
        signal = probe if self.probes is not None else batch
        self._ema = ema([self._ema, signal], self.cfg.ema_weight)[1]
        self.quality_rows += [
            {
                "round": self.round,
                "client": k,
                "batch_loss": float(b),
                "probe_loss": float(p),
                "ema_loss": float(e),
            }
            for k, (b, p, e) in enumerate(zip(batch, probe, self._ema, strict=True))
        ]
        self._round_nll[:], self._round_tokens[:] = 0.0, 0.0
        if self.probes is None and self.cfg.ema_weight == 1:
            with np.errstate(invalid="ignore", divide="ignore"):
                return self._nll / self._tokens  # as before: the batches since the last decision
        return self._ema.copy()

    def quality_noise(self) -> list[dict]:
        """Per client, the noise of each quality signal over the rounds so far: the standard deviation of its
        round-to-round change, of the loss (``*_loss_step_std``) and of the score's quality term q_k / mean q
        (``*_rel_step_std``), beside the signal, the mean of q_k / mean q over the rounds (``*_rel_mean``), for
        the batch loss, the probe loss and the EMA the rule reads."""
        if not self.quality_rows:
            return []
        k = len(self.system.clients)
        sizes = [0] * k if self.probes is None else [len(p) for p in self.probes]
        out = [
            {"client": c, "rounds": len(self.quality_rows) // k, "probe_examples": sizes[c]} for c in range(k)
        ]
        for name in ("batch", "probe", "ema"):
            series = np.array([r[f"{name}_loss"] for r in self.quality_rows]).reshape(-1, k)
            rel = relative_quality(series)  # the quality term; the signal is how far it sits from 1
            for c, (a, b) in enumerate(zip(step_std(series), step_std(rel), strict=True)):
                seen = rel[np.isfinite(rel[:, c]), c]
                out[c][f"{name}_loss_step_std"], out[c][f"{name}_rel_step_std"] = float(a), float(b)
                out[c][f"{name}_rel_mean"] = float(seen.mean()) if len(seen) else math.nan
        return out

    def end_round(self) -> list[dict]:
        """Count a round and measure the quality signal; every tau rounds decide and move. Returns the rows of
        this round's moves."""
        from fedsim.learn.federated.cutmove import move_cut

        self.round += 1
        loss = self._measure()
        if self.round % self.cfg.every or not self._tokens.all() or np.isnan(loss).any():
            return []
        if self.cfg.rule == "balance":
            target = balanced_cuts(self.block_flops, self.compute, self.cfg.cut_min, cut_max=self.cut_max)
            rows = toward(self.system.layout.cuts, target, "toward the compute-balanced cut")
        elif self.cfg.rule == "optimiser":
            if self.planner is None:
                raise InputError(
                    "adaptive_cuts.rule: 'optimiser' needs the delay model of a drop; only live runs "
                    "(fedsim run with a [live] section) give it one"
                )
            target, total_s = self.planner(
                list(self.system.layout.cuts), list(self.compute), list(self.cut_max)
            )
            rows = [
                {
                    "client": k,
                    "old": int(c),
                    "new": int(t),
                    "score": math.nan,
                    "predicted_s": float(total_s),
                    "reason": "the delay model's per-client-cut optimiser",
                }
                for k, (c, t) in enumerate(zip(self.system.layout.cuts, target, strict=True))
                if c != t
            ]
        else:
            quality = [math.exp(-x) for x in loss]
            rows = decide(
                self.system.layout.cuts,
                self.compute,
                quality,
                gamma=self.cfg.gamma,
                epsilon=self.cfg.epsilon,
                cut_min=self.cfg.cut_min,
                cut_max=self.cut_max,
            )
        for row in rows:
            c, blocks = row["old"], []
            while c != row["new"]:
                c += 1 if row["new"] > c else -1
                move = move_cut(self.system, row["client"], c)
                self._pending.append(move)
                blocks.append(move["block"])
            row.update(round=self.round, blocks=blocks, loss=float(loss[row["client"]]))
        self.rows += rows
        self._nll[:], self._tokens[:] = 0.0, 0.0
        return rows

    def take_moves(self) -> list[dict]:
        """Single-block moves since the last call (client, block, to_client, rank): the engine charges them."""
        out, self._pending = self._pending, []
        return out

    def state_dict(self) -> dict:
        return {"cuts": list(self.system.layout.cuts), "round": self.round, "rows": list(self.rows),
                "nll": self._nll.tolist(), "tokens": self._tokens.tolist(), "ema": self._ema.tolist(),
                "round_nll": self._round_nll.tolist(), "round_tokens": self._round_tokens.tolist(),
                "quality_rows": list(self.quality_rows)}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        from fedsim.learn.federated.cutmove import move_cut

        for k, target in enumerate(state["cuts"]):
            while self.system.layout.cuts[k] != target:
                c = self.system.layout.cuts[k]
                move_cut(self.system, k, c + (1 if target > c else -1))
        self.round, self.rows = int(state["round"]), list(state["rows"])
        self._nll, self._tokens = np.array(state["nll"]), np.array(state["tokens"])
        k = len(self._nll)  # checkpoints from before the quality signal lack the rest
        self._ema = np.array(state.get("ema", [np.nan] * k), dtype=float)
        self._round_nll = np.array(state.get("round_nll", [0.0] * k), dtype=float)
        self._round_tokens = np.array(state.get("round_tokens", [0.0] * k), dtype=float)
        self.quality_rows = list(state.get("quality_rows", []))
