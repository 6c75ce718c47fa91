"""The radio and compute system of one scenario, and one random drop of it.

``SystemParams`` is the typed, validated ``[system]`` section of a scenario (defaults: spec §7).
``draw_drop`` turns it into a ``Drop``: client positions, per-link channel gains and client compute,
everything the optimiser, the delay model and the event engine need about one placement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

import channel

if TYPE_CHECKING:
    from fedsim.core.link import LinkRate


class SystemParams(BaseModel):
    """Radio and compute parameters of the system (spec §7; PROPOSED values where the paper lost them)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    num_clients: int = Field(5, ge=1, le=10_000, description="K, number of clients")
    radius_m: float = Field(200.0, gt=0, description="radius of the disc the clients are dropped in [m]")
    main_server_offset_m: float = Field(
        100.0, ge=0, description="distance of the main server from the centre [m]"
    )
    min_distance_m: float = Field(10.0, gt=0, description="clamp on client-server distance [m]")
    shadowing_sigma_db: float = Field(8.0, ge=0, description="log-normal shadowing std [dB]")
    bandwidth_main_hz: float = Field(10e6, gt=0, description="total uplink bandwidth to the main server [Hz]")
    bandwidth_fed_hz: float = Field(
        10e6, gt=0, description="total uplink bandwidth to the federated server [Hz]"
    )
    num_subchannels_main: int = Field(20, ge=1, description="M, subchannels on the main-server link")
    num_subchannels_fed: int = Field(20, ge=1, description="N, subchannels on the federated-server link")
    p_max_w: float = Field(0.2, gt=0, description="per-client transmit power cap p_max [W]")
    p_th_main_w: float = Field(0.6, gt=0, description="network-wide power threshold on the main link [W]")
    p_th_fed_w: float = Field(0.6, gt=0, description="network-wide power threshold on the federated link [W]")
    noise_psd_dbm_hz: float = Field(-174.0, description="noise PSD N0 [dBm/Hz]")
    gain_client_dbi: float = Field(0.0, description="client antenna gain G_k [dBi]")
    gain_main_dbi: float = Field(0.0, description="main-server antenna gain G_s [dBi]")
    gain_fed_dbi: float = Field(0.0, description="federated-server antenna gain G_f [dBi]")
    client_cycles_min: float = Field(
        1e9, gt=0, description="lower end of client GPU capability f_k [cycles/s]"
    )
    client_cycles_max: float = Field(
        2e9, gt=0, description="upper end of client GPU capability f_k [cycles/s]"
    )
    client_flops_per_cycle: float = Field(80.0, gt=0, description="client FLOPs per GPU cycle, 1/kappa_c")
    server_cycles: float = Field(1e11, gt=0, description="main-server GPU capability f_s [cycles/s]")
    server_flops_per_cycle: float = Field(160.0, gt=0, description="server FLOPs per GPU cycle, 1/kappa_s")
    fading: bool = Field(False, description="per-subchannel Rayleigh fading |g|^2 ~ Exp(1) on top of h_k")

    @model_validator(mode="after")
    def _check_ranges(self) -> SystemParams:
        if self.client_cycles_max < self.client_cycles_min:
            raise ValueError("client_cycles_max must be >= client_cycles_min")
        for link, m in (("main", self.num_subchannels_main), ("fed", self.num_subchannels_fed)):
            if m < self.num_clients:
                raise ValueError(
                    f"{self.num_clients} clients but {m} subchannels: every client needs at least one "
                    f"(num_subchannels_{link} must be >= num_clients)"
                )
        # what a drop derives from these must be a usable finite number (validation = run)
        derived = {
            "bandwidth_main_hz / num_subchannels_main": self.bandwidth_main_hz / self.num_subchannels_main,
            "bandwidth_fed_hz / num_subchannels_fed": self.bandwidth_fed_hz / self.num_subchannels_fed,
            "noise_psd_dbm_hz in W/Hz": _quiet(channel.dbm_hz_to_w_hz, self.noise_psd_dbm_hz),
            "client_cycles_max * client_flops_per_cycle": self.client_cycles_max * self.client_flops_per_cycle,
            "server_cycles * server_flops_per_cycle": self.server_cycles * self.server_flops_per_cycle,
        }
        for what, value in derived.items():
            if not (0 < value < float("inf")):
                raise ValueError(f"{what} is {value}, not a finite number > 0")
        # the strongest link a drop can draw (closest distance, antenna gains, a 10-sigma shadowing draw)
        # must have a finite linear gain
        antennas = (self.gain_client_dbi, self.gain_main_dbi, self.gain_fed_dbi)
        loss_db = float(channel.pathloss_db(self.min_distance_m))
        best_db = max(antennas[1:]) + antennas[0] - loss_db + 10 * self.shadowing_sigma_db
        if max(abs(g) for g in antennas) > 300 or not best_db < 3000:
            raise ValueError(
                "antenna gains (|G| <= 300 dBi each), min_distance_m and shadowing_sigma_db give a link gain "
                f"of up to {best_db:.4g} dB, beyond floating point; use physical values"
            )
        return self


def _quiet(fn, *args) -> float:
    """``fn(*args)`` as a float, with numpy's overflow/underflow warnings off (the caller checks the value)."""
    with np.errstate(over="ignore", under="ignore"):
        return float(fn(*args))


@dataclass(frozen=True)
class Link:
    """One FDMA uplink (clients -> a server) in one drop.

    Attributes:
        num_subchannels: S (M for the main link, N for the federated link).
        subchannel_hz: bandwidth of one subchannel [Hz].
        noise_psd_w_hz: noise PSD N0 [W/Hz].
        p_th_w: network-wide power threshold on this link [W].
        gain: end-to-end power gain G_k*G_x*h (linear): (K,) flat, or (K, S) with fading.
        rate: the link's rate model (``fedsim.core.link.LinkRate``); None = the paper's Shannon rate, eq. (9).
    """

    num_subchannels: int
    subchannel_hz: float
    noise_psd_w_hz: float
    p_th_w: float
    gain: np.ndarray
    rate: LinkRate | None = None

    def client_gain(self, k: int) -> np.ndarray:
        """Client k's gain on every subchannel, (S,)."""
        return np.broadcast_to(self.gain[k], (self.num_subchannels,)) if self.gain.ndim == 1 else self.gain[k]


@dataclass(frozen=True)
class Drop:
    """One random placement of the system: everything physical that the decisions act upon.

    Attributes:
        positions_m: (K, 2) client positions [m]; the federated server is at the origin.
        main_xy_m: (x, y) of the main server [m].
        distance_main_m, distance_fed_m: (K,) client-server distances [m].
        shadow_main_db, shadow_fed_db: (K,) shadowing draws [dB].
        main, fed: the two uplinks.
        p_max_w: (K,) per-client power caps [W].
        client_flops_per_s: (K,) effective client compute f_k/kappa_c [FLOP/s].
        server_flops_per_s: effective main-server compute f_s/kappa_s [FLOP/s].
        client_cycles_per_s: (K,) client GPU clock f_k [cycles/s] (for the energy model), or None.
    """

    positions_m: np.ndarray
    main_xy_m: tuple[float, float]
    distance_main_m: np.ndarray
    distance_fed_m: np.ndarray
    shadow_main_db: np.ndarray
    shadow_fed_db: np.ndarray
    main: Link
    fed: Link
    p_max_w: np.ndarray
    client_flops_per_s: np.ndarray
    server_flops_per_s: float
    client_cycles_per_s: np.ndarray | None = None

    @property
    def num_clients(self) -> int:
        return int(self.p_max_w.shape[0])


def draw_drop(params: SystemParams, rng: np.random.Generator) -> Drop:
    """Draw one placement: positions, shadowing (independent per client-server link) and client compute.

    The order of draws is fixed (positions, main shadowing, fed shadowing, client compute, then fading
    main, fading fed) so one seed gives one drop whatever the switches downstream.
    """
    k = params.num_clients
    positions = channel.client_positions_in_disc(k, params.radius_m, rng)
    main_xy = (params.main_server_offset_m, 0.0)
    d_main = channel.distances_m(positions, main_xy, params.min_distance_m)
    d_fed = channel.distances_m(positions, (0.0, 0.0), params.min_distance_m)
    x_main = channel.shadowing_db(rng, k, params.shadowing_sigma_db)
    x_fed = channel.shadowing_db(rng, k, params.shadowing_sigma_db)
    cycles = rng.uniform(params.client_cycles_min, params.client_cycles_max, k)
    g_client = channel.db_to_lin(params.gain_client_dbi)
    gain_main = g_client * channel.db_to_lin(params.gain_main_dbi) * channel.large_scale_gain(d_main, x_main)
    gain_fed = g_client * channel.db_to_lin(params.gain_fed_dbi) * channel.large_scale_gain(d_fed, x_fed)
    if params.fading:
        gain_main = gain_main[:, None] * channel.rayleigh_power_gains(rng, (k, params.num_subchannels_main))
        gain_fed = gain_fed[:, None] * channel.rayleigh_power_gains(rng, (k, params.num_subchannels_fed))
    noise = float(channel.dbm_hz_to_w_hz(params.noise_psd_dbm_hz))
    return Drop(
        positions_m=positions,
        main_xy_m=main_xy,
        distance_main_m=d_main,
        distance_fed_m=d_fed,
        shadow_main_db=x_main,
        shadow_fed_db=x_fed,
        main=Link(
            params.num_subchannels_main,
            channel.subchannel_bandwidth_hz(params.bandwidth_main_hz, params.num_subchannels_main),
            noise,
            params.p_th_main_w,
            gain_main,
        ),
        fed=Link(
            params.num_subchannels_fed,
            channel.subchannel_bandwidth_hz(params.bandwidth_fed_hz, params.num_subchannels_fed),
            noise,
            params.p_th_fed_w,
            gain_fed,
        ),
        p_max_w=np.full(k, params.p_max_w),
        client_flops_per_s=cycles * params.client_flops_per_cycle,
        server_flops_per_s=params.server_cycles * params.server_flops_per_cycle,
        client_cycles_per_s=cycles,
    )
