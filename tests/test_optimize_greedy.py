"""Algorithm 2 and the exact count refinement: every subchannel assigned, each client >= 1, min-max
optimality of the counts for fixed powers, best-subchannel choice under fading."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optimize_helpers import small_instance

from fedsim.core.system import Link
from fedsim.optimize.bruteforce import compositions
from fedsim.optimize.greedy import assignment_power_w, greedy_assign, random_average_assign
from fedsim.optimize.joint import exact_counts
from fedsim.optimize.power import client_counts, finish_time_s, min_time_flat, solve_power_exact

N0, B = 10 ** (-174 / 10) * 1e-3, 5e5


def _link(k, s, rng, fading=False, p_th=0.6):
    gain = 10 ** rng.uniform(-12, -8, k)
    if fading:
        gain = gain[:, None] * rng.exponential(1.0, (k, s))
    return Link(s, B, N0, p_th, gain)


@settings(max_examples=80, deadline=None)
@given(k=st.integers(1, 8), extra=st.integers(0, 30), seed=st.integers(0, 2**31), fading=st.booleans())
def test_every_subchannel_assigned_each_client_at_least_one(k, extra, seed, fading):
    rng = np.random.default_rng(seed)
    link = _link(k, k + extra, rng, fading)
    owner = greedy_assign(link, np.full(k, 0.2), rng.uniform(0, 2, k), load_bits=rng.uniform(0, 3e8, k))
    assert owner.shape == (k + extra,)
    assert np.all((owner >= 0) & (owner < k))
    assert np.all(client_counts(owner, k) >= 1)


def test_greedy_counts_minimise_the_worst_delay_for_fixed_powers():
    # with P_k fixed the straggler-first greedy is min-max optimal over all compositions (flat channel)
    for seed in range(40):
        rng = np.random.default_rng(seed)
        k, s = int(rng.integers(2, 6)), int(rng.integers(6, 13))
        link = _link(k, s, rng)
        off, load, p_max = rng.uniform(0, 2, k), rng.uniform(1e7, 3e8, k), np.full(k, 0.2)
        power = assignment_power_w(link, p_max)
        counts = client_counts(greedy_assign(link, p_max, off, load_bits=load), k)
        greedy_worst = finish_time_s(
            power, counts, link.gain, offset_s=off, load_bits=load, sub_hz=B, noise_psd_w_hz=N0
        ).max()
        comps = compositions(s, k)
        best = (
            finish_time_s(power, comps, link.gain, offset_s=off, load_bits=load, sub_hz=B, noise_psd_w_hz=N0)
            .max(axis=1)
            .min()
        )
        assert greedy_worst == pytest.approx(best, rel=1e-12)


def test_fading_weakest_client_gets_its_best_subchannel():
    rng = np.random.default_rng(2)
    link = _link(4, 12, rng, fading=True)
    off, load = np.zeros(4), np.full(4, 1e8)
    owner = greedy_assign(link, np.full(4, 0.2), off, load_bits=load)
    d1 = finish_time_s(
        assignment_power_w(link, np.full(4, 0.2)),
        1,
        link.gain.max(axis=1),
        offset_s=off,
        load_bits=load,
        sub_hz=B,
        noise_psd_w_hz=N0,
    )
    weakest = int(np.argmax(d1))
    assert owner[int(np.argmax(link.gain[weakest]))] == weakest


def test_random_average_is_balanced_and_shuffled():
    rng = np.random.default_rng(0)
    owner = random_average_assign(23, 5, rng)
    counts = client_counts(owner, 5)
    assert counts.sum() == 23 and counts.max() - counts.min() <= 1
    assert not np.array_equal(owner, np.sort(owner))


def test_exact_counts_reach_the_composition_optimum():
    # joint counts + power of one link equal the brute force over all compositions
    for seed in range(25):
        inst = small_instance(seed)
        link, k = inst.drop.main, inst.drop.num_clients
        rng = np.random.default_rng(seed)
        off, load = rng.uniform(0.5, 2, k), np.full(k, 2e8)
        p_max = inst.drop.p_max_w
        comps = compositions(link.num_subchannels, k)
        t_all, _ = min_time_flat(
            comps,
            link.gain,
            off,
            load_bits=load,
            p_max_w=p_max,
            p_th_w=link.p_th_w,
            sub_hz=B * 0 + link.subchannel_hz,
            noise_psd_w_hz=link.noise_psd_w_hz,
        )
        start = solve_power_exact(
            link, greedy_assign(link, p_max, off, load_bits=load), p_max, offset_s=off, load_bits=load
        ).time_s
        counts = exact_counts(link, p_max, off, load_bits=load, upper_s=start)
        owner = np.repeat(np.arange(k), counts)
        t = solve_power_exact(link, owner, p_max, offset_s=off, load_bits=load).time_s
        assert t == pytest.approx(t_all.min(), rel=1e-8)
        assert t <= start * (1 + 1e-12)
