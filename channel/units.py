"""Unit conversions. Every dB / dBm / W / PSD conversion in fedsim goes through here."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def db_to_lin(value_db: ArrayLike) -> np.ndarray:
    """Decibels to a linear power ratio: ``10**(x/10)``."""
    return np.power(10.0, np.asarray(value_db, dtype=float) / 10.0)


def lin_to_db(value_lin: ArrayLike) -> np.ndarray:
    """Linear power ratio (> 0) to decibels: ``10*log10(x)``."""
    value = np.asarray(value_lin, dtype=float)
    if np.any(value <= 0):
        raise ValueError("lin_to_db: value_lin must be > 0")
    return 10.0 * np.log10(value)


def dbm_to_w(power_dbm: ArrayLike) -> np.ndarray:
    """Power in dBm to watts (0 dBm = 1 mW)."""
    return db_to_lin(power_dbm) * 1e-3


def w_to_dbm(power_w: ArrayLike) -> np.ndarray:
    """Power in watts (> 0) to dBm."""
    return lin_to_db(np.asarray(power_w, dtype=float) * 1e3)


def dbm_hz_to_w_hz(psd_dbm_hz: ArrayLike) -> np.ndarray:
    """Power spectral density in dBm/Hz to W/Hz (e.g. -174 dBm/Hz -> 3.98e-21 W/Hz)."""
    return dbm_to_w(psd_dbm_hz)


def w_hz_to_dbm_hz(psd_w_hz: ArrayLike) -> np.ndarray:
    """Power spectral density in W/Hz (> 0) to dBm/Hz."""
    return w_to_dbm(psd_w_hz)
