"""Global optimum of problem (18) for small flat-channel instances, by enumeration.

Every composition of M into K positive subchannel counts (and of N), the exact power solver on each,
every common cut and every rank. The links decouple (spec §5.2): for a given (c, r) the main link's
best T1 is a minimum over main-link compositions alone, and the federated link, whose offsets are 0 and
whose load Lambda(c, r) is shared by all clients, has T3 proportional to the load, so one solve with a
unit load covers every (c, r). This is the physical limit that tests and benchmarks hold BCD against.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from fedsim.core.allocation import Allocation
from fedsim.core.delay import delays, total_delay_s
from fedsim.errors import InputError
from fedsim.optimize.objective import CostModel
from fedsim.optimize.power import min_time_on_link
from fedsim.optimize.problem import Problem, Result, validate_problem

MAX_COMPOSITIONS = 200_000
_UNIT_LOAD_BITS = 1e6


def compositions(total: int, parts: int) -> np.ndarray:
    """(C(total-1, parts-1), parts) int: every way to write ``total`` as ``parts`` positive integers."""
    bars = np.array(list(itertools.combinations(range(1, total), parts - 1)), dtype=int).reshape(
        -1, parts - 1
    )
    edges = np.concatenate(
        [np.zeros((bars.shape[0], 1), int), bars, np.full((bars.shape[0], 1), total)], axis=1
    )
    return np.diff(edges, axis=1)


def _owner_from_counts(counts: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(counts.shape[0]), counts)


def _psd_from_power(link, counts: np.ndarray, power_w: np.ndarray) -> np.ndarray:
    return np.repeat(power_w / (counts * link.subchannel_hz), counts)


def brute_force(problem: Problem) -> Result:
    """The exact optimum (common cut, common rank, flat channels). Raises InputError when the instance is
    too large to enumerate, uses per-client cuts or has per-subchannel fading."""
    validate_problem(problem)
    drop, model = problem.drop, CostModel.of(problem)
    k, j = drop.num_clients, problem.workload.num_layers
    if problem.fading:
        raise InputError("brute_force needs flat channels (fading = false): uniform PSD is only optimal then")
    if problem.per_client_cuts:
        raise InputError("brute_force enumerates a common cut only; set per_client_cuts = false")
    for name, link in (("main", drop.main), ("fed", drop.fed)):
        count = math.comb(link.num_subchannels - 1, k - 1)
        if count > MAX_COMPOSITIONS:
            raise InputError(
                f"brute_force: {count} compositions on the {name} link (max {MAX_COMPOSITIONS}); "
                "use fewer clients or subchannels"
            )
    comp_main = compositions(drop.main.num_subchannels, k)
    comp_fed = compositions(drop.fed.num_subchannels, k)
    p_max = np.asarray(drop.p_max_w, float)
    main, fed = drop.main, drop.fed

    # federated link: T3(c, r) = Lambda(c, r) * T3(unit load), one solve for all (c, r)
    t3_unit, _ = min_time_on_link(
        fed, comp_fed, offset_s=np.zeros(k), load_bits=np.full(k, _UNIT_LOAD_BITS), p_max_w=p_max
    )
    i_fed = int(np.argmin(t3_unit))
    t3_per_bit = float(t3_unit[i_fed]) / _UNIT_LOAD_BITS

    # main link: every (c, r) at once, shape (C*R, compositions, K)
    grid = [(c, r) for c in range(1, j + 1) for r in problem.ranks]
    offsets = np.stack([model.client_fwd_s(np.full(k, c), r) for c, r in grid])  # (G, K)
    loads = np.stack([model.main_load_bits(np.full(k, c)) for c, _ in grid])  # (G, K)
    t1_all, _ = min_time_on_link(
        main, comp_main[None], offset_s=offsets[:, None, :], load_bits=loads[:, None, :], p_max_w=p_max
    )  # (G, compositions)
    i_main = np.argmin(t1_all, axis=1)
    t1 = t1_all[np.arange(len(grid)), i_main]
    totals = []
    for g, (c, r) in enumerate(grid):
        cuts = np.full(k, c)
        t = t1[g] + float(model.server_s(cuts, r)) + float(np.max(model.client_bwd_s(cuts, r)))
        t3 = float(np.max(model.fed_load_bits(cuts, r))) * t3_per_bit
        totals.append(
            total_delay_s(
                t,
                t3,
                problem.rounds_by_rank[r],
                local_iterations=problem.local_iterations,
                upload_every_local_iteration=problem.upload_every_local_iteration,
            )
        )
    g = int(np.argmin(totals))
    c, r = grid[g]
    cuts = np.full(k, c)
    counts_main = comp_main[i_main[g]]
    counts_fed = comp_fed[i_fed]
    _, p_main = min_time_on_link(main, counts_main, offset_s=offsets[g], load_bits=loads[g], p_max_w=p_max)
    _, p_fed = min_time_on_link(
        fed, counts_fed, offset_s=np.zeros(k), load_bits=model.fed_load_bits(cuts, r), p_max_w=p_max
    )
    alloc = Allocation(
        _owner_from_counts(counts_main),
        _owner_from_counts(counts_fed),
        _psd_from_power(main, counts_main, p_main),
        _psd_from_power(fed, counts_fed, p_fed),
        cuts,
        problem.rank_layout(cuts, r),
    )
    d = delays(
        drop,
        problem.workload,
        alloc,
        batch_size=problem.batch_size,
        local_iterations=problem.local_iterations,
        rounds=problem.rounds_by_rank[r],
        upload_every_local_iteration=problem.upload_every_local_iteration,
    )
    status = "optimal" if d.feasible else "infeasible"
    n_candidates = len(comp_main) * len(grid) + len(comp_fed)
    return Result(
        "brute_force",
        alloc,
        d,
        status,
        {"power_solver": "exact", "candidates": str(n_candidates)},
        1,
        [float(d.total_s)],
        problem,
    )
