"""Hypothesis properties of the engine: orderings that must hold whatever the drop."""

from __future__ import annotations

import numpy as np
from engine_helpers import random_allocation, random_drop, random_workload
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsim.engine import EngineConfig, simulate

SEEDS = st.integers(0, 2**32 - 1)


def _case(seed: int):
    rng = np.random.default_rng(seed)
    work = random_workload(rng, 3)
    drop = random_drop(rng, fading=False)
    return work, drop, random_allocation(rng, drop, 3)


def _total(case, **switches) -> float:
    work, drop, alloc = case
    return simulate(
        drop,
        work,
        alloc,
        batch_size=2,
        local_iterations=2,
        rounds=2,
        config=EngineConfig(trace=False, **switches),
        rng=np.random.default_rng(0),
    ).total_s


@settings(max_examples=40, deadline=None)
@given(SEEDS)
def test_extra_costs_never_shorten_training(seed):
    case = _case(seed)
    paper = _total(case)
    assert _total(case, download=True) >= paper
    assert _total(case, aggregation_s=0.1, broadcast=True) >= paper
    assert _total(case, straggler_prob=1.0, straggler_slowdown=2.0) >= paper


@settings(max_examples=40, deadline=None)
@given(SEEDS)
def test_pipelining_and_more_server_capacity_never_hurt(seed):
    case = _case(seed)
    paper = _total(case)
    pipelined = _total(case, pipelined_server=True)
    assert pipelined <= paper * (1 + 1e-12)
    assert _total(case, pipelined_server=True, server_gpu_capacity=8) <= pipelined * (1 + 1e-12)


@settings(max_examples=40, deadline=None)
@given(SEEDS, st.floats(0.0, 1.0))
def test_energy_and_times_are_finite_and_nonnegative(seed, p):
    work, drop, alloc = _case(seed)
    cfg = EngineConfig(failure_prob=p, fading_every_round=True, download=True)
    res = simulate(
        drop,
        work,
        alloc,
        batch_size=2,
        local_iterations=2,
        rounds=3,
        config=cfg,
        rng=np.random.default_rng(seed),
    )
    assert np.isfinite(res.total_s) and res.total_s >= 0
    assert (res.energy_tx_j >= 0).all() and (res.energy_compute_j >= 0).all()
    assert all(r["end_s"] >= r["start_s"] for r in res.round_rows)
    starts = [r["start_s"] for r in res.round_rows]
    assert starts == sorted(starts)
