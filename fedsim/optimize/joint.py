"""Exact joint subchannel counts and powers for one flat-channel link (our refinement of Algorithm 2).

On a flat channel only the counts n_k matter. For a target time T the least power client k needs on n
subchannels, P_k(T; n) (spec §5.2), is convex and decreasing in n (the perspective of a convex
function). So for fixed T the counts minimising sum_k P_k subject to P_k <= p_max_k are: each client's
smallest feasible count n_k^min, plus the spare subchannels handed out by largest marginal saving
P_k(n) - P_k(n+1) -- the top-L marginals overall, since each client's marginals decrease. T is feasible
iff sum n^min <= S and that least total power <= p_th; feasibility is monotone in T, so bisect on T.
This reaches the brute-force optimum of the link, without enumerating compositions.

Under a ``fedsim.radio`` rate model (e.g. 5G NR with an MCS ceiling) P_k(T; n) need not be convex in n, so
the same rule is a heuristic there; BCD keeps its counts only when they make the link faster.
"""

from __future__ import annotations

import numpy as np

from fedsim.optimize.power import LN2, finish_time_s

_BISECTIONS = 100
# counts, not T, are the output (the power solver then finds T exactly), so a coarse tolerance is enough
_REL_TOL = 1e-8


def _counts_at(
    time_s: float, gain, offset_s, load_bits, p_max_w, sub_hz, n0, num_sub, rate=None
) -> tuple[np.ndarray, float]:
    """Least-power counts (K,) at time_s and their total power [W] (inf when no counts are feasible)."""
    k = gain.shape[0]
    top_n = num_sub - k + 2  # counts 1..S-K+1 are reachable; one more column for the last marginal
    n = np.arange(1, top_n + 1, dtype=float)
    slack = time_s - offset_s
    if np.any((load_bits > 0) & ~(slack > 0)):
        return np.ones(k, int), np.inf
    if rate is not None:  # a fedsim.radio rate model: P_k(T; n) from its inverse (not convex in n in general)
        need = np.where(load_bits > 0, load_bits / slack, 0.0)
        p = np.asarray(rate.min_power_w(need[:, None], n[None, :], gain[:, None]), float)
    else:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            # P_k(T; n) = (N0 B / g_k) n (2^{load_k / (slack_k n B)} - 1), written with one expm1 per entry
            x = np.where(load_bits > 0, LN2 * load_bits / (slack * sub_hz), 0.0)
            p = (n0 * sub_hz / gain)[:, None] * n[None, :] * np.expm1(x[:, None] / n[None, :])
    p[load_bits <= 0] = 0.0
    ok = p <= p_max_w[:, None] * (1 + 1e-9)  # rounding slack; the power solver re-solves exactly
    if not np.all(ok[:, top_n - 2]):
        return np.ones(k, int), np.inf
    n_min = np.argmax(ok, axis=1) + 1  # smallest feasible count (1-based)
    spare = num_sub - int(n_min.sum())
    if spare < 0:
        return n_min, np.inf
    total = float(p[np.arange(k), n_min - 1].sum())
    counts = n_min.copy()
    if spare > 0:
        with np.errstate(invalid="ignore"):  # inf - inf below a client's least count; masked next
            marg = p[:, :-1] - p[:, 1:]  # saving of the (n+1)-th subchannel, (K, S-K+1)
        cols = np.arange(1, top_n)[None, :]
        marg = np.where(cols >= n_min[:, None], marg, -np.inf)
        flat = marg.ravel()
        top = np.argpartition(-flat, spare - 1)[:spare]
        total -= float(flat[top].sum())
        counts += np.bincount(top // (top_n - 1), minlength=k)
    return counts, total


def exact_counts(link, p_max_w, offset_s, load_bits, upper_s: float) -> np.ndarray | None:
    """Counts (K,) minimising the link's worst finish time, searching T in (lower bound, upper_s].

    ``upper_s`` must be a feasible time (e.g. from Algorithm 2 + power control). Returns None when the
    search finds nothing feasible below it (then keep the incumbent).
    """
    gain = np.asarray(link.gain, dtype=float)
    p_max_w, offset_s, load_bits = (np.asarray(a, dtype=float) for a in (p_max_w, offset_s, load_bits))
    k, s = gain.shape[0], link.num_subchannels
    args = (
        gain,
        offset_s,
        load_bits,
        p_max_w,
        float(link.subchannel_hz),
        float(link.noise_psd_w_hz),
        s,
        link.rate,
    )
    # nobody can beat full power on every spare subchannel
    if link.rate is not None:
        from fedsim.core.link import finish_time_rate_s

        lo = float(np.max(finish_time_rate_s(link.rate, p_max_w, s - k + 1, gain, offset_s, load_bits)))
    else:
        lo = float(
            np.max(
                finish_time_s(
                    p_max_w, s - k + 1, gain, offset_s, load_bits, link.subchannel_hz, link.noise_psd_w_hz
                )
            )
        )
    hi = float(upper_s)
    if not np.isfinite(hi):
        return None
    best, total = _counts_at(hi, *args)
    if not total <= link.p_th_w * (1 + 1e-9):  # the incumbent spends p_th up to rounding
        return None
    # usually Algorithm 2 is already optimal: then nothing slightly faster is feasible
    if not _counts_at(hi * (1 - _REL_TOL), *args)[1] <= link.p_th_w:
        return best
    for _ in range(_BISECTIONS):
        if hi - lo <= _REL_TOL * hi:
            break
        mid = 0.5 * (lo + hi)
        counts, total = _counts_at(mid, *args)
        if total <= link.p_th_w:
            hi, best = mid, counts
        else:
            lo = mid
    return best
