"""3GPP TR 38.901 large-scale propagation (UMa, UMi, RMa) of one drop, from Sionna.

Per (server, client) link: LoS state (drawn from the 38.901 LoS probability, or forced), basic path loss,
O2I penetration loss for indoor clients and shadow fading, all from ``sionna.phy.channel.tr38901`` (its
scenario classes and ``LSPGenerator``; no channel impulse responses are generated). Sionna's generators are
seeded from the caller's ``np.random.Generator``, so one fedsim seed gives one drop.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from fedsim.radio.sionna_env import sionna_call

_SCENARIO_CLASSES = {"uma": "UMaScenario", "umi": "UMiScenario", "rma": "RMaScenario"}


@dataclass(frozen=True)
class LargeScale:
    """Large-scale channel of every (server, client) link of one drop, arrays (NB, K).

    Attributes:
        loss_db: total large-scale loss: basic path loss + O2I loss - shadow-fading gain [dB].
        pathloss_db: basic path loss + O2I penetration loss [dB] (Sionna's ``LSP.pathloss``).
        shadow_db: shadow-fading loss [dB] (positive = weaker), so loss_db = pathloss_db + shadow_db.
        los: line-of-sight state; los_probability: the 38.901 LoS probability of the link.
        distance_2d_m, distance_3d_m: link distances [m].
        indoor: (K,) client indoors.
    """

    loss_db: np.ndarray
    pathloss_db: np.ndarray
    shadow_db: np.ndarray
    los: np.ndarray
    los_probability: np.ndarray
    distance_2d_m: np.ndarray
    distance_3d_m: np.ndarray
    indoor: np.ndarray


def push_out(
    positions_m: np.ndarray, servers_xy_m: list[tuple[float, float]], min_distance_m: float
) -> np.ndarray:
    """Move clients closer than ``min_distance_m`` (2-D) to a server radially out to that distance, (K, 2)."""
    out = np.array(positions_m, dtype=float)
    for sx, sy in servers_xy_m:
        delta = out - np.array([sx, sy])
        dist = np.hypot(delta[:, 0], delta[:, 1])
        near = dist < min_distance_m
        if np.any(near):
            # a client exactly on the server moves along +x
            unit = np.where(
                dist[near, None] > 0, delta[near] / np.maximum(dist[near, None], 1e-300), [1.0, 0.0]
            )
            out[near] = np.array([sx, sy]) + unit * min_distance_m
    return out


@functools.lru_cache(maxsize=8)
def _scenario(scenario: str, carrier_frequency_hz: float, o2i_model: str, shadow_fading: bool):
    """Sionna's 38.901 scenario object of one configuration, built once per process and reused by every drop
    after ``reset_topology()`` (Sionna's way to start a new drop). Its constructor only reads the 38.901
    parameter tables: it draws nothing, so reusing it leaves every drop's draws as they were. Call inside
    ``sionna_call``."""
    from sionna.phy.channel import tr38901

    array = dict(
        num_rows_per_panel=1,
        num_cols_per_panel=1,
        polarization="single",
        polarization_type="V",
        antenna_pattern="omni",
        carrier_frequency=carrier_frequency_hz,
    )
    kwargs = dict(
        carrier_frequency=carrier_frequency_hz,
        ut_array=tr38901.PanelArray(**array),
        bs_array=tr38901.PanelArray(**array),
        direction="uplink",
        enable_shadow_fading=shadow_fading,
        precision="double",
    )
    if scenario != "rma":
        kwargs["o2i_model"] = o2i_model
    return getattr(tr38901, _SCENARIO_CLASSES[scenario])(**kwargs)


def large_scale(
    scenario: str,
    carrier_frequency_hz: float,
    positions_m: np.ndarray,
    *,
    servers_xy_m: list[tuple[float, float]],
    bs_height_m: float,
    ut_height_m,
    indoor: np.ndarray,
    o2i_model: str = "low",
    los: str = "random",
    shadow_fading: bool = True,
    seed: int = 0,
) -> LargeScale:
    """The 38.901 large-scale channel of K clients at ``positions_m`` (K, 2) to the servers (NB of them).

    Args:
        scenario: "uma", "umi" or "rma"; carrier_frequency_hz: f_c [Hz].
        bs_height_m, ut_height_m: antenna heights [m] (clients: one, or (K,)); indoor: (K,) bool, indoors.
        o2i_model: "low" or "high" building-loss model; los: "random", "los" or "nlos" (outdoor links).
        shadow_fading: draw shadow fading (else 0 dB); seed: seeds Sionna's generators for this drop.
    """
    positions_m = np.asarray(positions_m, float)
    k, nb = positions_m.shape[0], len(servers_xy_m)
    indoor = np.asarray(indoor, bool)
    with sionna_call(seed):
        import torch
        from sionna.phy.channel import tr38901

        sc = _scenario(scenario, carrier_frequency_hz, o2i_model, shadow_fading)
        sc.reset_topology()  # a fresh drop: every topology-dependent state (LoS, indoor distances) is redrawn
        heights = np.broadcast_to(np.asarray(ut_height_m, float), (k,))[:, None]
        ut = np.concatenate([positions_m, heights], axis=1)[None]
        bs = np.array([[x, y, bs_height_m] for x, y in servers_xy_m], dtype=float)[None]
        los_arg = {"random": "random", "los": True, "nlos": False}[los]
        topology = dict(
            ut_loc=torch.tensor(ut),
            bs_loc=torch.tensor(bs),
            ut_orientations=torch.zeros(1, k, 3, dtype=torch.float64),
            bs_orientations=torch.zeros(1, nb, 3, dtype=torch.float64),
            ut_velocities=torch.zeros(1, k, 3, dtype=torch.float64),
            in_state=torch.tensor(indoor[None]),
            los=los_arg,
        )
        if scenario == "rma":
            topology["in_car"] = torch.zeros(1, k, dtype=torch.bool)  # no car penetration loss
        sc.set_topology(**topology)
        gen = tr38901.LSPGenerator(sc)
        gen.topology_updated_callback()
        lsp = gen()
        pathloss = lsp.pathloss[0].double().numpy()
        sf = lsp.sf[0].double().numpy() if shadow_fading else np.ones_like(pathloss)
        shadow = -10.0 * np.log10(sf)
        return LargeScale(
            loss_db=pathloss + shadow,
            pathloss_db=pathloss,
            shadow_db=shadow,
            los=sc.los[0].numpy().astype(bool),
            los_probability=sc.los_probability[0].double().numpy(),
            distance_2d_m=sc.distance_2d[0].double().numpy(),
            distance_3d_m=sc.distance_3d[0].double().numpy(),
            indoor=indoor,
        )
