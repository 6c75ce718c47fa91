"""Fast, vectorised evaluation of the delay model for the discrete searches (split, rank).

The reference is ``fedsim.core.delay.delays``; these functions compute the same eqs. (8)-(17) from cumulative
per-block sums so that every candidate cut (per client) and rank is a few array operations. Ranks are
one common rank r on every block (the paper's decision C7), or, with the problem's ``rank_cut`` (SplitFT's
cut-layer rank, spec §10c), ``rank_cut`` on each client's blocks c_k and c_k + 1 and r on the others:

    client k:  sum_{j<=c_k} r_j x_j = r X(c_k) + (r_cut - r) x_{c_k}      (LoRA FLOPs and bits Lambda_k)
    server:    sum_{j>c_k}  r_j x_j = r (X(J) - X(c_k)) + (r_cut - r) x_{c_k+1}   (x_{J+1} = 0)

with X the prefix sums of the per-rank terms x. Tests check agreement with ``delays``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsim.core.delay import total_delay_s
from fedsim.optimize.problem import Problem


def _cum(a: np.ndarray) -> np.ndarray:
    """(J+1,) prefix sums: entry c is the sum over blocks 1..c."""
    return np.concatenate([[0.0], np.cumsum(np.asarray(a, dtype=float))])


def _blocks(a: np.ndarray) -> np.ndarray:
    """(J+2,) per-block values: entry j is block j (1..J); entries 0 and J+1 are 0."""
    return np.concatenate([[0.0], np.asarray(a, dtype=float), [0.0]])


_LAST_MODEL: list = []  # [problem, its CostModel] of the last CostModel.of


@dataclass(frozen=True)
class CostModel:
    """Per-drop constants of the delay model, indexed by cut c in 0..J (entry 0 unused)."""

    cum_fwd: np.ndarray
    cum_bwd: np.ndarray
    cum_lora_fwd: np.ndarray
    cum_lora_bwd: np.ndarray
    cum_lora_bits: np.ndarray
    act_bits: np.ndarray  # (J+1,), act_bits[c] = psi_c
    head_fwd: float
    head_bwd: float
    client_flops_per_s: np.ndarray  # (K,)
    server_flops_per_s: float
    batch_size: int
    local_iterations: int
    rounds_by_rank: dict[int, float]
    upload_every_local_iteration: bool
    rank_cut: int | None = None  # SplitFT's cut-layer rank on blocks c_k and c_k + 1 (None: one rank)
    lora_fwd: np.ndarray | None = None  # (J+2,) per block (``_blocks``), for the cut-layer rank
    lora_bwd: np.ndarray | None = None
    lora_bits: np.ndarray | None = None

    @classmethod
    def of(cls, problem: Problem) -> CostModel:
        """The cost model of ``problem``; the last one is kept (a sweep unit asks once per scheme)."""
        if _LAST_MODEL and _LAST_MODEL[0] is problem:
            return _LAST_MODEL[1]
        w = problem.workload
        model = cls(
            _cum(w.fwd_flops),
            _cum(w.bwd_flops),
            _cum(w.lora_fwd_flops_per_rank),
            _cum(w.lora_bwd_flops_per_rank),
            _cum(w.lora_bits_per_rank),
            np.concatenate([[0.0], np.asarray(w.act_bits, dtype=float)]),
            float(w.head_fwd_flops),
            float(w.head_bwd_flops),
            np.asarray(problem.drop.client_flops_per_s, float),
            float(problem.drop.server_flops_per_s),
            int(problem.batch_size),
            int(problem.local_iterations),
            dict(problem.rounds_by_rank),
            bool(problem.upload_every_local_iteration),
            None if problem.rank_cut is None else int(problem.rank_cut),
            _blocks(w.lora_fwd_flops_per_rank),
            _blocks(w.lora_bwd_flops_per_rank),
            _blocks(w.lora_bits_per_rank),
        )
        _LAST_MODEL[:] = [problem, model]
        return model

    @property
    def num_layers(self) -> int:
        return int(self.cum_fwd.shape[0] - 1)

    def _client_lora(self, cum: np.ndarray, block: np.ndarray, cuts: np.ndarray, rank: int) -> np.ndarray:
        """sum_{j<=c_k} r_j x_j: rank r on blocks 1..c_k, ``rank_cut`` on block c_k when set."""
        out = rank * cum[cuts]
        if self.rank_cut is not None:
            out = out + (self.rank_cut - rank) * block[cuts]
        return out

    def _server_lora(self, cum: np.ndarray, block: np.ndarray, cuts: np.ndarray, rank: int) -> np.ndarray:
        """sum_{j>c_k} r_j x_j: rank r on blocks c_k+1..J, ``rank_cut`` on block c_k + 1 when set."""
        out = rank * (cum[self.num_layers] - cum[cuts])
        if self.rank_cut is not None:
            out = out + (self.rank_cut - rank) * block[np.asarray(cuts) + 1]
        return out

    def client_fwd_s(self, cuts: np.ndarray, rank: int) -> np.ndarray:
        """t_k^F, eq. (8), broadcast over cuts (..., K) [s]."""
        lora = self._client_lora(self.cum_lora_fwd, self.lora_fwd, cuts, rank)
        return self.batch_size * (self.cum_fwd[cuts] + lora) / self.client_flops_per_s

    def client_bwd_s(self, cuts: np.ndarray, rank: int) -> np.ndarray:
        """t_k^B, eq. (13), (..., K) [s]."""
        lora = self._client_lora(self.cum_lora_bwd, self.lora_bwd, cuts, rank)
        return self.batch_size * (self.cum_bwd[cuts] + lora) / self.client_flops_per_s

    def server_s(self, cuts: np.ndarray, rank: int) -> np.ndarray:
        """t_s^F + t_s^B, eqs. (11)-(12), summed over the clients' data, (...) [s]."""
        j = self.num_layers
        fwd = (
            self.cum_fwd[j]
            - self.cum_fwd[cuts]
            + self._server_lora(self.cum_lora_fwd, self.lora_fwd, cuts, rank)
        )
        bwd = (
            self.cum_bwd[j]
            - self.cum_bwd[cuts]
            + self._server_lora(self.cum_lora_bwd, self.lora_bwd, cuts, rank)
        )
        per_client = fwd + bwd + self.head_fwd + self.head_bwd
        return self.batch_size * per_client.sum(axis=-1) / self.server_flops_per_s

    def main_load_bits(self, cuts: np.ndarray) -> np.ndarray:
        """b * Gamma_k, the activation bits per local iteration on the main link, (..., K)."""
        return self.batch_size * self.act_bits[cuts]

    def fed_load_bits(self, cuts: np.ndarray, rank: int) -> np.ndarray:
        """Lambda_k, the LoRA bits per global round on the federated link, (..., K)."""
        return self._client_lora(self.cum_lora_bits, self.lora_bits, cuts, rank)

    def total_s(
        self, cuts: np.ndarray, rank: int, rate_main_bps: np.ndarray, *, rate_fed_bps: np.ndarray
    ) -> np.ndarray:
        """T, eq. (17), for cuts (..., K) and fixed per-client rates (K,) [s]; inf if a rate is 0."""
        return self._total_s(cuts, rank, self.rounds_by_rank[rank], rate_main_bps, rate_fed_bps)

    def total_by_rank_s(
        self, cuts: np.ndarray, ranks, rate_main_bps: np.ndarray, *, rate_fed_bps: np.ndarray
    ) -> np.ndarray:
        """T for each rank in ``ranks`` (R,) at one set of cuts (K,), in one evaluation: (R,) [s], entry i
        equal to ``total_s(cuts, ranks[i], ...)``."""
        ranks = np.asarray(ranks, dtype=int)
        rounds = np.array([self.rounds_by_rank[int(r)] for r in ranks])
        cuts = np.broadcast_to(np.asarray(cuts, dtype=int), (ranks.shape[0], np.shape(cuts)[-1]))
        return self._total_s(cuts, ranks[:, None], rounds, rate_main_bps, rate_fed_bps)

    def _total_s(self, cuts, rank, rounds, rate_main_bps, rate_fed_bps) -> np.ndarray:
        cuts = np.asarray(cuts, dtype=int)
        load_a, load_u = self.main_load_bits(cuts), self.fed_load_bits(cuts, rank)
        with np.errstate(divide="ignore", invalid="ignore"):
            # nothing to send takes no time; something to send at rate 0 takes forever (never NaN)
            t_a = np.where(load_a > 0, load_a / rate_main_bps, 0.0)
            t_u = np.where(load_u > 0, load_u / rate_fed_bps, 0.0)
        t1 = (self.client_fwd_s(cuts, rank) + t_a).max(axis=-1)
        t2 = self.client_bwd_s(cuts, rank).max(axis=-1)
        t3 = t_u.max(axis=-1)
        t = t1 + self.server_s(cuts, rank) + t2
        return total_delay_s(
            t,
            t3,
            rounds,
            local_iterations=self.local_iterations,
            upload_every_local_iteration=self.upload_every_local_iteration,
        )


def best_common_cut(
    model: CostModel, rank: int, rate_main: np.ndarray, *, rate_fed: np.ndarray
) -> tuple[int, float]:
    """Eq. (26): the common cut c in 1..J minimising T with rates fixed; returns (c, T)."""
    k = model.client_flops_per_s.shape[0]
    cands = np.repeat(np.arange(1, model.num_layers + 1)[:, None], k, axis=1)
    totals = model.total_s(cands, rank, rate_main, rate_fed_bps=rate_fed)
    i = int(np.argmin(totals))
    return i + 1, float(totals[i])


def best_client_cuts(
    model: CostModel,
    cuts: np.ndarray,
    rank: int,
    *,
    rate_main: np.ndarray,
    rate_fed: np.ndarray,
    max_sweeps: int = 50,
) -> tuple[np.ndarray, float]:
    """Per-client cuts by coordinate descent (spec §10): each c_k in turn to its best value, until a sweep
    changes nothing. c_k enters only client k's terms and the server sum, so each step is exact; the
    result is a coordinate-wise optimum, never worse than ``cuts`` (BCD starts it from the best common
    cut when that is better)."""
    cuts = np.array(cuts, dtype=int)
    j = model.num_layers
    best = float(model.total_s(cuts, rank, rate_main, rate_fed_bps=rate_fed))
    for _ in range(max_sweeps):
        changed = False
        for k in range(cuts.shape[0]):
            cands = np.repeat(cuts[None, :], j, axis=0)
            cands[:, k] = np.arange(1, j + 1)
            totals = model.total_s(cands, rank, rate_main, rate_fed_bps=rate_fed)
            i = int(np.argmin(totals))
            if totals[i] < best * (1 - 1e-12):
                cuts[k], best, changed = i + 1, float(totals[i]), True
        if not changed:
            break
    return cuts, best


def best_rank(
    model: CostModel, cuts: np.ndarray, rate_main: np.ndarray, *, rate_fed: np.ndarray
) -> tuple[int, float]:
    """Eq. (27): the rank in R minimising T with cuts and rates fixed; returns (r, T)."""
    ranks = sorted(model.rounds_by_rank)
    totals = model.total_by_rank_s(cuts, ranks, rate_main, rate_fed_bps=rate_fed)
    i = int(np.argmin(totals))
    return ranks[i], float(totals[i])
