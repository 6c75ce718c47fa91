"""Algorithm 2: greedy subchannel assignment on one link (spec §5.1).

Each client's power during assignment is P_k = min(p_max_k, p_th / K) spread uniformly over its
subchannels. Phase 1 gives every client one subchannel, weakest (largest D_k(1)) first; phase 2 keeps
handing a free subchannel to the current straggler argmax_k D_k(n_k) until none is left. With
per-subchannel fading a client takes its best free subchannel; on a flat channel any free one will do.
Also here: the baselines' random "average" assignment and a round-robin start.
"""

from __future__ import annotations

import heapq

import numpy as np

from fedsim.core.link import finish_time_rate_s, link_rate
from fedsim.optimize.power import finish_time_s


def assignment_power_w(link, p_max_w: np.ndarray) -> np.ndarray:
    """P_k used while assigning: min(p_max_k, p_th / K), (K,) [W]."""
    p_max_w = np.asarray(p_max_w, dtype=float)
    return np.minimum(p_max_w, link.p_th_w / p_max_w.shape[0])


def _finish_table_s(link, power_w, offset_s, load_bits, n, rows=slice(None)) -> np.ndarray:
    """D_k(n) of clients ``rows`` at counts ``n`` ((rows, m) or (m,)), (rows, m) [s]."""
    gain = np.asarray(link.gain, dtype=float)
    per_client = (a[rows][:, None] for a in (power_w, gain, offset_s, load_bits))
    power, g, offset, load = per_client
    n = np.asarray(n, dtype=float)
    if n.ndim == 1:
        n = n[None, :]
    # the link's rate model, or eq. (9) (its rate is non-decreasing in n, so phase 2 still fits)
    return finish_time_rate_s(link_rate(link), power, n, gain=g, offset_s=offset, load_bits=load)


def _phase2_heap(table: np.ndarray, steps: int) -> np.ndarray:
    """Phase 2 as written: hand ``steps`` subchannels one at a time to the current straggler (a max-heap on
    D_k(n_k), ties to the lower client index); ``table[k, n - 1]`` = D_k(n). Returns the counts (K,)."""
    k = table.shape[0]
    counts = np.ones(k, dtype=int)
    heap = [(-table[c, 0], c) for c in range(k)]
    heapq.heapify(heap)
    for _ in range(steps):
        _, c = heapq.heappop(heap)
        counts[c] += 1
        heapq.heappush(heap, (-table[c, counts[c] - 1], c))
    return counts


def _phase2_counts(link, power_w, offset_s, load_bits) -> tuple[np.ndarray, np.ndarray]:
    """Phase 2 in one selection: (counts (K,), D_k(1) (K,)).

    While each D_k(n) is non-increasing in n, the heap hands out the S - K largest entries D_k(n),
    n >= 1, in the order (-D, k, n), each client's a prefix of its row. So it suffices to select those
    entries from a window of the first few counts of each client, widening the window of any client that
    takes all of it; ties at the threshold go in (k, n) order, exactly as the heap breaks them. A row that
    is not non-increasing (never seen; rounding could do it) falls back to the heap on the full table."""
    k, s = load_bits.shape[0], link.num_subchannels
    steps = s - k
    everyone = np.arange(k)
    width = np.full(k, max(1, min(steps, max(4, 2 * (steps // k + 1)))))
    block = _finish_table_s(link, power_w, offset_s, load_bits, np.arange(1, width[0] + 1))
    d1 = block[:, 0]
    if steps == 0:
        return np.ones(k, dtype=int), d1
    values, clients = block.ravel(), np.repeat(everyone, width[0])
    cols = np.arange(width[0] * k) % width[0]  # 0..width-1 for each client
    tail, monotone = block[:, -1].copy(), bool((block[:, 1:] <= block[:, :-1]).all())
    while monotone:
        if steps <= values.size:
            threshold = -np.partition(-values, steps - 1)[steps - 1]  # the steps-th largest D
            taken = values > threshold
            ties = np.flatnonzero(values == threshold)
            if ties.size > 1:  # (one tie, the usual case, is in order already)
                ties = ties[np.lexsort((cols[ties], clients[ties]))]
            ties = ties[: steps - int(taken.sum())]
            taken[ties] = True
            per_client = np.bincount(clients[taken], minlength=k)
            full = (per_client == width) & (width < steps)
            if not full.any():
                return 1 + per_client, d1
        else:
            full = width < steps
        rows = np.flatnonzero(full)
        n = width[rows, None] + np.arange(1, width[rows].max() + 1)[None, :]  # the next counts
        block = _finish_table_s(link, power_w, offset_s, load_bits, np.minimum(n, steps), rows)
        monotone = bool((block[:, 1:] <= block[:, :-1]).all() and (block[:, 0] <= tail[rows]).all())
        tail[rows] = block[:, -1]
        keep = n <= steps
        values = np.concatenate([values, block[keep]])
        clients = np.concatenate([clients, np.broadcast_to(rows[:, None], n.shape)[keep]])
        cols = np.concatenate([cols, (n - 1)[keep]])
        width[rows] = np.minimum(n[:, -1], steps)
    full_table = _finish_table_s(link, power_w, offset_s, load_bits, np.arange(1, steps + 2))
    return _phase2_heap(full_table, steps), d1


def _greedy_flat(link, power_w, offset_s, load_bits) -> np.ndarray:
    counts, d1 = _phase2_counts(link, power_w, offset_s, load_bits)
    # flat channel: which subchannels does not matter; give each client a contiguous block, weakest first
    order = np.argsort(-d1, kind="stable")
    return np.repeat(order, counts[order])


def _fading_rate_bps(link, c: int, subs: list[int], power_w: float) -> float:
    g = link.gain[c, subs]
    psd = power_w / (len(subs) * link.subchannel_hz)
    return float(np.sum(link.subchannel_hz * np.log2(1.0 + psd * g / link.noise_psd_w_hz)))


def _greedy_fading(link, power_w, offset_s, load_bits) -> np.ndarray:
    gain = np.asarray(link.gain, dtype=float)
    k, s = gain.shape
    free = np.ones(s, dtype=bool)
    owner = np.full(s, -1, dtype=int)
    mine: list[list[int]] = [[] for _ in range(k)]

    def delay(c: int) -> float:
        if load_bits[c] <= 0:
            return float(offset_s[c])
        rate = _fading_rate_bps(link, c, mine[c], power_w[c]) if mine[c] else 0.0
        return float(offset_s[c] + load_bits[c] / rate) if rate > 0 else float("inf")

    def take(c: int) -> None:
        i = int(np.argmax(np.where(free, gain[c], -np.inf)))
        free[i], owner[i] = False, c
        mine[c].append(i)

    # phase 1: weakest first, judged by D_k(1) on the client's best subchannel
    best1 = np.max(gain, axis=1)
    d1 = finish_time_s(
        power_w,
        1,
        best1,
        offset_s=offset_s,
        load_bits=load_bits,
        sub_hz=link.subchannel_hz,
        noise_psd_w_hz=link.noise_psd_w_hz,
    )
    for c in np.argsort(-d1, kind="stable"):
        take(int(c))
    current = np.array([delay(c) for c in range(k)])
    while free.any():
        c = int(np.argmax(current))
        take(c)
        current[c] = delay(c)
    return owner


def greedy_assign(link, p_max_w, offset_s, *, load_bits, power_w=None) -> np.ndarray:
    """Algorithm 2 on one link. Returns owner (S,): the client of each subchannel, every entry >= 0.

    Args:
        link: the link (its gain is (K,) flat or (K, S) with fading).
        p_max_w: (K,) power caps [W]; offset_s: (K,) start times [s]; load_bits: (K,) bits to send.
        power_w: (K,) per-client total power to assume while assigning [W]; default
            min(p_max_k, p_th/K). BCD passes the previous iteration's powers (spec §5.1 alternative).
    """
    power = assignment_power_w(link, p_max_w) if power_w is None else np.asarray(power_w, dtype=float)
    offset_s = np.asarray(offset_s, dtype=float)
    load_bits = np.asarray(load_bits, dtype=float)
    if np.asarray(link.gain).ndim == 1:
        return _greedy_flat(link, power, offset_s, load_bits)
    return _greedy_fading(link, power, offset_s, load_bits)


def random_average_assign(num_subchannels: int, num_clients: int, rng: np.random.Generator) -> np.ndarray:
    """Baselines a/b: floor(S/K) subchannels each, the remainder to random clients, positions shuffled."""
    counts = np.full(num_clients, num_subchannels // num_clients, dtype=int)
    extra = rng.choice(num_clients, size=num_subchannels % num_clients, replace=False)
    counts[extra] += 1
    owner = np.repeat(np.arange(num_clients), counts)
    return rng.permutation(owner)


def round_robin_assign(num_subchannels: int, num_clients: int) -> np.ndarray:
    """BCD start: subchannel i to client i mod K."""
    return np.arange(num_subchannels) % num_clients
