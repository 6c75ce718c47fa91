"""Shared builders for the engine tests: random drops, workloads and allocations."""

from __future__ import annotations

import dataclasses

import numpy as np

from fedsim.core.allocation import Allocation, uniform_ranks
from fedsim.core.system import Drop, SystemParams, draw_drop
from fedsim.core.workload import Workload

RANKS = (1, 2, 4, 6, 8)


def random_workload(rng: np.random.Generator, num_layers: int = 3) -> Workload:
    """Heterogeneous per-layer costs around GPT-2 small's per-sample numbers (spec §8.3)."""
    j = num_layers
    fwd = rng.uniform(2e9, 9e9, j)
    lora = rng.uniform(1e6, 4e6, j)
    return Workload(
        "random",
        512,
        fwd,
        2 * fwd,
        lora,
        2 * lora,
        rng.uniform(5e6, 2e7, j),
        rng.uniform(5e4, 1.5e5, j),
        rng.uniform(1e10, 5e10),
        rng.uniform(2e10, 1e11),
    )


def random_drop(rng: np.random.Generator, k: int | None = None, fading: bool | None = None) -> Drop:
    k = int(rng.integers(1, 7)) if k is None else k
    params = SystemParams(
        num_clients=k,
        num_subchannels_main=int(rng.integers(k, 13)),
        num_subchannels_fed=int(rng.integers(k, 13)),
        fading=bool(rng.random() < 0.3) if fading is None else fading,
        bandwidth_main_hz=float(rng.uniform(2e6, 5e7)),
        bandwidth_fed_hz=float(rng.uniform(2e6, 5e7)),
    )
    return draw_drop(params, rng)


def _owners(rng: np.random.Generator, k: int, s: int) -> np.ndarray:
    """Every client owns >= 1 subchannel; the rest are random owners or unused (-1)."""
    owner = rng.integers(-1, k, s)
    owner[rng.permutation(s)[:k]] = np.arange(k)
    return owner


def random_allocation(
    rng: np.random.Generator, drop: Drop, num_layers: int, cut: int | None = None, rank: int | None = None
) -> Allocation:
    """Random subchannels and PSDs within the caps; uniform ``cut``/``rank`` or random per client/layer."""
    k = drop.num_clients
    om, of = _owners(rng, k, drop.main.num_subchannels), _owners(rng, k, drop.fed.num_subchannels)
    pm = (
        rng.uniform(0.01, 1.0, om.size)
        * drop.p_max_w[0]
        / (drop.main.num_subchannels * drop.main.subchannel_hz)
    )
    pf = (
        rng.uniform(0.01, 1.0, of.size)
        * drop.p_max_w[0]
        / (drop.fed.num_subchannels * drop.fed.subchannel_hz)
    )
    cuts = np.full(k, cut) if cut is not None else rng.integers(1, num_layers + 1, k)
    ranks = uniform_ranks(k, num_layers, rank) if rank is not None else rng.choice(RANKS, (k, num_layers))
    return Allocation(om, of, pm, pf, cuts.astype(int), ranks)


def equal_drop(
    k: int,
    gain: float = 1e-10,
    flops_per_s: float = 1e11,
    server_flops_per_s: float = 1.6e13,
    subchannels: int | None = None,
) -> Drop:
    """K identical clients: same gains and compute (for closed-form queueing answers)."""
    base = draw_drop(
        SystemParams(
            num_clients=k, num_subchannels_main=subchannels or k, num_subchannels_fed=subchannels or k
        ),
        np.random.default_rng(0),
    )
    return dataclasses.replace(
        base,
        main=dataclasses.replace(base.main, gain=np.full(k, gain)),
        fed=dataclasses.replace(base.fed, gain=np.full(k, gain)),
        client_flops_per_s=np.full(k, flops_per_s),
        client_cycles_per_s=np.full(k, flops_per_s / 80.0),
        server_flops_per_s=server_flops_per_s,
    )


def round_robin(drop: Drop, num_layers: int, cut: int = 1, rank: int = 4, power_w: float = 0.1) -> Allocation:
    """Subchannel i to client i mod K, each client's power spread evenly over its subchannels."""
    k, m, n = drop.num_clients, drop.main.num_subchannels, drop.fed.num_subchannels
    om, of = np.arange(m) % k, np.arange(n) % k
    pm = power_w / (np.bincount(om, minlength=k)[om] * drop.main.subchannel_hz)
    pf = power_w / (np.bincount(of, minlength=k)[of] * drop.fed.subchannel_hz)
    return Allocation(om, of, pm, pf, np.full(k, cut), uniform_ranks(k, num_layers, rank))
