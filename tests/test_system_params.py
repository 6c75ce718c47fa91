"""SystemParams validation and draw_drop: reproducible, and consistent with the channel formulas."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from channel import dbm_hz_to_w_hz, large_scale_gain
from fedsim.core.system import SystemParams, draw_drop


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("bandwidth_main_hz", -1e6),
        ("bandwidth_fed_hz", 0.0),
        ("num_clients", 0),
        ("num_subchannels_main", 0),
        ("p_max_w", -0.1),
        ("radius_m", 0.0),
        ("shadowing_sigma_db", -2.0),
    ],
)
def test_bad_params_name_the_field(field, value):
    with pytest.raises(ValidationError, match=field):
        SystemParams(**{field: value})


def test_unknown_key_and_inconsistent_range_rejected():
    with pytest.raises(ValidationError, match="bandwith_main_hz"):
        SystemParams(bandwith_main_hz=1e6)
    with pytest.raises(ValidationError, match="client_cycles_max"):
        SystemParams(client_cycles_min=2e9, client_cycles_max=1e9)


def test_defaults_are_spec_section_7():
    p = SystemParams()
    assert (p.num_clients, p.num_subchannels_main, p.num_subchannels_fed) == (5, 20, 20)
    assert (p.bandwidth_main_hz, p.p_max_w, p.noise_psd_dbm_hz) == (10e6, 0.2, -174.0)


def test_drop_is_reproducible_and_consistent():
    params = SystemParams(num_clients=7)
    a = draw_drop(params, np.random.default_rng(42))
    b = draw_drop(params, np.random.default_rng(42))
    np.testing.assert_array_equal(a.positions_m, b.positions_m)
    np.testing.assert_array_equal(a.main.gain, b.main.gain)
    assert a.num_clients == 7 and a.main.gain.shape == (7,) and a.fed.gain.shape == (7,)
    # distances to the right servers (fed at the origin, main at the offset), clamped
    r_fed = np.maximum(np.hypot(*a.positions_m.T), params.min_distance_m)
    r_main = np.maximum(np.hypot(a.positions_m[:, 0] - 100.0, a.positions_m[:, 1]), params.min_distance_m)
    np.testing.assert_allclose(a.distance_fed_m, r_fed)
    np.testing.assert_allclose(a.distance_main_m, r_main)
    # gains are the path loss and shadowing of each link (0 dBi antennas), independent per link
    np.testing.assert_allclose(a.main.gain, large_scale_gain(a.distance_main_m, a.shadow_main_db))
    np.testing.assert_allclose(a.fed.gain, large_scale_gain(a.distance_fed_m, a.shadow_fed_db))
    assert not np.allclose(a.shadow_main_db, a.shadow_fed_db)
    assert a.main.subchannel_hz == 10e6 / 20 and a.main.noise_psd_w_hz == pytest.approx(
        dbm_hz_to_w_hz(-174.0)
    )
    assert np.all((a.client_flops_per_s >= 80e9) & (a.client_flops_per_s <= 160e9))
    assert a.server_flops_per_s == 1e11 * 160


def test_fading_switch_adds_per_subchannel_gains_without_moving_the_drop():
    flat = draw_drop(SystemParams(), np.random.default_rng(5))
    faded = draw_drop(SystemParams(fading=True), np.random.default_rng(5))
    assert faded.main.gain.shape == (5, 20) and faded.fed.gain.shape == (5, 20)
    np.testing.assert_array_equal(flat.positions_m, faded.positions_m)
    np.testing.assert_array_equal(flat.client_flops_per_s, faded.client_flops_per_s)
    assert faded.main.client_gain(2).shape == (20,)
    np.testing.assert_allclose(flat.main.client_gain(2), np.full(20, flat.main.gain[2]))
