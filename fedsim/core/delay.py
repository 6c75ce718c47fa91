"""Analytical delay model, spec eqs. (8)-(17), generalised to per-client cuts and per-layer ranks (§10).

This is the reference that the discrete-event engine is tested against. All functions are
vectorised over clients; times are in seconds, sizes in bits, work in FLOPs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from channel import client_rates_bps
from fedsim.core.allocation import Allocation
from fedsim.core.system import Drop, Link
from fedsim.core.workload import Workload


@dataclass(frozen=True, kw_only=True)  # 16 fields: built by name, never by position
class Delays:
    """Every term of the delay model for one drop and one allocation.

    Per-client arrays are (K,) [s]; a client with no subchannel has an infinite upload time.
    """

    t_client_fwd_s: np.ndarray  # t_k^F, eq. (8)
    t_upload_act_s: np.ndarray  # t_k^A, eq. (10)
    t_server_fwd_s: float  # t_s^F, eq. (11)
    t_server_bwd_s: float  # t_s^B, eq. (12)
    t_client_bwd_s: np.ndarray  # t_k^B, eq. (13)
    t_upload_lora_s: np.ndarray  # t_k^U, eq. (15)
    rate_main_bps: np.ndarray  # R_k^s, eq. (9)
    rate_fed_bps: np.ndarray  # R_k^f, eq. (14)
    T1_s: float
    T2_s: float
    T3_s: float
    iteration_s: float  # t, eq. (16)
    total_s: float  # T, eq. (17)
    rounds: float  # E(r)
    local_iterations: int  # I
    upload_every_local_iteration: bool  # reading D2 of eq. (17)

    @property
    def feasible(self) -> bool:
        return bool(np.isfinite(self.total_s))


def _client_mask(workload: Workload, cuts: np.ndarray) -> np.ndarray:
    """(K, J) bool, True where block j (1-based) runs on client k, i.e. j <= c_k."""
    cuts = np.asarray(cuts, dtype=int)
    if (cuts < 1).any() or (cuts > workload.num_layers).any():
        raise ValueError(f"cuts must lie in 1..{workload.num_layers}, got {cuts.tolist()}")
    return np.arange(1, workload.num_layers + 1)[None, :] <= cuts[:, None]


def _checked_ranks(ranks: np.ndarray) -> np.ndarray:
    """The ranks as an int array, after checking every rank is >= 1 (rank 0 would silently drop LoRA)."""
    ranks = np.asarray(ranks)
    if (ranks < 1).any():
        raise ValueError(f"ranks must be >= 1, got min {ranks.min()}")
    return ranks


def _flops(workload: Workload, on: np.ndarray, ranked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward FLOPs per sample of the blocks ``on`` (K, J), ``ranked`` = on * ranks."""
    fwd = on @ workload.fwd_flops + ranked @ workload.lora_fwd_flops_per_rank
    bwd = on @ workload.bwd_flops + ranked @ workload.lora_bwd_flops_per_rank
    return fwd, bwd


def client_flops(workload: Workload, cuts: np.ndarray, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Client-side forward and backward FLOPs per sample, (K,) each: Phi_c + Delta-Phi_c."""
    mask, ranks = _client_mask(workload, cuts), _checked_ranks(ranks)
    return _flops(workload, mask, mask * ranks)


def server_flops(workload: Workload, cuts: np.ndarray, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Server-side forward and backward FLOPs per sample of each client's data, (K,) each (head included)."""
    server, ranks = ~_client_mask(workload, cuts), _checked_ranks(ranks)
    fwd, bwd = _flops(workload, server, server * ranks)
    return fwd + workload.head_fwd_flops, bwd + workload.head_bwd_flops


def activation_bits(workload: Workload, cuts: np.ndarray) -> np.ndarray:
    """Gamma_k: bits per sample of the activation client k uploads (output of its last block), (K,)."""
    _client_mask(workload, cuts)
    return workload.act_bits[np.asarray(cuts, dtype=int) - 1]


def lora_bits(workload: Workload, cuts: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Lambda_k: bits of client k's LoRA parameters (uploaded once per global round), (K,)."""
    return (_client_mask(workload, cuts) * _checked_ranks(ranks)) @ workload.lora_bits_per_rank


@dataclass(frozen=True)
class SampleSizes:
    """What ``client_flops``, ``server_flops``, ``activation_bits`` and ``lora_bits`` give for one allocation,
    (K,) each, from one check of its cuts and ranks (the delay model and the engine need all four): per sample,
    or per batch of b samples from ``per_batch`` (the engine's events).

    Attributes:
        client_fwd_flops, client_bwd_flops: client FP / BP work [FLOP].
        server_fwd_flops, server_bwd_flops: server FP / BP work on client k's samples [FLOP].
        act_bits: activation upload (and gradient download) size [bit].
        lora_bits: LoRA upload size (once per round, or per iteration in reading D2) [bit]: per client, the
            same per sample and per batch.
    """

    client_fwd_flops: np.ndarray
    client_bwd_flops: np.ndarray
    server_fwd_flops: np.ndarray
    server_bwd_flops: np.ndarray
    act_bits: np.ndarray
    lora_bits: np.ndarray

    def per_batch(self, batch_size: int) -> SampleSizes:
        """The sizes of one local iteration's events on a batch of ``batch_size`` samples."""
        return SampleSizes(
            batch_size * self.client_fwd_flops,
            batch_size * self.client_bwd_flops,
            batch_size * self.server_fwd_flops,
            batch_size * self.server_bwd_flops,
            batch_size * self.act_bits,
            self.lora_bits.astype(float),
        )


def sample_sizes(workload: Workload, cuts: np.ndarray, ranks: np.ndarray) -> SampleSizes:
    """Per-sample FLOPs and bits of every client (see ``SampleSizes``), the same numbers as the four functions.
    The last one is kept by the contents of ``cuts`` and ``ranks`` (the delay model and then the engine ask
    for the same allocation); its arrays are read-only."""
    cuts, ranks = np.asarray(cuts), np.asarray(ranks)
    key = (cuts.dtype.str, cuts.shape, cuts.tobytes(), ranks.dtype.str, ranks.shape, ranks.tobytes())
    if _LAST_SIZES and _LAST_SIZES[0] is workload and _LAST_SIZES[1] == key:
        return _LAST_SIZES[2]
    sizes = _sample_sizes(workload, cuts, ranks)
    for field in dataclasses.fields(sizes):
        getattr(sizes, field.name).setflags(write=False)
    _LAST_SIZES[:] = [workload, key, sizes]
    return sizes


_LAST_SIZES: list = []  # [workload, key of cuts and ranks, SampleSizes] of the last sample_sizes


def _sample_sizes(workload: Workload, cuts: np.ndarray, ranks: np.ndarray) -> SampleSizes:
    mask, ranks = _client_mask(workload, cuts), _checked_ranks(ranks)
    server = ~mask
    ranked = mask * ranks
    c_fwd, c_bwd = _flops(workload, mask, ranked)
    s_fwd, s_bwd = _flops(workload, server, server * ranks)
    return SampleSizes(
        c_fwd,
        c_bwd,
        s_fwd + workload.head_fwd_flops,
        s_bwd + workload.head_bwd_flops,
        workload.act_bits[np.asarray(cuts, dtype=int) - 1],
        ranked @ workload.lora_bits_per_rank,
    )


# Shannon rates by (link, owner, PSDs, gains) contents, the last few: one allocation's rates are asked for
# again and again (the optimiser's next iteration, its result's delays, the engine); the link is held so that
# its id is not reused while its entry lives
_SHANNON_RATES: dict[tuple, tuple[Link, np.ndarray]] = {}


def link_rates_bps(
    link: Link, owner: np.ndarray, psd_w_hz: np.ndarray, *, num_clients: int, gain=None
) -> np.ndarray:
    """Each client's rate on one link, eqs. (9) and (14), (K,) [bit/s]: the one place that asks whether a link
    has a rate model (``fedsim.radio``: each client's total power and count through it) or not (the paper's
    Shannon rate per subchannel, fading gains (K, S) allowed). ``gain`` replaces the link's own gains (the
    engine's block-fading draws)."""
    gain = link.gain if gain is None else gain
    if link.rate is not None:
        from fedsim.core.link import link_client_rates_bps

        return link_client_rates_bps(link, owner, psd_w_hz, num_clients=num_clients, gain=gain)
    owner, psd_w_hz, gain = np.asarray(owner), np.asarray(psd_w_hz), np.asarray(gain)
    key = (id(link), num_clients, owner.dtype.str, owner.tobytes(), psd_w_hz.dtype.str, psd_w_hz.tobytes(),
           gain.dtype.str, gain.shape, gain.tobytes())  # fmt: skip
    known = _SHANNON_RATES.get(key)
    if known is not None and known[0] is link:
        return known[1].copy()
    rates = client_rates_bps(
        owner,
        psd_w_hz,
        gain,
        bandwidth_hz=link.subchannel_hz,
        noise_psd_w_hz=link.noise_psd_w_hz,
        num_clients=num_clients,
    )
    if len(_SHANNON_RATES) >= 64:
        _SHANNON_RATES.clear()
    _SHANNON_RATES[key] = (link, rates.copy())
    return rates


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num/den with x/0 = inf for x > 0 and 0/0 = 0 (nothing to send takes no time)."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    if num.shape != den.shape:
        num, den = np.broadcast_arrays(num, den)
    out = np.where(num > 0, np.inf, 0.0)
    np.divide(num, den, out=out, where=den > 0)
    return out


def total_delay_s(iteration_s, T3_s, rounds, *, local_iterations: int, upload_every_local_iteration: bool):
    """Eq. (17): T = E(r) (I t + T3) (reading D1, LoRA uploaded once per global round) or
    T = E(r) I (t + T3) (reading D2, uploaded every local iteration). Broadcasts over arrays [s]."""
    if upload_every_local_iteration:
        return rounds * (local_iterations * (iteration_s + T3_s))
    return rounds * (local_iterations * iteration_s + T3_s)


def delays(
    drop: Drop,
    workload: Workload,
    alloc: Allocation,
    *,
    batch_size: int,
    local_iterations: int,
    rounds: float,
    upload_every_local_iteration: bool = False,
) -> Delays:
    """Evaluate eqs. (8)-(17) for one drop and one allocation.

    Args:
        drop: the placement (gains, powers, compute).
        workload: per-layer FLOPs and bits.
        alloc: subchannels, PSDs, cuts (K,) and ranks (K, J).
        batch_size: b, samples per client per local iteration.
        local_iterations: I, local iterations per global round.
        rounds: E(r), global rounds to reach the target.
        upload_every_local_iteration: reading D2 of eq. (17) (LoRA upload folded into every iteration);
            the default D1 uploads once per global round.
    """
    if batch_size < 1 or local_iterations < 1:
        raise ValueError("batch_size and local_iterations must be >= 1")
    if not rounds > 0:
        raise ValueError(f"rounds must be > 0, got {rounds}")
    k = drop.num_clients
    sizes = sample_sizes(workload, alloc.cuts, alloc.ranks)
    c_fwd, c_bwd, s_fwd, s_bwd = (
        sizes.client_fwd_flops,
        sizes.client_bwd_flops,
        sizes.server_fwd_flops,
        sizes.server_bwd_flops,
    )
    rate_main = link_rates_bps(drop.main, alloc.owner_main, alloc.psd_main_w_hz, num_clients=k)
    rate_fed = link_rates_bps(drop.fed, alloc.owner_fed, alloc.psd_fed_w_hz, num_clients=k)
    t_f = batch_size * c_fwd / drop.client_flops_per_s
    t_b = batch_size * c_bwd / drop.client_flops_per_s
    t_a = _safe_div(batch_size * sizes.act_bits, rate_main)
    t_u = _safe_div(sizes.lora_bits, rate_fed)
    t_sf = float(batch_size * s_fwd.sum() / drop.server_flops_per_s)
    t_sb = float(batch_size * s_bwd.sum() / drop.server_flops_per_s)
    T1, T2, T3 = float((t_f + t_a).max()), float(t_b.max()), float(t_u.max())
    t = T1 + t_sf + t_sb + T2
    total = total_delay_s(
        t,
        T3,
        rounds,
        local_iterations=local_iterations,
        upload_every_local_iteration=upload_every_local_iteration,
    )
    return Delays(
        t_client_fwd_s=t_f,
        t_upload_act_s=t_a,
        t_server_fwd_s=t_sf,
        t_server_bwd_s=t_sb,
        t_client_bwd_s=t_b,
        t_upload_lora_s=t_u,
        rate_main_bps=rate_main,
        rate_fed_bps=rate_fed,
        T1_s=T1,
        T2_s=T2,
        T3_s=T3,
        iteration_s=t,
        total_s=float(total),
        rounds=float(rounds),
        local_iterations=int(local_iterations),
        upload_every_local_iteration=bool(upload_every_local_iteration),
    )
