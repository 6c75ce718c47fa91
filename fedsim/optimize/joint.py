"""Exact joint subchannel counts and powers for one flat-channel link (our refinement of Algorithm 2).

On a flat channel only the counts n_k matter. For a target time T the least power client k needs on n
subchannels, P_k(T; n) (spec §5.2), is convex and decreasing in n (the perspective of a convex
function). So for fixed T the counts minimising sum_k P_k subject to P_k <= p_max_k are: each client's
smallest feasible count n_k^min, plus the spare subchannels handed out by largest marginal saving
P_k(n) - P_k(n+1) -- the top-L marginals overall, since each client's marginals decrease. T is feasible
iff sum n^min <= S and that least total power <= p_th; feasibility is monotone in T, so bisect on T.
This reaches the brute-force optimum of the link, without enumerating compositions.
"""

from __future__ import annotations

import numpy as np

from fedsim.optimize.power import finish_time_s, min_power_w

_BISECTIONS = 100
# counts, not T, are the output (the power solver then finds T exactly), so a coarse tolerance is enough
_REL_TOL = 1e-10


def _counts_at(time_s: float, gain, offset_s, load_bits, p_max_w, sub_hz, n0, num_sub) -> tuple[np.ndarray, float]:
    """Least-power counts (K,) at time_s and their total power [W] (inf when no counts are feasible)."""
    k = gain.shape[0]
    n = np.arange(1, num_sub + 2, dtype=float)  # 1..S+1, the last column only for marginals
    p = min_power_w(time_s, n[None, :], gain[:, None], offset_s[:, None], load_bits[:, None], sub_hz, n0)
    ok = p <= p_max_w[:, None] * (1 + 1e-9)  # rounding slack; the power solver re-solves exactly
    if not np.all(ok[:, num_sub - 1]):
        return np.zeros(k, int), np.inf
    n_min = np.argmax(ok, axis=1) + 1  # smallest feasible count (1-based)
    spare = num_sub - int(n_min.sum())
    if spare < 0:
        return n_min, np.inf
    base = p[np.arange(k), n_min - 1]
    total = float(base.sum())
    counts = n_min.copy()
    if spare > 0:
        marg = p[:, :-1] - p[:, 1:]  # saving of the (n+1)-th subchannel, (K, S)
        cols = np.arange(1, num_sub + 1)[None, :]
        marg = np.where(cols >= n_min[:, None], marg, -np.inf)
        flat = marg.ravel()
        top = np.argpartition(-flat, spare - 1)[:spare]
        total -= float(flat[top].sum())
        counts += np.bincount(top // num_sub, minlength=k)
    return counts, total


def exact_counts(link, p_max_w, offset_s, load_bits, upper_s: float) -> np.ndarray | None:
    """Counts (K,) minimising the link's worst finish time, searching T in (lower bound, upper_s].

    ``upper_s`` must be a feasible time (e.g. from Algorithm 2 + power control). Returns None when the
    search finds nothing feasible below it (then keep the incumbent).
    """
    gain = np.asarray(link.gain, dtype=float)
    p_max_w, offset_s, load_bits = (np.asarray(a, dtype=float) for a in (p_max_w, offset_s, load_bits))
    k, s = gain.shape[0], link.num_subchannels
    args = (gain, offset_s, load_bits, p_max_w, float(link.subchannel_hz), float(link.noise_psd_w_hz), s)
    # nobody can beat full power on every spare subchannel
    lo = float(np.max(finish_time_s(p_max_w, s - k + 1, gain, offset_s, load_bits, link.subchannel_hz,
                                    link.noise_psd_w_hz)))
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
