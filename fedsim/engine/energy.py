"""Client energy: transmit energy p*t and compute energy with the effective-capacitance model.

A CMOS chip running at f cycles/s spends ``k * f^2`` joules per cycle (k: effective switched
capacitance), so ``E = k * f^2 * cycles = k * f^2 * flops / flops_per_cycle``.
"""

from __future__ import annotations

import numpy as np


def transmit_energy_j(power_w: float, duration_s: float) -> float:
    """Energy of one transmission, p * t [J]; 0 when it takes no time (the engine charges it per event)."""
    return power_w * duration_s if duration_s > 0 else 0.0


def compute_energy_j(
    flops: np.ndarray, flops_per_s: np.ndarray, flops_per_cycle: np.ndarray | float, *, capacitance: float
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
