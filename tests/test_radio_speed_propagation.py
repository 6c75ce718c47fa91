"""The "nr" radio reuses Sionna's 38.901 scenario object across drops (issue 24): every drop's large-scale
channel and Sionna's generator states afterwards are exactly those of a freshly built object, also when
shapes, scenarios and options change between drops, and a later drop leaves earlier results untouched."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sionna", reason="the nr radio needs the optional extra fedsim[nr]")

from fedsim.radio import nr_propagation  # noqa: E402

FIELDS = ("loss_db", "pathloss_db", "shadow_db", "los", "los_probability", "distance_2d_m", "distance_3d_m")


def _drops():
    """A sequence of drops that changes scenario, client count, LoS mode and shadowing between drops."""
    rng = np.random.default_rng(5)
    for scenario, k, los, shadow in [
        ("uma", 5, "random", True),
        ("uma", 5, "random", True),
        ("uma", 12, "nlos", True),
        ("umi", 5, "random", False),
        ("uma", 1, "los", True),
        ("rma", 5, "random", True),
        ("rma", 3, "random", True),
        ("uma", 5, "random", True),
    ]:
        kwargs = dict(
            servers_xy_m=[(300.0, 0.0), (0.0, 0.0)],
            bs_height_m=25.0 if scenario != "umi" else 10.0,
            ut_height_m=rng.uniform(1.5, 10.0, k),
            indoor=rng.random(k) < 0.6,
            los=los,
            shadow_fading=shadow,
            seed=int(rng.integers(2**63 - 1)),
        )
        yield scenario, rng.uniform(-400, 400, (k, 2)), kwargs


def _state():
    from sionna.phy import config

    return config.torch_rng().get_state().numpy().tobytes(), repr(
        config._np_rng and config._np_rng.bit_generator.state
    )


def _run(fresh: bool):
    out = []
    for scenario, positions, kwargs in _drops():
        if fresh:
            nr_propagation._scenario.cache_clear()
        ls = nr_propagation.large_scale(scenario, 3.5e9, positions, **kwargs)
        out.append((ls, {f: getattr(ls, f).copy() for f in FIELDS}, _state()))
    return out


def test_a_reused_scenario_object_gives_every_drop_exactly_what_a_fresh_one_gives():
    fresh, reused = _run(fresh=True), _run(fresh=False)
    assert nr_propagation._scenario.cache_info().hits > 0
    for (_, a, state_a), (_, b, state_b) in zip(fresh, reused, strict=True):
        for f in FIELDS:
            assert a[f].dtype == b[f].dtype and a[f].tobytes() == b[f].tobytes(), f
        assert state_a == state_b
    for ls, copied, _ in reused:  # later drops did not write into arrays handed out earlier
        for f in FIELDS:
            assert getattr(ls, f).tobytes() == copied[f].tobytes(), f
