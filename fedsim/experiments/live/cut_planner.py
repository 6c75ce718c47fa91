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


class LinkReallocator:
    """The radio re-optimised after every cut move (issue 23, ``adaptive_cuts.reoptimise_allocation``):
    ``self(round_index, cuts, ranks)`` returns the subchannels and power of the optimiser's link step for the
    new cuts (``fedsim.optimize.allocate_links`` on ``problem`` at rank ``rank``, scheme ``spec``) with the
    trainer's own cuts and ranks, which the engine times from the next round on. ``on_change(alloc)`` is called
    with each new allocation (the ``optimiser`` rule's planner is rebuilt on its rates).

    ``rows``: one per (allocation version, client): the round from which it times the run (0: the allocation
    chosen before training), subchannel counts on the main and federated links and transmit powers [W]."""

    def __init__(self, problem: Problem, initial, *, rank: int, spec=None, power_solver: str = "exact",
                 on_change: Callable | None = None):  # fmt: skip
        self.problem, self.rank, self.spec, self.power_solver = problem, int(rank), spec, power_solver
        self.on_change, self.current, self.rows = on_change, initial, []
        self._record(0, initial)

    def __call__(self, round_index: int, cuts: Sequence[int], ranks) -> object:
        from fedsim.optimize import allocate_links

        cuts = np.asarray(cuts, dtype=int)
        links = allocate_links(
            self.problem,
            self.current,
            cuts=cuts,
            rank=self.rank,
            spec=self.spec,
            power_solver=self.power_solver,
        )
        self.current = replace(links, cuts=cuts, ranks=np.asarray(ranks, dtype=int))
        self._record(int(round_index) + 1, self.current)
        if self.on_change is not None:
            self.on_change(self.current)
        return self.current

    def _record(self, round_from: int, alloc) -> None:
        from fedsim.core.allocation import client_power_w

        drop, k = self.problem.drop, self.problem.drop.num_clients
        version = len(self.rows) // k if k else 0
        p_main = client_power_w(alloc.owner_main, alloc.psd_main_w_hz, drop.main.subchannel_hz, num_clients=k)
        p_fed = client_power_w(alloc.owner_fed, alloc.psd_fed_w_hz, drop.fed.subchannel_hz, num_clients=k)
        for c in range(k):
            self.rows.append(
                {
                    "version": version,
                    "round": round_from,
                    "client": c,
                    "cut": int(alloc.cuts[c]),
                    "subchannels_main": int(np.sum(np.asarray(alloc.owner_main) == c)),
                    "subchannels_fed": int(np.sum(np.asarray(alloc.owner_fed) == c)),
                    "power_main_w": float(p_main[c]),
                    "power_fed_w": float(p_fed[c]),
                }
            )
