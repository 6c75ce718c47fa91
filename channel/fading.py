"""Small-scale fading per subchannel (optional switch): Rayleigh amplitude, |g|^2 ~ Exp(1)."""

from __future__ import annotations

import numpy as np


def rayleigh_power_gains(rng: np.random.Generator, shape: int | tuple[int, ...]) -> np.ndarray:
    """Unit-mean exponential power gains |g|^2 (dimensionless), one per (client, subchannel).

    Multiply the large-scale gain ``h_k`` by these to get ``h_{k,i}``; the mean stays ``h_k``.
    """
    return rng.exponential(1.0, size=shape)
