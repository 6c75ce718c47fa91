"""The optimiser with SplitFT's cut-layer rank (spec §10c): its delay terms use r_cut on each client's
blocks c_k and c_k + 1 and r elsewhere, so the chosen cut/rank and the predicted delay account for it."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import numpy as np
import pytest
from engine_helpers import random_drop, random_workload

from fedsim.core.allocation import Allocation, cut_layer_ranks
from fedsim.core.delay import delays, link_rates_bps
from fedsim.core.workload import Workload
from fedsim.engine import EngineConfig, simulate
from fedsim.optimize import Problem, optimize
from fedsim.optimize.objective import CostModel
from fedsim.optimize.power import uniform_psd

# J = 3 blocks with round per-rank numbers, so each term is a short hand sum
HAND = Workload(
    "hand",
    16,
    np.array([100.0, 200.0, 300.0]),  # rho_j
    np.array([10.0, 20.0, 30.0]),  # varpi_j
    np.array([1.0, 2.0, 3.0]),  # delta-rho_j per rank
    np.array([4.0, 5.0, 6.0]),  # delta-varpi_j per rank
    np.array([1e3, 2e3, 3e3]),
    np.array([7.0, 11.0, 13.0]),  # delta_j, LoRA bits per rank
    50.0,
    60.0,
)


def test_cost_terms_with_a_cut_layer_rank_against_a_hand_computation():
    rng = np.random.default_rng(0)
    drop = random_drop(rng, k=2, fading=False)
    drop = dataclasses.replace(drop, client_flops_per_s=np.array([10.0, 20.0]), server_flops_per_s=100.0)
    model = CostModel.of(Problem(drop, HAND, 2, 1, {8: 1.0}, rank_cut=2))
    cuts = np.array([1, 2])  # client 0: block 1 at r_cut, blocks 2 (its server cut block) r_cut, 3 at r
    # client 0: rho_1 + r_cut drho_1; client 1: rho_1 + rho_2 + r drho_1 + r_cut drho_2
    np.testing.assert_allclose(
        model.client_fwd_s(cuts, 8), 2 * np.array([100 + 2 * 1, 300 + 8 * 1 + 2 * 2]) / [10.0, 20.0]
    )
    np.testing.assert_allclose(
        model.client_bwd_s(cuts, 8), 2 * np.array([10 + 2 * 4, 30 + 8 * 4 + 2 * 5]) / [10.0, 20.0]
    )
    # Lambda_k: client 0 delta_1 r_cut; client 1 delta_1 r + delta_2 r_cut
    np.testing.assert_allclose(model.fed_load_bits(cuts, 8), [2 * 7, 8 * 7 + 2 * 11])
    # server: client 0's data through blocks 2 (r_cut) and 3 (r), client 1's through block 3 (r_cut)
    server0 = (200 + 300) + (20 + 30) + 2 * (2 + 5) + 8 * (3 + 6) + 50 + 60
    server1 = 300 + 30 + 2 * (3 + 6) + 50 + 60
    np.testing.assert_allclose(model.server_s(cuts, 8), 2 * (server0 + server1) / 100.0)
    # a cut at J has no server block: r_cut on block J only
    np.testing.assert_allclose(model.fed_load_bits(np.array([3, 3]), 8), [8 * (7 + 11) + 2 * 13] * 2)


def test_cost_model_equals_the_delay_model_for_every_cut_and_rank():
    rng = np.random.default_rng(1)
    for _ in range(30):
        work = random_workload(rng, num_layers=int(rng.integers(2, 7)))
        drop = random_drop(rng, fading=False)
        k, j = drop.num_clients, work.num_layers
        rank_cut, rank = int(rng.integers(1, 5)), int(rng.choice([2, 4, 8]))
        problem = Problem(drop, work, 4, 3, {rank: 2.0}, rank_cut=rank_cut)
        model = CostModel.of(problem)
        owner = np.arange(drop.main.num_subchannels) % k
        owner_fed = np.arange(drop.fed.num_subchannels) % k
        psd, psd_fed = (
            uniform_psd(drop.main, owner, drop.p_max_w),
            uniform_psd(drop.fed, owner_fed, drop.p_max_w),
        )
        rate_main, rate_fed = (
            link_rates_bps(drop.main, owner, psd, num_clients=k),
            link_rates_bps(drop.fed, owner_fed, psd_fed, num_clients=k),
        )
        cuts = rng.integers(1, j + 1, k)
        alloc = Allocation(
            owner, owner_fed, psd, psd_fed, cuts, cut_layer_ranks(cuts, j, rank_cut, rank_others=rank)
        )
        ref = delays(drop, work, alloc, batch_size=4, local_iterations=3, rounds=2.0).total_s
        assert float(model.total_s(cuts, rank, rate_main, rate_fed_bps=rate_fed)) == pytest.approx(
            ref, rel=1e-12
        )


@pytest.mark.parametrize("per_client", [False, True])
def test_bcd_chooses_cuts_and_rank_with_the_cut_layer_rank_and_the_engine_agrees(per_client):
    rng = np.random.default_rng(7)
    worst = 0.0
    for _ in range(6):
        work = random_workload(rng, num_layers=5)
        drop = random_drop(rng, k=3, fading=False)
        e_r = {2: 150.0, 4: 120.0, 8: 110.0}
        plain = Problem(drop, work, 4, 2, e_r, per_client_cuts=per_client)
        problem = Problem(drop, work, 4, 2, e_r, per_client_cuts=per_client, rank_cut=1)
        result = optimize(problem, "proposed", rng=np.random.default_rng(0))
        alloc, r = result.allocation, result.rank
        np.testing.assert_array_equal(alloc.ranks, cut_layer_ranks(alloc.cuts, 5, 1, rank_others=r))
        # the predicted delay is the delay model of the allocation with r_cut, E(r) read at r
        assert (
            result.delays.total_s
            == delays(drop, work, alloc, batch_size=4, local_iterations=2, rounds=e_r[r]).total_s
        )
        assert min(result.history) == pytest.approx(result.delays.total_s, rel=1e-9)
        # the same decisions timed with one rank everywhere would be slower (r_cut = 1 < r saves time)
        uniform = replace(alloc, ranks=np.full_like(alloc.ranks, r))
        assert (
            result.delays.total_s
            < delays(drop, work, uniform, batch_size=4, local_iterations=2, rounds=e_r[r]).total_s
        )
        # and the optimiser that knows r_cut does no worse than applying r_cut after a plain optimisation
        after = optimize(plain, "proposed", rng=np.random.default_rng(0)).allocation
        after = replace(after, ranks=cut_layer_ranks(after.cuts, 5, 1, rank_others=int(after.ranks.max())))
        assert result.delays.total_s <= delays(
            drop, work, after, batch_size=4, local_iterations=2, rounds=e_r[int(after.ranks.max())]
        ).total_s * (1 + 1e-9)
        sim = simulate(
            drop,
            work,
            alloc,
            batch_size=4,
            local_iterations=2,
            rounds=e_r[r],
            config=EngineConfig(trace=False),
            rng=np.random.default_rng(1),
        )
        worst = max(worst, abs(sim.total_s - result.delays.total_s) / result.delays.total_s)
    assert worst < 1e-9


def test_without_rank_cut_the_optimiser_is_unchanged():
    rng = np.random.default_rng(11)
    work, drop = random_workload(rng, num_layers=5), random_drop(rng, k=3, fading=False)
    problem = Problem(drop, work, 4, 2, {2: 150.0, 4: 120.0, 8: 110.0})
    model = CostModel.of(problem)
    cuts = np.array([1, 3, 5])
    # the prefix-sum expressions of eqs. (8), (13), (11)-(12) and Lambda_k, unchanged
    np.testing.assert_array_equal(
        model.client_fwd_s(cuts, 4),
        4 * (model.cum_fwd[cuts] + 4 * model.cum_lora_fwd[cuts]) / model.client_flops_per_s,
    )
    np.testing.assert_array_equal(model.fed_load_bits(cuts, 4), 4 * model.cum_lora_bits[cuts])
    result = optimize(problem, "proposed", rng=np.random.default_rng(0))
    assert (result.allocation.ranks == result.rank).all()
