"""Wireless channel models: pure numpy functions, units in the names, rng passed in.

Modules: ``units`` (dB/dBm/W/PSD conversions), ``geometry`` (client drops in a disc),
``pathloss`` (128.1 + 37.6 log10(d/km) dB, log-normal shadowing), ``fading`` (small-scale
Rayleigh power gains) and ``fdma`` (equal subchannels, Shannon rates).
"""

from channel.fading import rayleigh_power_gains
from channel.fdma import client_rates_bps, shannon_rate_bps, subchannel_bandwidth_hz
from channel.geometry import client_positions_in_disc, distances_m
from channel.pathloss import large_scale_gain, pathloss_db, shadowing_db
from channel.units import db_to_lin, dbm_hz_to_w_hz, dbm_to_w, lin_to_db, w_hz_to_dbm_hz, w_to_dbm

__all__ = [
    "client_positions_in_disc",
    "client_rates_bps",
    "db_to_lin",
    "dbm_hz_to_w_hz",
    "dbm_to_w",
    "distances_m",
    "large_scale_gain",
    "lin_to_db",
    "pathloss_db",
    "rayleigh_power_gains",
    "shadowing_db",
    "shannon_rate_bps",
    "subchannel_bandwidth_hz",
    "w_hz_to_dbm_hz",
    "w_to_dbm",
]
