"""Client placement of the "nr" radio: Sionna's 38.901 hexagonal cell (bounds, sectors, reproducibility) and
fedsim's disc (unchanged bit for bit)."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_tolerance import NUMPY_GOLDEN_RTOL

sionna = pytest.importorskip("sionna", reason="the nr radio needs the optional extra fedsim[nr]")

import torch  # noqa: E402

from fedsim.core.system import SystemParams  # noqa: E402
from fedsim.errors import InputError  # noqa: E402
from fedsim.radio import RadioSection, draw_radio_drop  # noqa: E402
from fedsim.radio.nr_placement import hex_cell, hexgrid_positions  # noqa: E402

# 38.901 Table 7.2-1 / 7.8-1 (Sionna's defaults): ISD [m], BS height [m], minimum BS-UT distance [m]
CELLS = {"uma": (500.0, 25.0, 35.0), "umi": (200.0, 10.0, 10.0), "rma": (5000.0, 35.0, 35.0)}
# yaw of each sector's boresight: the three sectors of a 38.901 site point at 60, 180 and 300 degrees
SECTOR_YAW_DEG = np.array([60.0, 180.0, 300.0])


@pytest.mark.parametrize("scenario", ["uma", "umi", "rma"])
def test_hexgrid_clients_lie_in_the_cell_and_sector_within_the_38901_bounds(scenario):
    isd, h_bs, min_3d = CELLS[scenario]
    cell = hex_cell(scenario, None, 1.5, ut_height_max_m=7.5)
    assert (cell.isd_m, cell.min_distance_3d_m) == (isd, min_3d)
    drops = [hexgrid_positions(30, scenario, cell, bs_height_m=h_bs, seed=seed) for seed in range(4)]
    xy, h = np.concatenate([d[0] for d in drops]), np.concatenate([d[1] for d in drops])
    # inside the hexagon: its six edges face 30 + 60 j degrees at the apothem isd / 2
    normals = np.deg2rad(30.0 + 60.0 * np.arange(6))
    proj = xy @ np.stack([np.cos(normals), np.sin(normals)])
    assert proj.max() <= isd / 2 * (1 + 1e-12)
    assert proj.max() > 0.8 * isd / 2  # and they reach towards the edge
    # heights in the range, 3-D distance to the site at least the minimum
    assert h.min() >= 1.5 and h.max() <= 7.5 and np.ptp(h) > 1.0
    d3 = np.sqrt((xy**2).sum(axis=1) + (h_bs - h) ** 2)
    assert d3.min() >= min_3d * (1 - 1e-12)
    # client k sits in sector k mod 3: within 60 degrees of that sector's boresight
    yaw = np.rad2deg(np.arctan2(xy[:, 1], xy[:, 0])) % 360
    off = (yaw - SECTOR_YAW_DEG[np.arange(xy.shape[0]) % 3] + 180) % 360 - 180
    assert np.abs(off).max() <= 60 + 1e-9


def test_hexgrid_drop_is_reproducible_and_leaves_torch_alone():
    system = SystemParams(num_clients=7)
    radio = RadioSection(model="nr", placement="hexgrid", scenario="umi", ut_height_max_m=4.5)
    state = torch.get_rng_state()
    a = draw_radio_drop(system, radio, np.random.default_rng(3))
    b = draw_radio_drop(system, radio, np.random.default_rng(3))
    c = draw_radio_drop(system, radio, np.random.default_rng(4))
    assert torch.equal(torch.get_rng_state(), state)
    np.testing.assert_array_equal(a.positions_m, b.positions_m)
    np.testing.assert_array_equal(a.main.gain, b.main.gain)
    np.testing.assert_array_equal(a.fed.gain, b.fed.gain)
    assert not np.allclose(a.positions_m, c.positions_m)
    # the federated server is the cell's site: its 2-D distances are the clients' distances from the origin
    np.testing.assert_allclose(a.distance_fed_m, np.hypot(*a.positions_m.T), rtol=1e-12)
    assert np.hypot(*a.positions_m.T).max() <= 200.0 / np.sqrt(3)  # within the UMi cell's circumradius


def test_disc_placement_is_unchanged():
    # golden numbers of the "nr" disc drop from before the placement switch existed (seed 11)
    drop = draw_radio_drop(
        SystemParams(), RadioSection(model="nr", indoor_probability=0.5), np.random.default_rng(11)
    )
    np.testing.assert_allclose(
        drop.positions_m,
        [
            [64.54089204029071, -31.261499730683497],
            [127.70997839405074, 60.508478052217555],
            [106.34240728860662, 112.92132976988186],
            [32.10594901957095, -10.805941533734725],
            [-55.44685285696947, -53.316881860774764],
        ],
        rtol=NUMPY_GOLDEN_RTOL,
        atol=0,
    )
    np.testing.assert_allclose(
        drop.main.gain,
        [
            3.5834850546015129e-12,
            1.1156351615306850e-08,
            2.1990772718191977e-10,
            3.8591387417100764e-12,
            2.8610580224560427e-14,
        ],
        rtol=NUMPY_GOLDEN_RTOL,
        atol=0,
    )
    np.testing.assert_allclose(
        drop.fed.gain,
        [
            8.4684731930469199e-13,
            1.0194719784738758e-11,
            3.1704805966582859e-11,
            5.4456643253596353e-11,
            4.2300992784369773e-11,
        ],
        rtol=NUMPY_GOLDEN_RTOL,
        atol=0,
    )


def test_placement_fields_are_validated():
    with pytest.raises(ValueError, match="placement"):
        RadioSection(model="nr", isd_m=300.0)
    with pytest.raises(ValueError, match="ut_height_max_m"):
        RadioSection(model="nr", placement="hexgrid", ut_height_m=3.0, ut_height_max_m=2.0)
    with pytest.raises(ValueError, match="placement"):
        RadioSection(model="nr", placement="hex")
    with pytest.raises(InputError, match="radio.isd_m"):
        draw_radio_drop(
            SystemParams(),
            RadioSection(model="nr", placement="hexgrid", isd_m=40.0),
            np.random.default_rng(0),
        )
