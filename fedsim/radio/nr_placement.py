"""Client placement of the "nr" radio: fedsim's disc, or one cell of Sionna's 38.901 hexagonal topology.

``hexgrid`` uses Sionna's ``gen_hexgrid_topology`` (``sionna.sys``; 38.901 Tables 7.2-1/7.2-3 and 7.8-1): a
hexagonal grid of three-sector sites at the inter-site distance (ISD), UTs dropped uniformly per sector
between the scenario's minimum BS-UT distance (3-D) and the cell edge, at heights uniform in a range. fedsim
keeps the central site's cell: the federated server is that site (at the origin), and client k is UT k // 3
of sector k mod 3, so the clients fill the three sectors in turn, as 38.901 drops equal numbers per sector.
Sionna's torch generator is seeded from the drop's ``np.random.Generator`` (one seed draw), so one fedsim
seed gives one placement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedsim.errors import InputError
from fedsim.radio.sionna_env import sionna_call

SECTORS = 3


@dataclass(frozen=True)
class HexCell:
    """Bounds of the central cell of a 38.901 hexagonal grid (what Sionna drops the clients within).

    Attributes:
        isd_m: inter-site distance [m] (the hexagon's apothem is isd/2, its circumradius isd/sqrt(3)).
        min_distance_3d_m: minimum 3-D distance between the site and a client [m].
        ut_height_min_m, ut_height_max_m: range of the client heights [m].
    """

    isd_m: float
    min_distance_3d_m: float
    ut_height_min_m: float
    ut_height_max_m: float


def hex_cell(
    scenario: str, isd_m: float | None, ut_height_min_m: float, *, ut_height_max_m: float
) -> HexCell:
    """The cell's bounds: the ISD and minimum BS-UT distance default to Sionna's 38.901 values of ``scenario``."""
    with sionna_call():
        from sionna.phy.channel.utils import set_3gpp_scenario_parameters

        min_dist, isd = set_3gpp_scenario_parameters(scenario, precision="double")[:2]
        return HexCell(
            isd_m=float(isd) if isd_m is None else float(isd_m),
            min_distance_3d_m=float(min_dist),
            ut_height_min_m=float(ut_height_min_m),
            ut_height_max_m=float(ut_height_max_m),
        )


def hexgrid_positions(
    num_clients: int, scenario: str, cell: HexCell, *, bs_height_m: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2) client positions [m] (the site at the origin) and (K,) heights [m], from one Sionna drop."""
    per_sector = math.ceil(num_clients / SECTORS)
    with sionna_call(seed):
        from sionna.sys import gen_hexgrid_topology

        try:
            ut_loc = gen_hexgrid_topology(
                batch_size=1,
                num_rings=1,  # Sionna's smallest grid; fedsim keeps cell 0, the site at the origin
                num_ut_per_sector=per_sector,
                scenario=scenario,
                min_bs_ut_dist=cell.min_distance_3d_m,
                isd=cell.isd_m,
                bs_height=bs_height_m,
                min_ut_height=cell.ut_height_min_m,
                max_ut_height=cell.ut_height_max_m,
                indoor_probability=0.0,  # indoor states are fedsim's own draw ([radio] indoor_probability)
                min_ut_velocity=0.0,
                max_ut_velocity=0.0,
                precision="double",
            )[0]
        except ValueError as err:
            raise InputError(
                f"radio.isd_m: no {scenario} cell of ISD {cell.isd_m:g} m holds clients beyond the minimum BS-UT "
                f"distance of {cell.min_distance_3d_m:g} m (Sionna: {err}); use a larger ISD"
            ) from None
        # UTs are ordered (cell, sector, UT): cell 0's come first
        central = ut_loc[0, : SECTORS * per_sector].double().numpy().reshape(SECTORS, per_sector, 3)
    k = np.arange(num_clients)
    chosen = central[k % SECTORS, k // SECTORS]
    return chosen[:, :2].copy(), chosen[:, 2].copy()
