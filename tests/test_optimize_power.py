"""Power control: the exact flat-channel solver against closed forms, budgets (hypothesis), and against the
cvxpy/CLARABEL convex programme on random drops including clients next to a server (SNR ~ 80 dB)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optimize_helpers import power_cases

from fedsim.core.delay import link_rates_bps
from fedsim.core.system import Link, SystemParams, draw_drop
from fedsim.optimize.greedy import greedy_assign, random_average_assign
from fedsim.optimize.power import (
    client_counts,
    finish_time_s,
    min_power_w,
    min_time_flat,
    solve_power_exact,
    uniform_psd,
)
from fedsim.optimize.power_cvx import solve_power_cvx

N0 = 10 ** (-174 / 10) * 1e-3  # -174 dBm/Hz in W/Hz
B = 5e5


def _link_time(link, owner, psd, offset, load):
    rate = link_rates_bps(link, owner, psd, num_clients=len(offset))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.max(np.where(load > 0, offset + load / rate, offset)))


def test_single_client_is_full_power_closed_form():
    # one client: T = offset + load / (n B log2(1 + min(p_max, p_th) g / (N0 n B)))
    g, n, off, load = 1e-10, 4, 0.3, 2e8
    for p_max, p_th in ((0.2, 0.6), (0.2, 0.05)):
        t, p = min_time_flat(
            np.array([n]),
            np.array([g]),
            np.array([off]),
            load_bits=np.array([load]),
            p_max_w=np.array([p_max]),
            p_th_w=p_th,
            sub_hz=B,
            noise_psd_w_hz=N0,
        )
        p_use = min(p_max, p_th)
        expect = off + load / (n * B * np.log2(1 + p_use * g / (N0 * n * B)))
        assert t == pytest.approx(expect, rel=1e-12)
        assert p[0] == pytest.approx(p_use, rel=1e-12)


def test_min_power_inverts_finish_time():
    rng = np.random.default_rng(0)
    p = rng.uniform(1e-3, 0.2, 50)
    n = rng.integers(1, 10, 50)
    g = 10 ** rng.uniform(-12, -7, 50)
    off = rng.uniform(0, 2, 50)
    load = rng.uniform(1e6, 3e8, 50)
    t = finish_time_s(p, n, g, offset_s=off, load_bits=load, sub_hz=B, noise_psd_w_hz=N0)
    np.testing.assert_allclose(
        min_power_w(t, n, g, offset_s=off, load_bits=load, sub_hz=B, noise_psd_w_hz=N0), p, rtol=1e-9
    )


def test_binding_threshold_equalises_finish_times_and_spends_p_th():
    # when p_th binds, at the optimum every client finishes together and the whole p_th is used
    drop = draw_drop(SystemParams(p_th_main_w=0.05), np.random.default_rng(5))
    owner = np.arange(20) % 5
    off, load = np.linspace(0.5, 1.5, 5), np.full(5, 2e8)
    sol = solve_power_exact(drop.main, owner, drop.p_max_w, offset_s=off, load_bits=load)
    rate = link_rates_bps(drop.main, owner, sol.psd_w_hz, num_clients=5)
    finish = off + load / rate
    power = np.bincount(owner, weights=sol.psd_w_hz * drop.main.subchannel_hz)
    assert np.all(power <= drop.p_max_w + 1e-15)
    unconstrained = power < drop.p_max_w * (1 - 1e-9)
    np.testing.assert_allclose(finish[unconstrained], sol.time_s, rtol=1e-9)
    assert power.sum() == pytest.approx(drop.main.p_th_w, rel=1e-9)
    assert sol.time_s == pytest.approx(finish.max(), rel=1e-12)
    # and it beats the baselines' uniform PSD
    assert sol.time_s <= _link_time(drop.main, owner, uniform_psd(drop.main, owner, drop.p_max_w), off, load)


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(1, 6),
    extra=st.integers(0, 10),
    seed=st.integers(0, 2**31),
    p_max=st.floats(1e-3, 1.0),
    p_th=st.floats(1e-3, 3.0),
)
def test_exact_power_within_budgets_and_optimal(k, extra, seed, p_max, p_th):
    rng = np.random.default_rng(seed)
    s = k + extra
    link = Link(s, B, N0, p_th, 10 ** rng.uniform(-13, -6, k))
    owner = random_average_assign(s, k, rng)
    p_max_w = np.full(k, p_max) * rng.uniform(0.2, 1.0, k)
    off = rng.uniform(0, 3, k)
    load = rng.uniform(0, 3e8, k) * (rng.random(k) > 0.1)
    sol = solve_power_exact(link, owner, p_max_w, offset_s=off, load_bits=load)
    power = np.bincount(owner, weights=sol.psd_w_hz * B, minlength=k)
    assert sol.status == "optimal" and np.isfinite(sol.time_s)
    assert np.all(sol.psd_w_hz >= 0)
    assert np.all(power <= p_max_w * (1 + 1e-12))
    assert power.sum() <= p_th * (1 + 1e-12)
    achieved = _link_time(link, owner, sol.psd_w_hz, off, load)
    assert achieved == pytest.approx(sol.time_s, rel=1e-7)
    # no feasible alternative does better: uniform PSD and full power scaled into p_th
    assert sol.time_s <= _link_time(link, owner, uniform_psd(link, owner, p_max_w), off, load) * (1 + 1e-9)


def _cvx_cases(count: int):
    """(link, owner, p_max, offset, load) cases: §7 drops, and drops with a client ~10 m from a server."""
    return [case for seed in range(count) for case in power_cases(seed)]


def _cvx_agreement(count: int) -> np.ndarray:
    rel = []
    for link, owner, p_max, off, load in _cvx_cases(count):
        exact = solve_power_exact(link, owner, p_max, offset_s=off, load_bits=load)
        cvx = solve_power_cvx(link, owner, p_max, offset_s=off, load_bits=load)
        assert cvx.status == "optimal", cvx.status
        assert np.all(np.bincount(owner, weights=cvx.psd_w_hz * B) <= p_max * (1 + 1e-12))
        rel.append(abs(cvx.time_s - exact.time_s) / exact.time_s)
    return np.array(rel)


def test_cvxpy_agrees_with_exact_on_30_drops():
    rel = _cvx_agreement(30)  # 60 link problems
    assert rel.max() <= 1e-5, rel.max()


@pytest.mark.slow
def test_cvxpy_agrees_with_exact_on_300_drops():
    rel = _cvx_agreement(300)  # 600 link problems, 75 drops with a client next to the servers
    assert rel.max() <= 1e-5, rel.max()


def test_cvxpy_with_fading_gains_equal_per_client_matches_exact():
    drop = draw_drop(SystemParams(), np.random.default_rng(11))
    owner = np.arange(20) % 5
    off, load = np.full(5, 1.0), np.full(5, 2e8)
    faded = Link(
        20,
        drop.main.subchannel_hz,
        drop.main.noise_psd_w_hz,
        drop.main.p_th_w,
        np.repeat(drop.main.gain[:, None], 20, axis=1),
    )
    exact = solve_power_exact(drop.main, owner, drop.p_max_w, offset_s=off, load_bits=load)
    cvx = solve_power_cvx(faded, owner, drop.p_max_w, offset_s=off, load_bits=load)
    assert cvx.time_s == pytest.approx(exact.time_s, rel=1e-5)


def test_cvxpy_fading_beats_uniform_psd():
    drop = draw_drop(SystemParams(fading=True), np.random.default_rng(3))
    owner = greedy_assign(drop.main, drop.p_max_w, np.ones(5), load_bits=np.full(5, 2e8))
    assert np.all(client_counts(owner, 5) >= 1)
    cvx = solve_power_cvx(drop.main, owner, drop.p_max_w, offset_s=np.ones(5), load_bits=np.full(5, 2e8))
    uni = _link_time(
        drop.main, owner, uniform_psd(drop.main, owner, drop.p_max_w), np.ones(5), np.full(5, 2e8)
    )
    assert cvx.status == "optimal" and cvx.time_s <= uni * (1 + 1e-9)
    assert cvx.time_s == pytest.approx(
        _link_time(drop.main, owner, cvx.psd_w_hz, np.ones(5), np.full(5, 2e8))
    )


def test_exact_solver_rejects_fading():
    drop = draw_drop(SystemParams(fading=True), np.random.default_rng(3))
    with pytest.raises(ValueError, match="flat"):
        solve_power_exact(
            drop.main, np.arange(20) % 5, drop.p_max_w, offset_s=np.zeros(5), load_bits=np.ones(5)
        )
