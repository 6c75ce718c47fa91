"""The decisions of one optimisation: subchannels, transmit PSDs, cut layers and LoRA ranks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Allocation:
    """Decision variables of problem (18), generalised to per-client cuts and per-layer ranks (spec §10).

    Attributes:
        owner_main: (M,) int, client that owns each main-link subchannel (x^s), -1 if unused.
        owner_fed: (N,) int, client that owns each federated-link subchannel (x^f), -1 if unused.
        psd_main_w_hz: (M,) transmit PSD on each main-link subchannel [W/Hz] (p^s).
        psd_fed_w_hz: (N,) transmit PSD on each federated-link subchannel [W/Hz] (p^f).
        cuts: (K,) int in 1..J, number of blocks client k runs (c_k = sum_j mu_j).
        ranks: (K, J) int >= 1, LoRA rank of block j as seen by client k's data.
    """

    owner_main: np.ndarray
    owner_fed: np.ndarray
    psd_main_w_hz: np.ndarray
    psd_fed_w_hz: np.ndarray
    cuts: np.ndarray
    ranks: np.ndarray

    @property
    def num_clients(self) -> int:
        return int(self.cuts.shape[0])


def client_power_w(
    owner: np.ndarray, psd_w_hz: np.ndarray, subchannel_hz: float, *, num_clients: int
) -> np.ndarray:
    """Transmit power of each client on one link, sum of p_i B_i over its subchannels, (K,) [W]."""
    owner = np.asarray(owner, dtype=int)
    used = owner >= 0
    power = np.asarray(psd_w_hz, dtype=float)[used] * subchannel_hz
    return np.bincount(owner[used], weights=power, minlength=num_clients).astype(float)


def uniform_ranks(num_clients: int, num_layers: int, rank: int) -> np.ndarray:
    """(K, J) ranks with the same rank on every block for every client."""
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    return np.full((num_clients, num_layers), int(rank), dtype=int)


def cut_layer_ranks(cuts: np.ndarray, num_layers: int, rank_cut: int, *, rank_others: int) -> np.ndarray:
    """SplitFT ranks (spec §10c): ``rank_cut`` on each client's cut blocks c_k and c_k+1, else ``rank_others``."""
    cuts = np.asarray(cuts, dtype=int)
    ranks = np.full((cuts.shape[0], num_layers), int(rank_others), dtype=int)
    for k, c in enumerate(cuts):
        ranks[k, c - 1 : min(c + 1, num_layers)] = rank_cut
    return ranks
