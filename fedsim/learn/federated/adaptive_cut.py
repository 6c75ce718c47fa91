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
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fedsim.core.cut_rule import balanced_cuts, decide, time_bound, toward
from fedsim.errors import InputError


class CutAdapter:
    """Runs the rule on a ``SplitFedSystem`` after each aggregation and moves the cuts it decides."""

    def __init__(self, system, cfg):
        from fedsim.core.memory import client_memory_bytes

        self.system, self.cfg = system, cfg
        k, j = len(system.clients), system.layout.num_blocks
        self.compute = list(cfg.client_flops_per_s) if cfg.client_flops_per_s else [1.0] * k
        self.block_flops = [1.0] * j  # per-block FP + BP work; equal blocks until set_compute says otherwise
        top = j - 1 if cfg.cut_max is None else cfg.cut_max
        self.cut_max = [top] * k
        tcfg = system.cfg
        if cfg.memory_bytes is not None:
            need = [
                client_memory_bytes(
                    system.model.config, c, tcfg.batch_size, seq_len=tcfg.seq_len, rank=tcfg.rank
                )
                for c in range(1, j)
            ]
            for i, budget in enumerate(cfg.memory_bytes):
                fits = [c for c, n in zip(range(1, j), need, strict=True) if n <= budget]
                if not fits:
                    raise InputError(
                        f"adaptive_cuts.memory_bytes: client {i}'s budget {budget:.3g} B is below one block "
                        f"({need[0]:.3g} B for cut 1 at b = {tcfg.batch_size}, L = {tcfg.seq_len})"
                    )
                self.cut_max[i] = min(self.cut_max[i], fits[-1])
        self.round = 0
        self.rows: list[dict] = []
        self._pending: list[dict] = []
        self._nll = np.zeros(k)
        self._tokens = np.zeros(k)
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

    def observe(self, clients: Sequence[int], per_client: Sequence[tuple[float, int]]) -> None:
        for k, (nll, n) in zip(clients, per_client, strict=True):
            self._nll[k] += nll
            self._tokens[k] += n

    def end_round(self) -> list[dict]:
        """Count a round; every tau rounds decide and move. Returns the rows of this round's moves."""
        from fedsim.learn.federated.cutmove import move_cut

        self.round += 1
        if self.round % self.cfg.every or not self._tokens.all():
            return []
        loss = self._nll / self._tokens
        if self.cfg.rule == "balance":
            target = balanced_cuts(self.block_flops, self.compute, self.cfg.cut_min, cut_max=self.cut_max)
            rows = toward(self.system.layout.cuts, target, "toward the compute-balanced cut")
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
                "nll": self._nll.tolist(), "tokens": self._tokens.tolist()}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        from fedsim.learn.federated.cutmove import move_cut

        for k, target in enumerate(state["cuts"]):
            while self.system.layout.cuts[k] != target:
                c = self.system.layout.cuts[k]
                move_cut(self.system, k, c + (1 if target > c else -1))
        self.round, self.rows = int(state["round"]), list(state["rows"])
        self._nll, self._tokens = np.array(state["nll"]), np.array(state["tokens"])
