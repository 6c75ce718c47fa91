"""Large-scale channel: path loss 128.1 + 37.6 log10(d/km) dB with log-normal shadowing."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from channel.units import db_to_lin


def pathloss_db(distance_m: ArrayLike) -> np.ndarray:
    """Path loss ``128.1 + 37.6*log10(d / 1 km)`` [dB] for distances ``d`` [m] > 0."""
    distance = np.asarray(distance_m, dtype=float)
    if np.any(distance <= 0):
        raise ValueError("pathloss_db: distance_m must be > 0")
    return 128.1 + 37.6 * np.log10(distance / 1000.0)


def shadowing_db(rng: np.random.Generator, shape: int | tuple[int, ...], sigma_db: float = 8.0) -> np.ndarray:
    """Log-normal shadowing: i.i.d. zero-mean Gaussian samples [dB] with std ``sigma_db`` >= 0."""
    if sigma_db < 0:
        raise ValueError(f"sigma_db must be >= 0, got {sigma_db}")
    return rng.normal(0.0, abs(sigma_db), size=shape)  # abs: numpy refuses -0.0 (which TOML and >= 0 allow)


def large_scale_gain(distance_m: ArrayLike, shadow_db: ArrayLike = 0.0) -> np.ndarray:
    """Average channel power gain ``h = 10**(-(PL(d) + X)/10)`` (linear, dimensionless)."""
    return db_to_lin(-(pathloss_db(distance_m) + np.asarray(shadow_db, dtype=float)))
