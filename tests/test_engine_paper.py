"""Paper mode: the engine's event-timed total equals the analytical delay model (spec eqs. 16, 17)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from engine_helpers import RANKS, random_allocation, random_drop, random_workload, round_robin

from fedsim.core.delay import delays
from fedsim.engine import EngineConfig, iteration_terms, lora_upload_s, simulate

FAST = EngineConfig(trace=False)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def test_total_matches_delay_model_on_1000_drops_all_cuts():
    # Prepare: 1000 drops; per drop every cut, a rank cycling through R, random I and E(r)
    rng = np.random.default_rng(20261122)
    work = random_workload(rng, num_layers=3)
    worst, checked = 0.0, 0
    for n in range(1000):
        drop = random_drop(rng)
        rank = RANKS[n % len(RANKS)]
        iters, rounds = int(rng.integers(1, 4)), float(rng.choice([1, 2, 1.5, 2.25]))
        for cut in (1, 2, 3):
            alloc = random_allocation(rng, drop, 3, cut=cut, rank=rank)
            # Execute
            ref = delays(drop, work, alloc, batch_size=4, local_iterations=iters, rounds=rounds).total_s
            got = simulate(
                drop, work, alloc, batch_size=4, local_iterations=iters, rounds=rounds, config=FAST, rng=rng
            ).total_s
            # Assert
            worst = max(worst, _rel(got, ref))
            checked += 1
    assert checked == 3000
    assert worst < 1e-9


@pytest.mark.slow
def test_total_matches_on_1000_drops_times_every_cut_and_rank():
    # the full product (15,000 runs); the default suite cycles the rank per drop instead
    rng = np.random.default_rng(20261123)
    work = random_workload(rng, num_layers=3)
    worst = 0.0
    for _ in range(1000):
        drop = random_drop(rng)
        for cut in (1, 2, 3):
            for rank in RANKS:
                alloc = random_allocation(rng, drop, 3, cut=cut, rank=rank)
                ref = delays(drop, work, alloc, batch_size=4, local_iterations=2, rounds=1.5).total_s
                worst = max(
                    worst,
                    _rel(
                        simulate(
                            drop,
                            work,
                            alloc,
                            batch_size=4,
                            local_iterations=2,
                            rounds=1.5,
                            config=FAST,
                            rng=rng,
                        ).total_s,
                        ref,
                    ),
                )
    assert worst < 1e-9


def test_total_matches_with_per_client_cuts_and_per_layer_ranks():
    rng = np.random.default_rng(7)
    for _ in range(300):
        work = random_workload(rng, num_layers=int(rng.integers(2, 6)))
        drop = random_drop(rng)
        alloc = random_allocation(rng, drop, work.num_layers)
        ref = delays(drop, work, alloc, batch_size=3, local_iterations=2, rounds=2).total_s
        assert (
            _rel(
                simulate(
                    drop, work, alloc, batch_size=3, local_iterations=2, rounds=2, config=FAST, rng=rng
                ).total_s,
                ref,
            )
            < 1e-9
        )


@pytest.mark.parametrize("rank", RANKS)
def test_gpt2_all_cuts(gpt2_workload, rank):
    rng = np.random.default_rng(rank)
    for _ in range(3):
        drop = random_drop(rng, k=5)
        for cut in range(1, gpt2_workload.num_layers + 1):
            alloc = random_allocation(rng, drop, gpt2_workload.num_layers, cut=cut, rank=rank)
            ref = delays(drop, gpt2_workload, alloc, batch_size=16, local_iterations=10, rounds=1.5)
            got = simulate(
                drop,
                gpt2_workload,
                alloc,
                batch_size=16,
                local_iterations=10,
                rounds=1.5,
                config=FAST,
                rng=rng,
            )
            assert _rel(got.total_s, ref.total_s) < 1e-9


def test_trace_on_and_off_give_the_same_total(gpt2_workload):
    rng = np.random.default_rng(3)
    drop = random_drop(rng, k=4)
    alloc = round_robin(drop, 12, cut=3, rank=2)
    on = simulate(
        drop,
        gpt2_workload,
        alloc,
        batch_size=16,
        local_iterations=3,
        rounds=2,
        config=EngineConfig(),
        rng=rng,
    )
    off = simulate(
        drop, gpt2_workload, alloc, batch_size=16, local_iterations=3, rounds=2, config=FAST, rng=rng
    )
    assert _rel(on.total_s, off.total_s) < 1e-12
    assert len(on.trace) > 0 and len(off.trace) == 0


def test_eq16_term_by_term_from_trace():
    # Prepare
    rng = np.random.default_rng(11)
    for _ in range(20):
        work = random_workload(rng, 4)
        drop = random_drop(rng)
        alloc = random_allocation(rng, drop, 4)
        ref = delays(drop, work, alloc, batch_size=2, local_iterations=3, rounds=2)
        # Execute
        res = simulate(
            drop, work, alloc, batch_size=2, local_iterations=3, rounds=2, config=EngineConfig(), rng=rng
        )
        terms = iteration_terms(res.trace)
        # Assert: every (round, iteration) reproduces T1, t_sF, t_sB, T2 of eq. (16)
        assert len(terms) == 6
        for col, want in [
            ("T1_s", ref.T1_s),
            ("t_server_fwd_s", ref.t_server_fwd_s),
            ("t_server_bwd_s", ref.t_server_bwd_s),
            ("T2_s", ref.T2_s),
        ]:
            np.testing.assert_allclose(terms[col], want, rtol=1e-9)
        np.testing.assert_allclose(terms["end_s"] - terms["start_s"], ref.iteration_s, rtol=1e-9)
        np.testing.assert_allclose(lora_upload_s(res.trace), ref.T3_s, rtol=1e-9)
        durations = [r["duration_s"] for r in res.round_rows]
        np.testing.assert_allclose(durations, 3 * ref.iteration_s + ref.T3_s, rtol=1e-9)


def test_reading_d2_uploads_lora_every_iteration():
    rng = np.random.default_rng(5)
    cfg = EngineConfig(trace=False, lora_upload_every_iteration=True)
    for _ in range(200):
        work = random_workload(rng, 3)
        drop = random_drop(rng)
        alloc = random_allocation(rng, drop, 3)
        ref = delays(
            drop, work, alloc, batch_size=4, local_iterations=3, rounds=2, upload_every_local_iteration=True
        ).total_s
        assert (
            _rel(
                simulate(
                    drop, work, alloc, batch_size=4, local_iterations=3, rounds=2, config=cfg, rng=rng
                ).total_s,
                ref,
            )
            < 1e-9
        )


def test_client_without_subchannel_gives_infinite_total_like_the_model():
    rng = np.random.default_rng(2)
    work = random_workload(rng, 3)
    drop = random_drop(rng, k=3)
    alloc = random_allocation(rng, drop, 3, cut=1, rank=1)
    owner = alloc.owner_main.copy()
    owner[owner == 2] = -1
    alloc = replace(alloc, owner_main=owner)
    assert math.isinf(delays(drop, work, alloc, batch_size=4, local_iterations=2, rounds=1).total_s)
    assert math.isinf(
        simulate(drop, work, alloc, batch_size=4, local_iterations=2, rounds=1, config=FAST, rng=rng).total_s
    )


def test_paper_mode_does_not_touch_the_rng():
    rng = np.random.default_rng(9)
    work = random_workload(rng, 3)
    drop = random_drop(rng)
    alloc = random_allocation(rng, drop, 3)
    state = rng.bit_generator.state
    simulate(drop, work, alloc, batch_size=4, local_iterations=2, rounds=3, config=EngineConfig(), rng=rng)
    assert rng.bit_generator.state == state


def test_fractional_rounds_are_charged_pro_rata():
    rng = np.random.default_rng(4)
    work = random_workload(rng, 3)
    drop = random_drop(rng)
    alloc = random_allocation(rng, drop, 3)
    res = simulate(
        drop, work, alloc, batch_size=4, local_iterations=2, rounds=2.4, config=EngineConfig(), rng=rng
    )
    per_round = res.round_rows[0]["duration_s"]
    assert res.rounds_completed == 3
    assert res.total_s == pytest.approx(2.4 * per_round, rel=1e-12)
