"""The ``optimiser`` rule of adaptive cuts (issue 23) in live runs: at each decision the delay model's
per-client-cut optimiser (``fedsim.optimize.objective.best_client_cuts``, the split step of BCD) picks the cuts
for the live run's drop, its radio allocation and the clients' compute, within each client's cap.

The trainer (``fedsim.learn``) may not import the optimiser, so this module, above both, builds the planner
and hands it to the trainer's ``CutAdapter`` as a callable. The optimiser itself is called unchanged: the caps
enter through ``CappedCost``, the delay model with T = inf for any cut outside [cut_min, cut_max_k]; started
from the current (feasible) cuts, its coordinate descent accepts only finite improvements, so it stays inside.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from fedsim.core.delay import link_rates_bps
from fedsim.optimize.objective import CostModel, best_client_cuts
from fedsim.optimize.problem import Problem


@dataclass(frozen=True)
class CappedCost:
    """``CostModel`` whose T is inf wherever a client's cut lies outside [low, high_k] (the optimiser's
    interface: ``num_layers`` and ``total_s``)."""

    model: CostModel
    low: int
    high: tuple[int, ...]

    @property
    def num_layers(self) -> int:
        return self.model.num_layers

    def total_s(
        self, cuts: np.ndarray, rank: int, rate_main_bps: np.ndarray, *, rate_fed_bps: np.ndarray
    ) -> np.ndarray:
        cuts = np.asarray(cuts, dtype=int)
        inside = ((cuts >= self.low) & (cuts <= np.asarray(self.high))).all(axis=-1)
        total = self.model.total_s(
            np.clip(cuts, 1, self.num_layers), rank, rate_main_bps, rate_fed_bps=rate_fed_bps
        )
        return np.where(inside, total, np.inf)


def cut_planner(problem: Problem, allocation, rank: int, *, cut_min: int) -> Callable:
    """``plan(cuts, compute, cut_max) -> (cuts, predicted T [s])``: the per-client cuts of the delay model
    for ``problem``'s drop and workload, the rates of ``allocation``'s subchannels and power, rank ``rank``
    (``problem.rank_cut`` on the cut blocks when set) and client compute ``compute`` [FLOP/s], each cut in
    [cut_min, cut_max_k], found by ``best_client_cuts`` from ``cuts``."""
    drop, k = problem.drop, problem.drop.num_clients
    rate_main = link_rates_bps(drop.main, allocation.owner_main, allocation.psd_main_w_hz, num_clients=k)
    rate_fed = link_rates_bps(drop.fed, allocation.owner_fed, allocation.psd_fed_w_hz, num_clients=k)
    base = CostModel.of(problem)

    def plan(
        cuts: Sequence[int], compute: Sequence[float], cut_max: Sequence[int]
    ) -> tuple[list[int], float]:
        model = replace(base, client_flops_per_s=np.asarray(compute, dtype=float))
        capped = CappedCost(model, int(cut_min), tuple(int(c) for c in cut_max))
        best, total = best_client_cuts(
            capped, np.asarray(cuts, dtype=int), rank, rate_main=rate_main, rate_fed=rate_fed
        )
        return [int(c) for c in best], float(total)

    return plan
