"""FDMA uplink: a band split into equal subchannels, each owned by at most one client.

Transmit power is a power spectral density (PSD) ``p`` [W/Hz] on each subchannel, so the SNR is
``p * G_tx * G_rx * h / N0`` with no bandwidth term and the power spent on subchannel ``i`` is
``p_i * B_i`` [W].
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def subchannel_bandwidth_hz(total_bandwidth_hz: float, num_subchannels: int) -> float:
    """Bandwidth of one of ``num_subchannels`` equal subchannels of ``total_bandwidth_hz`` [Hz]."""
    if not total_bandwidth_hz > 0:
        raise ValueError(f"total_bandwidth_hz must be > 0, got {total_bandwidth_hz}")
    if num_subchannels < 1:
        raise ValueError(f"num_subchannels must be >= 1, got {num_subchannels}")
    return float(total_bandwidth_hz) / int(num_subchannels)


def shannon_rate_bps(
    bandwidth_hz: ArrayLike, psd_w_hz: ArrayLike, gain_lin: ArrayLike, *, noise_psd_w_hz: float
) -> np.ndarray:
    """Shannon rate ``B * log2(1 + p * g / N0)`` [bit/s], broadcast over the inputs.

    Args:
        bandwidth_hz: subchannel bandwidth(s) [Hz], >= 0.
        psd_w_hz: transmit PSD [W/Hz], >= 0.
        gain_lin: end-to-end power gain ``G_tx * G_rx * h`` (linear), >= 0.
        noise_psd_w_hz: noise PSD ``N0`` [W/Hz], > 0.
    """
    if not noise_psd_w_hz > 0:
        raise ValueError(f"noise_psd_w_hz must be > 0, got {noise_psd_w_hz}")
    bandwidth = np.asarray(bandwidth_hz, dtype=float)
    snr = np.asarray(psd_w_hz, dtype=float) * np.asarray(gain_lin, dtype=float) / noise_psd_w_hz
    # log1p keeps the rate exact at very low SNR, where 1 + snr rounds to 1 (or near it)
    return bandwidth * np.log1p(snr) / np.log(2.0)


def client_rates_bps(
    owner: np.ndarray,
    psd_w_hz: np.ndarray,
    gain_lin: np.ndarray,
    *,
    bandwidth_hz: float,
    noise_psd_w_hz: float,
    num_clients: int,
) -> np.ndarray:
    """Each client's total rate over the subchannels it owns.

    Args:
        owner: (S,) int, the client index owning each subchannel, or -1 if unused.
        psd_w_hz: (S,) transmit PSD on each subchannel [W/Hz].
        gain_lin: (K,) per-client gain, or (K, S) per-(client, subchannel) gain with fading.
        bandwidth_hz: bandwidth of one subchannel [Hz].
        noise_psd_w_hz: noise PSD [W/Hz].
        num_clients: K.

    Returns:
        (K,) rates [bit/s]; 0 for a client that owns no subchannel.
    """
    owner = np.asarray(owner, dtype=int)
    used = owner >= 0
    gain = np.asarray(gain_lin, dtype=float)
    sub = np.flatnonzero(used)
    g = gain[owner[sub]] if gain.ndim == 1 else gain[owner[sub], sub]
    per_sub = shannon_rate_bps(
        bandwidth_hz, np.asarray(psd_w_hz, dtype=float)[sub], g, noise_psd_w_hz=noise_psd_w_hz
    )
    return np.bincount(owner[sub], weights=per_sub, minlength=num_clients).astype(float)
