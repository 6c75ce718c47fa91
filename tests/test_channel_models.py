"""Channel models against hand-computed values, statistics and hypothesis properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import channel
from channel import (
    client_positions_in_disc,
    client_rates_bps,
    db_to_lin,
    dbm_hz_to_w_hz,
    dbm_to_w,
    distances_m,
    large_scale_gain,
    lin_to_db,
    pathloss_db,
    rayleigh_power_gains,
    shadowing_db,
    shannon_rate_bps,
    subchannel_bandwidth_hz,
    w_hz_to_dbm_hz,
    w_to_dbm,
)

N0 = 10 ** (-174 / 10) * 1e-3  # -174 dBm/Hz in W/Hz, by hand


# -- units ----------------------------------------------------------------------------------------


def test_units_hand_values():
    assert db_to_lin(30.0) == pytest.approx(1000.0)
    assert db_to_lin(-3.0) == pytest.approx(0.501187, rel=1e-5)
    assert dbm_to_w(30.0) == pytest.approx(1.0)
    assert dbm_to_w(0.0) == pytest.approx(1e-3)
    assert w_to_dbm(0.2) == pytest.approx(23.0103, abs=1e-4)
    assert dbm_hz_to_w_hz(-174.0) == pytest.approx(3.981e-21, rel=1e-3)
    assert dbm_hz_to_w_hz(-174.0) == pytest.approx(N0)


@given(st.floats(min_value=-200.0, max_value=200.0))
def test_units_round_trip(x_db):
    assert lin_to_db(db_to_lin(x_db)) == pytest.approx(x_db, abs=1e-9)
    assert w_to_dbm(dbm_to_w(x_db)) == pytest.approx(x_db, abs=1e-9)
    assert w_hz_to_dbm_hz(dbm_hz_to_w_hz(x_db)) == pytest.approx(x_db, abs=1e-9)


def test_units_reject_non_positive():
    with pytest.raises(ValueError, match="value_lin"):
        lin_to_db(0.0)
    with pytest.raises(ValueError):
        w_to_dbm(-1.0)


# -- path loss and shadowing --------------------------------------------------------------------


def test_pathloss_hand_values():
    np.testing.assert_allclose(
        pathloss_db([1000.0, 100.0, 10.0, 2000.0]), [128.1, 90.5, 52.9, 128.1 + 37.6 * np.log10(2.0)]
    )
    # 1 km with +8 dB shadowing: h = 10^(-(128.1 + 8)/10)
    assert large_scale_gain(1000.0, 8.0) == pytest.approx(10 ** (-13.61))
    assert large_scale_gain(100.0) == pytest.approx(10 ** (-9.05))
    with pytest.raises(ValueError, match="distance_m"):
        pathloss_db(0.0)


def test_shadowing_statistics():
    x = shadowing_db(np.random.default_rng(7), 100_000, sigma_db=8.0)
    # mean: std error 8/sqrt(1e5) = 0.025 dB; sample std: std error ~ 8/sqrt(2e5) = 0.018 dB (5 sigma bounds)
    assert abs(x.mean()) < 5 * 8 / np.sqrt(1e5)
    assert abs(x.std() - 8.0) < 5 * 8 / np.sqrt(2e5)
    assert stats.kstest(x / 8.0, "norm").pvalue > 1e-3
    with pytest.raises(ValueError, match="sigma_db"):
        shadowing_db(np.random.default_rng(0), 3, sigma_db=-1.0)


def test_rayleigh_power_gains_are_unit_exponential():
    g = rayleigh_power_gains(np.random.default_rng(3), (200, 500))
    assert g.shape == (200, 500)
    assert abs(g.mean() - 1.0) < 5 / np.sqrt(g.size)
    assert stats.kstest(g.ravel(), "expon").pvalue > 1e-3


# -- geometry -------------------------------------------------------------------------------------


def test_drop_is_area_uniform():
    radius = 200.0
    xy = client_positions_in_disc(20_000, radius, np.random.default_rng(11))
    r = np.hypot(xy[:, 0], xy[:, 1])
    assert r.max() <= radius
    # area-uniform: P(r <= x) = x^2/R^2, so (r/R)^2 is U(0,1); the angle is U(-pi, pi)
    assert stats.kstest((r / radius) ** 2, "uniform").pvalue > 1e-3
    assert stats.kstest(np.arctan2(xy[:, 1], xy[:, 0]), "uniform", args=(-np.pi, 2 * np.pi)).pvalue > 1e-3
    # and it is NOT uniform in the radius itself
    assert stats.kstest(r / radius, "uniform").pvalue < 1e-6


def test_distances_clamp_and_errors():
    d = distances_m(np.array([[3.0, 4.0], [100.0, 0.0], [0.0, 0.0]]), (0.0, 0.0), min_distance_m=10.0)
    np.testing.assert_allclose(d, [10.0, 100.0, 10.0])
    np.testing.assert_allclose(distances_m(np.array([[103.0, 4.0]]), (100.0, 0.0), 0.0), [5.0])
    with pytest.raises(ValueError, match="num_clients"):
        client_positions_in_disc(0, 100.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="radius_m"):
        client_positions_in_disc(3, -1.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="min_distance_m"):
        distances_m(np.zeros((1, 2)), (0.0, 0.0), -1.0)


# -- FDMA and Shannon rate ----------------------------------------------------------------------


def test_shannon_rate_hand_values():
    # SNR = p g / N0 = 3  ->  B log2(4) = 2 B
    gain = 1e-12
    psd = 3 * N0 / gain
    assert shannon_rate_bps(500e3, psd, gain, noise_psd_w_hz=N0) == pytest.approx(1e6)
    # a 100 m client at 0.2 W over 10 MHz (PSD 2e-8 W/Hz): SNR = 2e-8 * 10^-9.05 / N0
    snr = 2e-8 * 10 ** (-9.05) / N0
    assert shannon_rate_bps(10e6, 2e-8, large_scale_gain(100.0), noise_psd_w_hz=N0) == pytest.approx(
        10e6 * np.log2(1 + snr)
    )
    assert shannon_rate_bps(1e6, 0.0, gain, noise_psd_w_hz=N0) == 0.0
    with pytest.raises(ValueError, match="noise_psd_w_hz"):
        shannon_rate_bps(1e6, 1.0, 1.0, noise_psd_w_hz=0.0)


def test_subchannel_bandwidth():
    assert subchannel_bandwidth_hz(10e6, 20) == 500e3
    with pytest.raises(ValueError, match="total_bandwidth_hz"):
        subchannel_bandwidth_hz(-1e6, 20)
    with pytest.raises(ValueError, match="num_subchannels"):
        subchannel_bandwidth_hz(10e6, 0)


def test_client_rates_sum_owned_subchannels():
    owner = np.array([0, 1, 1, -1, 0, 2])
    psd = np.array([1e-9, 2e-9, 3e-9, 5e-9, 4e-9, 0.0])
    gain = np.array([1e-11, 1e-12, 1e-10, 1e-9])  # client 3 owns nothing
    b = 250e3

    def rate(p, g):
        return b * np.log2(1 + p * g / N0)

    expected = [rate(1e-9, 1e-11) + rate(4e-9, 1e-11), rate(2e-9, 1e-12) + rate(3e-9, 1e-12), 0.0, 0.0]
    np.testing.assert_allclose(
        client_rates_bps(owner, psd, gain, bandwidth_hz=b, noise_psd_w_hz=N0, num_clients=4), expected
    )
    # per-(client, subchannel) gains with fading: each subchannel uses its own column
    fading = np.arange(1, 25, dtype=float).reshape(4, 6) * 1e-12
    got = client_rates_bps(owner, psd, fading, bandwidth_hz=b, noise_psd_w_hz=N0, num_clients=4)
    assert got[0] == pytest.approx(rate(1e-9, fading[0, 0]) + rate(4e-9, fading[0, 4]))
    assert got[1] == pytest.approx(rate(2e-9, fading[1, 1]) + rate(3e-9, fading[1, 2]))


@settings(max_examples=60, deadline=None)
@given(
    bandwidth_hz=st.floats(1e3, 1e8),
    psd_w_hz=st.one_of(st.just(0.0), st.floats(1e-30, 1e-3)),  # no subnormals: they carry few digits
    gain=st.floats(1e-16, 1e-6),
    factor=st.floats(1.0, 100.0),
)
def test_rate_nonnegative_and_monotone(bandwidth_hz, psd_w_hz, gain, factor):
    base = shannon_rate_bps(bandwidth_hz, psd_w_hz, gain, noise_psd_w_hz=N0)
    assert base >= 0
    # more bandwidth at the same PSD (more power) or more PSD never lowers the rate
    assert shannon_rate_bps(factor * bandwidth_hz, psd_w_hz, gain, noise_psd_w_hz=N0) >= base
    assert shannon_rate_bps(bandwidth_hz, factor * psd_w_hz, gain, noise_psd_w_hz=N0) >= base
    # the same total power spread over more bandwidth also never lowers the rate
    assert shannon_rate_bps(factor * bandwidth_hz, psd_w_hz / factor, gain, noise_psd_w_hz=N0) >= base * (
        1 - 1e-12
    )


def test_package_exports_everything_it_lists():
    for name in channel.__all__:
        assert callable(getattr(channel, name))
