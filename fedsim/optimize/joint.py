"""Exact joint subchannel counts and powers for one flat-channel link (our refinement of Algorithm 2).

On a flat channel only the counts n_k matter. For a target time T the least power client k needs on n
subchannels, P_k(T; n) (spec §5.2), is convex and decreasing in n (the perspective of a convex
function). So for fixed T the counts minimising sum_k P_k subject to P_k <= p_max_k are: each client's
smallest feasible count n_k^min, plus the spare subchannels handed out by largest marginal saving
P_k(n) - P_k(n+1) -- the top-L marginals overall, since each client's marginals decrease. T is feasible
iff sum n^min <= S and that least total power <= p_th; feasibility is monotone in T.

The least feasible T* is found by a Dinkelbach-type descent rather than bisection: from a feasible T, take
the least-power counts at T (1 - tol); if they fit p_th, solve the power control (25) for them exactly
(``power.min_time_flat``), which gives a strictly faster T, and repeat; stop when nothing 1e-8 faster is
feasible. A handful of steps (usually 1-3) instead of ~27 bisection steps, each on O(K) numbers: n_k^min
by an integer bisection per client and the top-L marginals from a window of a few counts above n_k^min
per client (widened while some client takes its whole window), never the K x S table. This reaches the
brute-force optimum of the link without enumerating compositions.

Under a ``fedsim.radio`` rate model (e.g. 5G NR with an MCS ceiling) P_k(T; n) need not be convex in n, so
the same rule is a heuristic there, kept as it was (the full K x S table, bisection on T); BCD keeps its
counts only when they make the link faster.
"""

from __future__ import annotations

import numpy as np
from scipy.special import lambertw

from fedsim.optimize.power import LN2, finish_time_s

_BISECTIONS = 100
_NEWTON_STEPS = 100
_SMALL_TABLE = 64  # n_min from all counts 1..n_top when n_top is at most this
# counts, not T, are the output (the power solver then finds T exactly), so a coarse tolerance is enough
_REL_TOL = 1e-8
_CAP_SLACK = 1 + 1e-9  # rounding slack on p_max; the power solver re-solves exactly


def _shannon_power_w(coef_w, x, n):
    """P_k(T; n) = (N0 B / g_k) n (2^{load_k / (slack_k n B)} - 1) = coef_k n expm1(x_k / n), broadcast [W].

    Call it under ``np.errstate(divide=, invalid=, over="ignore")`` (its caller enters that once)."""
    return coef_w * n * np.expm1(x / n)


def _least_feasible_count(power, coef_w, x, cap_w, n_top: int) -> np.ndarray:
    """(K,) the smallest n in 1..n_top with P_k(T; n) <= cap_k (feasible at n_top for every client).

    P_k(n) <= cap  <=>  expm1(u)/u <= q := cap / (coef x) with u = x / n, whose root is
    u* = -W_{-1}(-e^{-1/q} / q) - 1/q (Lambert W): n* = x / u* is the guess, checked exactly with ``power``
    at n* and n* - 1; the few clients where rounding misleads it fall back to an integer bisection."""
    if n_top <= _SMALL_TABLE:  # a few counts: evaluating them all is cheaper than the closed form
        ok = power(np.arange(1.0, n_top + 1.0)[None, :], (slice(None), None)) <= cap_w[:, None]
        return np.argmax(ok, axis=1) + 1
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = cap_w / (coef_w * x)
        u = -lambertw(-np.exp(-1.0 / q) / q, -1).real - 1.0 / q
        guess = np.ceil(x / u)
    n = np.clip(np.where(np.isfinite(guess), guess, n_top), 1, n_top).astype(int)
    ok = power(n.astype(float)) <= cap_w
    ok_below = (n > 1) & (power(np.maximum(n - 1, 1).astype(float)) <= cap_w)
    rows = np.flatnonzero(~ok | ok_below)
    if rows.size:  # bisection between an infeasible lo (0 stands for "none") and a feasible hi
        lo = np.where(ok[rows], 0, n[rows])
        hi = np.where(ok[rows], n[rows], n_top)
        while (hi - lo > 1).any():
            mid = (lo + hi) // 2
            good = power(mid.astype(float), rows) <= cap_w[rows]
            hi, lo = np.where(good, mid, hi), np.where(good, lo, mid)
        n[rows] = hi
    return n


def _counts_at_flat(time_s: float, coef_w, load_bits, offset_s, p_max_w, sub_hz, num_sub):
    """Least-power counts (K,) at ``time_s`` on a Shannon link and their total power [W] (inf when no
    counts are feasible); the same rule as ``_counts_at`` on O(K) numbers (see module docstring)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # once: it costs microseconds
        k = coef_w.shape[0]
        n_top = num_sub - k + 1  # the most subchannels one client can get
        slack = time_s - offset_s
        sending = load_bits > 0
        if (sending & ~(slack > 0)).any():
            return np.ones(k, int), np.inf
        x = np.where(sending, LN2 * load_bits / (slack * sub_hz), 0.0)
        cap_w = p_max_w * _CAP_SLACK

        everyone_sends = bool(sending.all())  # then np.where(sending, p, 0) is p itself: skip it

        def power(n, rows=slice(None)):
            p = _shannon_power_w(coef_w[rows], x[rows], n)
            return p if everyone_sends else np.where(sending[rows], p, 0.0)

        if not (power(float(n_top)) <= cap_w).all():
            return np.ones(k, int), np.inf
        n_min = _least_feasible_count(power, coef_w, x, cap_w, n_top)
        spare = num_sub - int(n_min.sum())
        if spare < 0:
            return n_min, np.inf
        total = float(power(n_min.astype(float)).sum())
        if spare == 0:
            return n_min, total
        # the top-`spare` marginals: each client's marginals decrease, so only a window of counts above n_min
        # can hold its share; widen the window while some client takes all of it and could take more
        width = min(n_top, max(4, 2 * (spare // k + 1)))
        while True:
            n = n_min[:, None] + np.arange(width + 1)[None, :]
            p = power(n.astype(float), (slice(None), None))
            marg = np.where(n[:, :-1] <= n_top, p[:, :-1] - p[:, 1:], -np.inf)  # saving of the (n+1)-th
            flat = marg.ravel()
            if spare <= flat.size:
                top = np.argpartition(-flat, spare - 1)[:spare]
                taken = np.bincount(top // width, minlength=k)
                if not ((taken == width) & (n_min + width <= n_top)).any() or width >= n_top:
                    return n_min + taken, total - float(flat[top].sum())
            width = min(n_top, 2 * width)


def _least_time_s(
    counts, feasible_s, coef_w, gain, offset_s, load_bits, p_max_w, p_th_w, sub_hz, n0
) -> float:
    """The least T at which ``counts`` fit the budgets (power control (25), as ``power.min_time_flat``),
    given a time ``feasible_s`` at which they fit: g(T) = sum_k P_k(T) - p_th is convex and decreasing, so
    one Newton step from the feasible side lands just left of the root, and Newton climbs from there
    (never below the full-power bound, where a client would exceed p_max) [s]."""
    n = counts.astype(float)
    sending = load_bits > 0
    lo = float(
        np.max(
            finish_time_s(
                p_max_w, n, gain, offset_s=offset_s, load_bits=load_bits, sub_hz=sub_hz, noise_psd_w_hz=n0
            )
        )
    )
    coef_n = coef_w * n
    ln2_load = LN2 * load_bits / (n * sub_hz)

    everyone_sends = bool(sending.all())  # then np.where(sending, v, 0) is v itself: skip it

    def g_and_slope(t):
        slack = t - offset_s
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            y = ln2_load / slack
            p = coef_n * np.expm1(y)
            dp = -coef_n * np.exp(y) * y / slack
            if not everyone_sends:
                p, dp = np.where(sending, p, 0.0), np.where(sending, dp, 0.0)
        return float(p.sum()) - p_th_w, float(dp.sum())

    if not np.any(sending):
        return lo
    g, slope = g_and_slope(feasible_s)
    t = max(lo, feasible_s - g / slope) if g < 0 and slope < 0 else feasible_s
    for _ in range(_NEWTON_STEPS):
        g, slope = g_and_slope(t)
        if not g > 0:
            break
        step = -g / slope
        t += step
        if not step > 1e-15 * t:
            break
    return t


def _exact_counts_flat(link, p_max_w, offset_s, load_bits, upper_s: float) -> np.ndarray | None:
    """``exact_counts`` on a Shannon link: the descent of the module docstring."""
    gain = np.asarray(link.gain, dtype=float)
    sub_hz, n0, p_th_w = float(link.subchannel_hz), float(link.noise_psd_w_hz), float(link.p_th_w)
    with np.errstate(divide="ignore"):
        coef_w = n0 * sub_hz / gain
    args = (coef_w, load_bits, offset_s, p_max_w, sub_hz, link.num_subchannels)
    hi = float(upper_s)
    if not np.isfinite(hi):
        return None
    moved = False
    for _ in range(_BISECTIONS):
        # usually the incumbent is already optimal: then nothing slightly faster is feasible
        counts, total = _counts_at_flat(hi * (1 - _REL_TOL), *args)
        if not total <= p_th_w:
            break
        time_s = _least_time_s(
            counts, hi * (1 - _REL_TOL), coef_w, gain, offset_s, load_bits, p_max_w, p_th_w, sub_hz, n0
        )
        if not time_s < hi:
            break
        hi, moved = time_s, True
    # the least-power counts at the final T (never worse than the counts that reached it)
    best, total = _counts_at_flat(hi, *args)
    if not moved and not total <= p_th_w * _CAP_SLACK:  # the incumbent spends p_th up to rounding
        return None
    return best


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


def _exact_counts_rate(link, p_max_w, offset_s, load_bits, upper_s: float) -> np.ndarray | None:
    """``exact_counts`` under a rate model: bisection on T with the full K x S table (``_counts_at``)."""
    from fedsim.core.link import finish_time_rate_s

    gain = np.asarray(link.gain, dtype=float)
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
    lo = float(
        np.max(
            finish_time_rate_s(
                link.rate, p_max_w, s - k + 1, gain=gain, offset_s=offset_s, load_bits=load_bits
            )
        )
    )
    hi = float(upper_s)
    if not np.isfinite(hi):
        return None
    best, total = _counts_at(hi, *args)
    if not total <= link.p_th_w * _CAP_SLACK:  # the incumbent spends p_th up to rounding
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


def exact_counts(link, p_max_w, offset_s, *, load_bits, upper_s: float) -> np.ndarray | None:
    """Counts (K,) minimising the link's worst finish time, searching T below upper_s.

    ``upper_s`` must be a feasible time (e.g. from Algorithm 2 + power control). Returns None when the
    search finds nothing feasible below it (then keep the incumbent).
    """
    p_max_w, offset_s, load_bits = (np.asarray(a, dtype=float) for a in (p_max_w, offset_s, load_bits))
    if link.rate is not None:
        return _exact_counts_rate(link, p_max_w, offset_s, load_bits, upper_s)
    return _exact_counts_flat(link, p_max_w, offset_s, load_bits, upper_s)
