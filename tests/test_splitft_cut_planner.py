"""The optimiser-driven cut rule (issue 23): the live runs' planner is the delay model's per-client-cut optimiser
(``best_client_cuts``) for the drop, its allocation and the clients' compute, inside each client's cap; the
trainer's adapter moves the cuts to what it picks."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
from learn_tiny import SyntheticLM, tiny_lm
from optimize_helpers import small_instance

from fedsim.core.allocation import Allocation, uniform_ranks
from fedsim.core.delay import link_rates_bps
from fedsim.experiments.live.cut_planner import cut_planner
from fedsim.learn.config import TrainConfig
from fedsim.learn.federated.systems import build_system
from fedsim.optimize.greedy import random_average_assign
from fedsim.optimize.objective import CostModel, best_client_cuts
from fedsim.optimize.power import uniform_psd

RANK = 4


def _allocation(problem, seed: int) -> Allocation:
    drop, rng = problem.drop, np.random.default_rng(seed)
    k, j = drop.num_clients, problem.workload.num_layers
    main = random_average_assign(drop.main.num_subchannels, k, rng)
    fed = random_average_assign(drop.fed.num_subchannels, k, rng)
    return Allocation(main, fed, uniform_psd(drop.main, main, drop.p_max_w),
                      uniform_psd(drop.fed, fed, drop.p_max_w), np.full(k, 2), uniform_ranks(k, j, RANK))  # fmt: skip


def _direct(problem, alloc, cuts, compute):
    """``best_client_cuts`` called directly, with the allocation's rates worked out here."""
    drop, k = problem.drop, problem.drop.num_clients
    rate_main = link_rates_bps(drop.main, alloc.owner_main, alloc.psd_main_w_hz, num_clients=k)
    rate_fed = link_rates_bps(drop.fed, alloc.owner_fed, alloc.psd_fed_w_hz, num_clients=k)
    model = replace(CostModel.of(problem), client_flops_per_s=np.asarray(compute, float))
    best, total = best_client_cuts(model, np.asarray(cuts), RANK, rate_main=rate_main, rate_fed=rate_fed)
    return [int(c) for c in best], float(total), model, rate_main, rate_fed


@pytest.mark.parametrize("seed", range(6))
def test_without_binding_caps_the_planner_is_the_optimiser(seed):
    problem = small_instance(seed)
    alloc, k, j = _allocation(problem, seed), problem.drop.num_clients, problem.workload.num_layers
    plan = cut_planner(problem, alloc, RANK, cut_min=1)
    start = [2] * k
    for compute in (problem.drop.client_flops_per_s, problem.drop.client_flops_per_s * np.linspace(0.1, 3, k)):
        cuts, total, *_ = _direct(problem, alloc, start, compute)
        assert plan(start, list(compute), [j] * k) == (cuts, pytest.approx(total, rel=1e-12))


def test_the_planner_reads_the_measured_compute():
    problem = small_instance(1)
    alloc, k, j = _allocation(problem, 1), problem.drop.num_clients, problem.workload.num_layers
    plan = cut_planner(problem, alloc, RANK, cut_min=1)
    drop_f = list(problem.drop.client_flops_per_s)
    slow = [f / 100.0 for f in drop_f]  # compute-bound clients hand blocks to the server
    fast = [f * 100.0 for f in drop_f]
    slow_cuts, fast_cuts = plan([2] * k, slow, [j] * k)[0], plan([2] * k, fast, [j] * k)[0]
    assert sum(slow_cuts) < sum(fast_cuts)
    assert slow_cuts == _direct(problem, alloc, [2] * k, slow)[0]


@pytest.mark.parametrize("seed", range(6))
def test_binding_caps_are_kept_and_the_cuts_are_a_coordinate_optimum_inside_them(seed):
    problem = small_instance(seed)
    alloc, k, j = _allocation(problem, seed), problem.drop.num_clients, problem.workload.num_layers
    compute = problem.drop.client_flops_per_s * np.logspace(0, 1.5, k)  # a 30x spread
    free, _, model, rate_main, rate_fed = _direct(problem, alloc, [1] * k, compute)
    caps = [min(j, 3 + 2 * i) for i in range(k)]
    assert any(c > cap for c, cap in zip(free, caps, strict=True))  # the caps bind
    cuts, total = cut_planner(problem, alloc, RANK, cut_min=1)([1] * k, list(compute), caps)
    assert all(1 <= c <= cap for c, cap in zip(cuts, caps, strict=True))
    assert any(c < cap for c, cap in zip(cuts, caps, strict=True))  # not merely every client at its cap

    def t(c):
        return float(model.total_s(np.array(c), RANK, rate_main, rate_fed_bps=rate_fed))

    assert total == pytest.approx(t(cuts), rel=1e-12) and total <= t([1] * k)
    for i in range(k):  # no single client's feasible move lowers T
        for c in range(1, caps[i] + 1):
            assert t([*cuts[:i], c, *cuts[i + 1 :]]) >= total * (1 - 1e-12)
    if k <= 4:  # and within 1 % of the best of every feasible combination
        grid = np.array(list(itertools.product(*[range(1, cap + 1) for cap in caps])))
        assert total <= float(model.total_s(grid, RANK, rate_main, rate_fed_bps=rate_fed).min()) * 1.01


def test_the_adapter_moves_the_cuts_to_what_the_optimiser_picks():
    from fedsim.core.system import SystemParams, draw_drop
    from fedsim.core.workload import workload_from_config
    from fedsim.optimize import Problem

    cfg = TrainConfig(model="tiny", num_clients=3, batch_size=2, local_iterations=1, rank=2, lora_alpha=4.0,
                      lr=1e-2, steps=2, seed=0, cuts=[2, 2, 2],
                      adaptive_cuts={"rule": "optimiser", "cut_min": 1, "cut_max": 3})  # fmt: skip
    model = tiny_lm("gpt2")
    workload = workload_from_config(model.config, seq_len=16, name="tiny")
    drop = draw_drop(SystemParams(num_clients=3, server_cycles=1e8), np.random.default_rng(3))  # a slow server
    problem = Problem(drop, workload, 2, 1, {2: 1.0})
    alloc = _allocation(problem, 3)
    plan = cut_planner(problem, alloc, 2, cut_min=1)
    compute = [1e6, 1e9, 1e12]  # a very slow, a middling and a very fast client
    want, predicted = plan([2, 2, 2], compute, [3, 3, 3])
    assert want == [1, 3, 3]  # the slow client hands a block to the server, the others take one
    system = build_system(model, cfg, SyntheticLM(12), partition=np.array_split(np.arange(12), 3))
    system.adapter.set_compute(compute)
    system.adapter.set_planner(plan)
    system.local_iteration()
    system.aggregate()
    assert system.layout.cuts == want and [c.cut for c in system.clients] == want
    rows = system.adapter.rows
    assert [(r["client"], r["old"], r["new"]) for r in rows] == [
        (k, 2, w) for k, w in enumerate(want) if w != 2
    ]
    assert all(r["predicted_s"] == predicted and "optimiser" in r["reason"] for r in rows)
    moved = system.adapter.take_moves()  # every block that moved, one by one, for the engine to charge
    assert len(moved) == sum(abs(w - 2) for w in want)
    system.local_iteration()  # still trains after the moves
