"""The "nr" radio model: 3GPP TR 38.901 propagation and a 5G NR PUSCH link abstraction (Sionna).

Placement is fedsim's (clients uniform in the ``[system]`` disc around the federated server at the origin)
or one cell of Sionna's 38.901 hexagonal topology around it (``nr_placement``); the main server is at
``main_server_offset_m``; both servers are gNBs at ``bs_height_m``. Per drop the 38.901
large-scale channel of every link comes from ``nr_propagation``; each uplink's ``Link.rate`` is an
``NRLinkRate`` (``nr_link``) built from the ``[radio]`` numerology, MCS table and BLER target. The noise PSD
is ``[system] noise_psd_dbm_hz`` plus the receiver noise figure.

Draw order from the drop's generator: positions (disc), or one seed for Sionna's hexgrid drop, then indoor
states, client compute, and one seed for Sionna's generators (LoS states, shadow fading), so one fedsim seed
gives one drop.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

import channel
from fedsim.core.system import Drop, Link, SystemParams
from fedsim.errors import InputError
from fedsim.radio.nr_downlink import NRDownlink
from fedsim.radio.nr_link import (
    SYMBOLS_PER_SLOT,
    LinkAdaptation,
    NRLinkRate,
    goodput_table,
    mcs_tables,
    usable_prb_counts,
)
from fedsim.radio.nr_placement import hex_cell, hexgrid_positions
from fedsim.radio.nr_propagation import large_scale, push_out
from fedsim.radio.sionna_env import require_sionna, sionna_call

if TYPE_CHECKING:
    from fedsim.radio.config import RadioSection


def prbs_per_subchannel(radio: RadioSection, subchannel_hz: float, where: str) -> int:
    """PRBs in one subchannel: the ``[radio]`` field, else as many as fit in ``subchannel_hz``."""
    prb_hz = 12 * radio.subcarrier_spacing_hz
    prbs = radio.prbs_per_subchannel or int(math.floor(subchannel_hz / prb_hz + 1e-9))
    if prbs < 1 or prbs * prb_hz > subchannel_hz * (1 + 1e-9):
        raise InputError(
            f"{where}: a subchannel of {subchannel_hz / 1e3:g} kHz cannot hold {max(prbs, 1)} PRB(s) of "
            f"{prb_hz / 1e3:g} kHz (12 x radio.subcarrier_spacing_hz); use more bandwidth, fewer subchannels or "
            "a smaller subcarrier spacing"
        )
    return prbs


def nr_link_rate(
    radio: RadioSection, num_subchannels: int, subchannel_hz: float, *, noise_psd_w_hz: float, where: str
):
    """The ``NRLinkRate`` of one uplink of ``num_subchannels`` subchannels of ``subchannel_hz``."""
    prbs = prbs_per_subchannel(radio, subchannel_hz, where)
    re_per_prb = 12 * (SYMBOLS_PER_SLOT - radio.dmrs_symbols) - radio.overhead_re_per_prb
    counts = usable_prb_counts(num_subchannels, prbs)
    table = goodput_table(counts, re_per_prb, radio.mcs_table, bler_target=float(radio.bler_target))
    rate = NRLinkRate(
        table,
        prb_counts=counts,
        prbs_per_subchannel=prbs,
        prb_hz=12 * radio.subcarrier_spacing_hz,
        slot_s=1e-3 * 15000 / radio.subcarrier_spacing_hz,
        noise_psd_w_hz=noise_psd_w_hz,
        harq=radio.harq,
    )
    if radio.power_control == "open_loop":
        rate.open_loop = OpenLoopPower(radio, prbs)
    if radio.link_adaptation == "outer" or radio.sinr_bias_db != 0:
        rate.adaptation = LinkAdaptation(
            outer=radio.link_adaptation == "outer",
            sinr_bias_db=float(radio.sinr_bias_db),
            delta_up_db=float(radio.olla_delta_up_db),
            bler_target=float(radio.bler_target),
            tables=mcs_tables(counts, re_per_prb, radio.mcs_table),
        )
    return rate


class OpenLoopPower:
    """38.213 open-loop PUSCH power control: P = min(p_max, P0 + alpha PL + 10 log10(2^mu M_RB)) [dBm], with
    PL the client's coupling loss (Sionna's ``open_loop_uplink_power_control``).

    The link's total budget p_th holds too: where the clients' open-loop powers add up to more than p_th, the
    gNB lowers the cell's nominal P0 (common to every client; 38.213's p0-NominalPUSCH) to the highest value
    whose powers fit, ``budget_scale``; clients already at p_max keep it until the lower P0 reaches them."""

    def __init__(self, radio: RadioSection, prbs_per_sub: int):
        self.p0_dbm, self.alpha, self.prbs_per_sub = radio.p0_dbm, radio.alpha, prbs_per_sub
        self.scs_factor = radio.subcarrier_spacing_hz // 15000  # 2^mu

    def power_w(self, gain: np.ndarray, n_sub: np.ndarray, p_max_w: np.ndarray, *, p_th_w: float = np.inf):
        """(K,) transmit power [W] of clients with gains ``gain`` on ``n_sub`` subchannels (0 for none), their
        sum within the link's budget ``p_th_w`` [W]."""
        with sionna_call():
            import torch
            from sionna.sys import open_loop_uplink_power_control

            n_sub = np.asarray(n_sub, float)
            subcarriers = torch.tensor(np.maximum(n_sub, 1) * self.prbs_per_sub * 12 * self.scs_factor)
            uncapped = open_loop_uplink_power_control(  # p_max applied below, after the budget's P0 shift
                torch.tensor(1.0 / np.asarray(gain, float)),
                subcarriers,
                alpha=self.alpha,
                p0_dbm=self.p0_dbm,
                ut_max_power_dbm=torch.tensor(np.inf),
            )
            uncapped = np.where(n_sub > 0, uncapped.double().numpy(), 0.0)
        p_max_w = np.broadcast_to(np.asarray(p_max_w, float), uncapped.shape)
        return np.minimum(p_max_w, budget_scale(uncapped, p_max_w, p_th_w) * uncapped)


def budget_scale(uncapped_w: np.ndarray, p_max_w: np.ndarray, p_th_w: float) -> float:
    """The largest s in (0, 1] with sum_k min(p_max_k, s u_k) <= p_th: the linear P0 shift that fits the
    open-loop powers u [W] (p_max not yet applied) into the budget ``p_th_w`` [W] (exact, piecewise linear)."""
    u, cap = np.asarray(uncapped_w, float), np.asarray(p_max_w, float)
    if np.minimum(cap, u).sum() <= p_th_w:
        return 1.0
    on = u > 0
    u, cap = u[on], cap[on]
    knee = cap / u  # client k reaches p_max at s = knee_k
    order = np.argsort(knee)
    knee, u, cap = knee[order], u[order], cap[order]
    capped = np.concatenate([[0.0], np.cumsum(cap)])  # power of the j clients capped below knee_j
    free = np.concatenate([np.cumsum(u[::-1])[::-1], [0.0]])  # open-loop power of the others
    bounds = np.concatenate([[0.0], knee, [np.inf]])
    for j in range(u.size + 1):  # on [bounds_j, bounds_j+1] the total is capped_j + s free_j
        if free[j] > 0:
            s = (p_th_w - capped[j]) / free[j]
            if bounds[j] <= s <= bounds[j + 1]:
                return float(min(s, 1.0))
    return 0.0  # only when p_th is below what p_max-capped clients need at s -> 0 (p_th <= 0)


class NRRadio:
    """3GPP radio: 38.901 UMa/UMi/RMa propagation and 5G NR PUSCH link abstraction via Sionna."""

    name = "nr"
    description = (
        "3GPP TR 38.901 propagation (UMa/UMi/RMa: LoS state, shadow fading, O2I) and a 5G NR PUSCH link "
        "abstraction (PRB subchannels, MCS table, link adaptation to a target BLER, TB errors and HARQ) via Sionna"
    )

    def draw_drop(self, system: SystemParams, radio: RadioSection, rng: np.random.Generator) -> Drop:
        require_sionna()
        k = system.num_clients
        main_xy = (float(system.main_server_offset_m), 0.0)
        servers = [main_xy, (0.0, 0.0)]
        if radio.placement == "hexgrid":
            low = radio.ut_height_m
            cell = hex_cell(radio.scenario, radio.isd_m, low, ut_height_max_m=radio.ut_height_max_m or low)
            seed = int(rng.integers(2**63 - 1))
            positions, heights = hexgrid_positions(
                k, radio.scenario, cell, bs_height_m=radio.bs_height(), seed=seed
            )
        else:
            positions, heights = channel.client_positions_in_disc(k, system.radius_m, rng), radio.ut_height_m
        positions = push_out(positions, servers, radio.min_distance_m)
        indoor = rng.random(k) < radio.indoor_probability
        cycles = rng.uniform(system.client_cycles_min, system.client_cycles_max, k)
        ls = large_scale(
            radio.scenario,
            radio.carrier_frequency_hz,
            positions,
            servers_xy_m=servers,
            bs_height_m=radio.bs_height(),
            ut_height_m=heights,
            indoor=indoor,
            o2i_model=radio.o2i_model,
            los=radio.los,
            shadow_fading=radio.shadow_fading,
            seed=int(rng.integers(2**63 - 1)),
        )
        g_client = channel.db_to_lin(system.gain_client_dbi)
        gain_main = g_client * channel.db_to_lin(system.gain_main_dbi - ls.loss_db[0])
        gain_fed = g_client * channel.db_to_lin(system.gain_fed_dbi - ls.loss_db[1])
        noise = float(channel.dbm_hz_to_w_hz(system.noise_psd_dbm_hz + radio.noise_figure_db))

        def link(s: int, bandwidth_hz: float, p_th_w: float, gain: np.ndarray, name: str) -> Link:
            sub_hz = channel.subchannel_bandwidth_hz(bandwidth_hz, s)
            rate = nr_link_rate(
                radio,
                s,
                sub_hz,
                noise_psd_w_hz=noise,
                where=f"system.bandwidth_{name}_hz / num_subchannels_{name}",
            )
            return Link(s, sub_hz, noise, p_th_w, gain, rate=rate)

        main = link(
            system.num_subchannels_main, system.bandwidth_main_hz, system.p_th_main_w, gain_main, "main"
        )
        if radio.downlink == "pdsch":  # the engine's downlink from the main server: PDSCH (nr_downlink)
            ue_noise = float(channel.dbm_hz_to_w_hz(system.noise_psd_dbm_hz + radio.ue_noise_figure_db))
            main.rate.downlink = NRDownlink(radio, ue_noise)

        return Drop(
            positions_m=positions,
            main_xy_m=main_xy,
            distance_main_m=ls.distance_2d_m[0],
            distance_fed_m=ls.distance_2d_m[1],
            shadow_main_db=ls.shadow_db[0],
            shadow_fed_db=ls.shadow_db[1],
            main=main,
            fed=link(system.num_subchannels_fed, system.bandwidth_fed_hz, system.p_th_fed_w, gain_fed, "fed"),
            p_max_w=np.full(k, system.p_max_w),
            client_flops_per_s=cycles * system.client_flops_per_cycle,
            server_flops_per_s=system.server_cycles * system.server_flops_per_cycle,
            client_cycles_per_s=cycles,
        )
