"""Power control of one flat link for any monotone rate model (``fedsim.core.link.LinkRate``), by bisection.

With the assignment fixed, client k's least power to finish by T is P_k(T) = rate.min_power_w(load_k /
(T - offset_k), n_k, g_k), non-increasing in T because the rate is non-decreasing in power. So T is
feasible iff P_k(T) <= p_max_k for all k and sum_k P_k(T) <= p_th, feasibility is monotone in T, and
bisection finds the least feasible T: the optimum of (25) for the assignment under uniform PSD per client,
for any rate shape (concavity is not needed). On Shannon links it agrees with the Newton solver of
``fedsim.optimize.power`` (tests compare them). Everything broadcasts over leading axes, as there.
"""

from __future__ import annotations

import numpy as np

from fedsim.core.link import finish_time_rate_s

_BISECTIONS = 200
_REL_TOL = 1e-13
_DOUBLINGS = 80


def min_power_rate_w(rate, time_s, n_sub, *, gain, offset_s, load_bits) -> np.ndarray:
    """P_k(T): the least total power that finishes by ``time_s``, broadcast [W]; inf if impossible."""
    load_bits = np.asarray(load_bits, float)
    slack = np.asarray(time_s - offset_s, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where(slack > 0, load_bits / np.where(slack > 0, slack, 1.0), np.inf)
    p = rate.min_power_w(np.where(load_bits > 0, need, 0.0), n_sub, gain)
    p = np.where(load_bits > 0, p, 0.0)
    bad = ((load_bits > 0) & ~(slack > 0)) | ((load_bits <= 0) & (slack < 0))
    return np.where(bad, np.inf, p)


def _feasible(rate, t, args, p_max_w, p_th_w):
    p = min_power_rate_w(rate, t[..., None], **args)
    return np.all(p <= p_max_w, axis=-1) & (np.sum(p, axis=-1) <= p_th_w)


def min_time_rate(rate, n_sub, gain, *, offset_s, load_bits, p_max_w, p_th_w: float):
    """Least worst-case finish time of one link and each client's power at it, for a monotone ``rate``.

    Args:
        rate: the link's ``LinkRate``.
        n_sub: (..., K) subchannels per client; gain: (K,) or (..., K) power gains (linear).
        offset_s: (..., K) start times [s]; load_bits: (..., K) bits to send.
        p_max_w: (K,) per-client power caps [W]; p_th_w: the link's network-wide power threshold [W].

    Returns:
        (time_s (...), power_w (..., K)): the optimal T (inf if no finite T exists) and P_k(T) within the
        budgets.
    """
    args = dict(n_sub=n_sub, gain=gain, offset_s=offset_s, load_bits=load_bits)
    k = np.shape(n_sub)[-1]
    p_max_w = np.asarray(p_max_w, float)
    lo = np.max(finish_time_rate_s(rate, p_max_w, **args), axis=-1)
    hi = np.max(finish_time_rate_s(rate, np.minimum(p_max_w, p_th_w / k), **args), axis=-1)
    lo, hi = np.broadcast_arrays(np.asarray(lo, float), np.asarray(hi, float))
    lo, hi = lo.copy(), hi.copy()
    possible = np.isfinite(lo)
    # an equal share may leave a client below a rate model's cut-off while unequal powers work: double T
    # from the lower bound until feasible (P_k(T) tends to the cut-off power as T grows)
    grow = possible & ~np.isfinite(hi)
    if np.any(grow):
        t = np.where(grow, np.maximum(2.0 * lo, 1e-12), 0.0)
        for _ in range(_DOUBLINGS):
            ok = grow & _feasible(rate, t, args, p_max_w, p_th_w)
            hi = np.where(ok, t, hi)
            grow &= ~ok
            if not np.any(grow):
                break
            t = np.where(grow, 2.0 * t, t)
    ok = possible & np.isfinite(hi)
    lo = np.where(ok, lo, 0.0)
    hi = np.where(ok, hi, 0.0)
    # lo itself may be feasible (p_th not binding)
    at_lo = ok & _feasible(rate, lo, args, p_max_w, p_th_w)
    hi = np.where(at_lo, lo, hi)
    todo = ok & ~at_lo
    for _ in range(_BISECTIONS):
        if not np.any(todo):
            break
        mid = 0.5 * (lo + hi)
        feas = _feasible(rate, mid, args, p_max_w, p_th_w)
        hi = np.where(todo & feas, mid, hi)
        lo = np.where(todo & ~feas, mid, lo)
        todo &= hi - lo > _REL_TOL * hi
    time = np.where(ok, hi, np.inf)
    power = min_power_rate_w(rate, np.where(ok, hi, 0.0)[..., None], **args)
    power = np.where(ok[..., None], np.minimum(power, p_max_w), 0.0)
    total = np.sum(power, axis=-1, keepdims=True)
    power = power * np.minimum(1.0, p_th_w / np.where(total > 0, total, 1.0))
    return time, power
