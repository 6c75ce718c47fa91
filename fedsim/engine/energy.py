"""Client energy: transmit energy p*t and compute energy with the effective-capacitance model.

A CMOS chip running at f cycles/s spends ``k * f^2`` joules per cycle (k: effective switched
capacitance), so ``E = k * f^2 * cycles = k * f^2 * flops / flops_per_cycle``.
"""

from __future__ import annotations

import numpy as np


def transmit_energy_j(power_w: np.ndarray, duration_s: np.ndarray) -> np.ndarray:
    """Energy of a transmission, p * t [J]; 0 when nothing is sent (0 * inf counts as 0)."""
    power_w, duration_s = np.broadcast_arrays(np.asarray(power_w, float), np.asarray(duration_s, float))
    out = np.zeros(power_w.shape)
    np.multiply(power_w, duration_s, out=out, where=(power_w > 0) & (duration_s > 0))
    return out


def compute_energy_j(
    flops: np.ndarray, flops_per_s: np.ndarray, flops_per_cycle: np.ndarray | float, capacitance: float
) -> np.ndarray:
    """Energy of a computation of ``flops`` on a chip of ``flops_per_s`` [J], elementwise.

    Args:
        flops: work [FLOP].
        flops_per_s: effective throughput f * flops_per_cycle [FLOP/s].
        flops_per_cycle: FLOPs per cycle (1/kappa).
        capacitance: effective switched capacitance k [J s^2].
    """
    freq_hz = np.asarray(flops_per_s, float) / flops_per_cycle
    cycles = np.asarray(flops, float) / flops_per_cycle
    return capacitance * freq_hz**2 * cycles
