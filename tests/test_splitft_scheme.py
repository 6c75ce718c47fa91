"""The "splitft" scheme in the registry: SplitFT's rule-based cuts and cut-layer ranks, no optimiser."""

from __future__ import annotations

import numpy as np
from engine_helpers import random_drop, random_workload

from fedsim.core.allocation import cut_layer_ranks
from fedsim.core.cut_rule import steady_cuts
from fedsim.core.delay import delays
from fedsim.optimize import Problem
from fedsim.optimize.schemes import get_scheme, registered_schemes


def test_steady_cuts_send_fast_clients_up_and_slow_ones_down():
    # gamma 0.5, equal quality: s = 0.5 F/mean F + 0.5 -> 1.5, 0.75, 0.75 for F = 4, 1, 1
    assert steady_cuts([2, 2, 2], [4.0, 1.0, 1.0], 0.5, epsilon=0.1, cut_min=1, cut_max=[5, 5, 5]) == [
        5,
        1,
        1,
    ]
    assert steady_cuts([2, 2], [1.0, 1.05], 0.5, epsilon=0.1, cut_min=1, cut_max=[5, 5]) == [
        2,
        2,
    ]  # inside the band: stay


def test_splitft_scheme_is_registered_and_its_delays_are_the_delay_model():
    rng = np.random.default_rng(3)
    work = random_workload(rng, num_layers=6)
    drop = random_drop(rng, k=5)
    problem = Problem(drop, work, 4, 2, {4: 150.0, 8: 120.0})
    scheme = get_scheme("splitft")
    assert "splitft" in registered_schemes()
    result = scheme.allocate(problem, np.random.default_rng(0))
    cuts = result.allocation.cuts
    want = steady_cuts([2] * 5, drop.client_flops_per_s, 0.5, epsilon=0.1, cut_min=1, cut_max=[5] * 5)
    assert list(cuts) == want
    np.testing.assert_array_equal(result.allocation.ranks, cut_layer_ranks(cuts, 6, 4, rank_others=8))
    ref = delays(
        drop, work, result.allocation, batch_size=4, local_iterations=2, rounds=120.0
    )  # E(r) at r_others = 8
    assert result.delays.total_s == ref.total_s and result.status == "optimal"


def test_sweep_compares_splitft_with_proposed_under_per_client_cuts_and_a_cut_layer_rank():
    from fedsim.experiments.montecarlo.tasks import run_task
    from fedsim.scenario import scenario_from_dict

    scenario = scenario_from_dict(
        {
            "name": "splitft_vs_proposed",
            "model": {"id": "gpt2", "seq_len": 64},
            "training": {"ranks": [4, 8]},
            "schemes": {"names": ["proposed", "splitft"], "per_client_cuts": True, "rank_cut": 2},
            "montecarlo": {"drops": 1, "timing": "engine"},
        }
    )
    rows = {name: run_task(scenario, 0, 0, scheme=name)[0] for name in ("proposed", "splitft")}
    for row in rows.values():
        assert row["status"] in ("optimal", "converged") and row["total_s"] > 0
        assert abs(row["total_s"] - row["analytic_total_s"]) <= 1e-9 * row["analytic_total_s"]
    assert rows["splitft"]["scheme"] == "splitft"


def test_splitft_scheme_takes_the_scenarios_rank_cut_and_halves_its_rank_without_one():
    from fedsim.experiments.montecarlo.tasks import optimize_at
    from fedsim.scenario import scenario_from_dict

    def scenario(schemes):
        return scenario_from_dict(
            {
                "name": "splitft_rank_cut",
                "model": {"id": "gpt2", "seq_len": 64},
                "training": {"ranks": [4, 8]},
                "schemes": {"names": ["splitft"], **schemes},
                "montecarlo": {"drops": 1},
            }
        )

    for schemes, r_cut in (({"rank_cut": 2}, 2), ({"rank_cut": 8}, 8), ({}, 4)):
        result = optimize_at(scenario(schemes), 0, 0, scheme="splitft")
        alloc = result.allocation
        np.testing.assert_array_equal(alloc.ranks, cut_layer_ranks(alloc.cuts, 12, r_cut, rank_others=8))
        pb = result.problem
        want = delays(
            pb.drop,
            pb.workload,
            alloc,
            batch_size=pb.batch_size,
            local_iterations=pb.local_iterations,
            rounds=pb.rounds_by_rank[8],
        )
        assert result.delays.total_s == want.total_s
