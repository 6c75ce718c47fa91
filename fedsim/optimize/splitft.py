"""The "splitft" scheme: SplitFT's own choices (spec §10), no optimiser, comparable with proposed and a-d.

SplitFT does not allocate radio resources: its clients get a random average share of the subchannels with
uniform power (as baselines a and b). Its cuts come from the adaptive rule (``fedsim.learn.federated.adaptive_cut``)
run to its steady state from cut 2 on compute alone (a delay-only study has no model quality, so every
client's quality is equal): a client whose score exceeds 1 + epsilon climbs to J - 1, one below 1 - epsilon
falls to cut 1. Ranks: r_others = the largest candidate rank on every block but the two at each client's cut,
which get the problem's ``rank_cut`` (``[schemes] rank_cut``) or, when it is not set, r_others / 2
(SplitFT's 8 vs 16); E(r) is read at r_others.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fedsim.core.allocation import Allocation, cut_layer_ranks
from fedsim.core.cut_rule import steady_cuts
from fedsim.core.delay import delays
from fedsim.optimize.greedy import random_average_assign
from fedsim.optimize.power import uniform_psd
from fedsim.optimize.problem import Problem, Result


@dataclass(frozen=True)
class SplitFTScheme:
    """SplitFT: adaptive per-client cuts (compute-driven), cut-layer rank, random average subchannels."""

    name: str = "splitft"
    description: str = (
        "SplitFT (no optimiser): random average subchannels with uniform power; per-client cuts from its "
        "adaptive rule on client compute; the largest candidate rank r, with [schemes] rank_cut (default r/2) on "
        "both sides of each client's cut"
    )
    gamma: float = 0.5
    epsilon: float = 0.1
    start_cut: int = 2

    def allocate(self, problem: Problem, rng: np.random.Generator) -> Result:
        drop, work = problem.drop, problem.workload
        k, j = drop.num_clients, work.num_layers
        owner_main = random_average_assign(drop.main.num_subchannels, k, rng)
        owner_fed = random_average_assign(drop.fed.num_subchannels, k, rng)
        start = [min(self.start_cut, max(j - 1, 1))] * k
        cuts = np.asarray(
            steady_cuts(
                start,
                drop.client_flops_per_s,
                self.gamma,
                epsilon=self.epsilon,
                cut_min=1,
                cut_max=[max(j - 1, 1)] * k,
            )
        )
        r_others = max(problem.ranks)
        r_cut = max(1, r_others // 2) if problem.rank_cut is None else int(problem.rank_cut)
        alloc = Allocation(
            owner_main,
            owner_fed,
            uniform_psd(drop.main, owner_main, drop.p_max_w),
            uniform_psd(drop.fed, owner_fed, drop.p_max_w),
            cuts.astype(int),
            cut_layer_ranks(cuts, j, r_cut, rank_others=r_others),
        )
        d = delays(
            drop,
            work,
            alloc,
            batch_size=problem.batch_size,
            local_iterations=problem.local_iterations,
            rounds=problem.rounds_by_rank[r_others],
            upload_every_local_iteration=problem.upload_every_local_iteration,
        )
        status = "optimal" if d.feasible else "infeasible"
        return Result(self.name, alloc, d, status, {"power_solver": "uniform", "cuts": "splitft_rule"}, 1,
                      [float(d.total_s)], problem)  # fmt: skip


SPLITFT = SplitFTScheme()


def with_cut_layer_rank(problem: Problem, result: Result, rank_cut: int) -> Result:
    """``result`` with SplitFT's cut-layer rank (spec §10c) on its chosen cuts: ``rank_cut`` on each client's
    blocks c_k and c_k + 1, the scheme's rank elsewhere; delays re-evaluated with E(r) at the scheme's rank."""
    alloc = result.allocation
    rank = int(np.asarray(alloc.ranks).max())
    ranks = cut_layer_ranks(alloc.cuts, problem.workload.num_layers, int(rank_cut), rank_others=rank)
    new = replace(alloc, ranks=ranks)
    d = delays(
        problem.drop,
        problem.workload,
        new,
        batch_size=problem.batch_size,
        local_iterations=problem.local_iterations,
        rounds=problem.rounds_by_rank[rank],
        upload_every_local_iteration=problem.upload_every_local_iteration,
    )
    status = result.status if d.feasible else "infeasible"
    return replace(
        result, allocation=new, delays=d, status=status, history=[*result.history, float(d.total_s)]
    )
