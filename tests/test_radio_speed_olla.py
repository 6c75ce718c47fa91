"""The "nr" radio's OLLA sampler keeps its exact numbers through speed work (issue 24).

The golden values below were produced by the walk as it stood before the speed-ups (commit 49a0522) on a
synthetic sampler: the walk's results, the generator's next draw after it (so the number of uniforms it
took is pinned too) and the sampler's state after a sequence of transfers. Any rewrite of the hot loop must
reproduce them: counts and draws exactly, floats to NUMPY_GOLDEN_RTOL (identical on this machine under native and
generic kernels; another CPU's libm may round a log by an ulp). No timing here; see benchmarks/bench_radio.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from kernel_tolerance import NUMPY_GOLDEN_RTOL

from fedsim.radio.nr_harq import OuterLoopHarq

INF = math.inf

# (client, start offset [dB], bits, TB cap) -> (walk result, the generator's next uniform)
GOLDEN_WALKS = [
    ((0, 0.0, INF, 20000), ((20000.0, 24250500.0, 17996, 2004, 4.444444444444293), 0.24288730415614068)),
    ((0, 5.0, INF, 500), ((500.0, 586100.0, 452, 48, 2.777777777777772), 0.08153146030257341)),
    ((0, -20.0, 3e5, 500), ((281.2, 300000.0, 232, 50, 4.222222222222221), 0.08153146030257341)),
    ((0, 12.5, 8e4, 500), ((127.2, 80000.0, 123, 5, 3.833333333333332), 0.08153146030257341)),
    ((1, 0.0, INF, 20000), ((20000.0, 10755300.0, 17997, 2003, 3.3333333333331856), 0.4735617716953988)),
    ((1, 5.0, INF, 500), ((500.0, 232300.0, 452, 48, 2.777777777777772), 0.19881321237266392)),
    ((1, -20.0, 3e5, 500), ((500.0, 232100.0, 430, 70, 2.222222222222216), 0.19881321237266392)),
    ((1, 12.5, 8e4, 500), ((247.28571428571428, 80000.0, 232, 16, 2.7222222222222214), 0.19881321237266392)),
    ((2, 0.0, INF, 20000), (None, 0.8702492039700847)),
    ((2, 12.5, 8e4, 500), (None, 0.8702492039700847)),
]
GOLDEN_DURATIONS = [
    0.15821428571428572,
    49.93213676635747,
    0.856474356307974,
    0.3613,
    113.2784857323554,
    1.8611606679315453,
    INF,
    INF,
    INF,
]
GOLDEN_NEXT_UNIFORM = 0.20327171314544534
GOLDEN_STATE = ([3.4444444444444304, 1.9999999999999942, 0.0], [45855, 103944, 0], [5093, 11557, 0])


def _same(got, want) -> bool:
    """Equal structure; integers and None exactly, floats (inf included) to NUMPY_GOLDEN_RTOL."""
    if isinstance(want, (tuple, list)):
        return isinstance(got, (tuple, list)) and len(got) == len(want) and all(map(_same, got, want))
    if isinstance(want, float):
        return isinstance(got, float) and (got == want or math.isclose(got, want, rel_tol=NUMPY_GOLDEN_RTOL))
    return got == want


def _sampler() -> OuterLoopHarq:
    """Three clients on a 400-point SNR grid with 10 MCS; client 2 gets no TB through at any MCS."""
    g = np.arange(400)
    mcs = np.stack(
        [np.clip((g - 60) // 25, 0, 9), np.clip((g - 150) // 30, 0, 9), np.clip((g - 60) // 25, 0, 9)]
    )
    tb = np.array([[100.0, 200, 400, 700, 1000, 1400, 1900, 2500, 3200, 4000]] * 3)
    tbler = np.array(
        [
            [0.0, 1e-4, 0.002, 0.01, 0.04, 0.09, 0.2, 0.45, 0.8, 1.0],
            [0.001, 0.01, 0.05, 0.1, 0.3, 0.6, 0.9, 1.0, 1.0, 1.0],
            [1.0] * 10,
        ]
    )
    return OuterLoopHarq(mcs, tb, tbler, np.array([220, 260, 220]), 2.0, 0.05, 1.0, 0.1, 1e-3)


@pytest.mark.parametrize(("args", "expected"), GOLDEN_WALKS)
def test_the_olla_walk_reproduces_its_golden_numbers_and_draws(args, expected):
    k, offset, bits, max_tbs = args
    rng = np.random.default_rng(7 + k)
    walk = _sampler()._walk(k, offset, bits, max_tbs, rng)
    assert _same((walk, float(rng.random())), expected)


def test_olla_transfers_reproduce_their_golden_durations_and_state():
    sampler, rng = _sampler(), np.random.default_rng(3)
    durations = [sampler.duration_s(k, bits, rng) for k in (0, 1, 2) for bits in (2e5, 6e7, 1e6)]
    assert _same(durations, GOLDEN_DURATIONS)
    assert _same(float(rng.random()), GOLDEN_NEXT_UNIFORM)
    state = (sampler.offset_db.tolist(), sampler.acks.tolist(), sampler.nacks.tolist())
    assert _same(state, GOLDEN_STATE)


def test_mcs_tables_is_one_cache_entry_however_downlink_is_spelled():
    pytest.importorskip("sionna", reason="the nr radio needs the optional extra fedsim[nr]")
    from fedsim.radio.nr_link import _mcs_tables, mcs_tables

    first = mcs_tables((1, 2), 156, 1)
    misses = _mcs_tables.cache_info().misses
    assert mcs_tables((1, 2), 156, 1, downlink=False) is first
    assert _mcs_tables.cache_info().misses == misses
