"""Exact power control for one flat-channel link, spec §5.2 (25).

With the subchannel assignment fixed, a uniform PSD over a client's subchannels is optimal (equal gains,
concave log). For a target finish time T, client k needs at least

    P_k(T) = (N0 n_k B / g_k) * (2^{load_k / ((T - offset_k) n_k B)} - 1)    [W],

which decreases in T. T is feasible iff P_k(T) <= p_max_k for all k and sum_k P_k(T) <= p_th, so the
minimum T is the root of the convex, decreasing sum_k P_k(T) - p_th above the full-power bound: Newton's
method from that bound reaches it monotonically, with a bisection fallback between two closed-form bounds
for anything Newton leaves unconverged. Everything is vectorised over leading axes so the brute-force
search can solve many assignments at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LN2 = float(np.log(2.0))
_NEWTON_STEPS = 100


@dataclass(frozen=True)
class PowerSolution:
    """Power control result for one link.

    Attributes:
        psd_w_hz: (S,) PSD on each subchannel [W/Hz] (0 on unused subchannels).
        time_s: the link's worst finish time max_k(offset_k + load_k / R_k) [s] (inf if infeasible).
        status: "optimal", "infeasible" or a solver's status string.
    """

    psd_w_hz: np.ndarray
    time_s: float
    status: str


def finish_time_s(
    power_w, n_sub, gain, *, offset_s, load_bits, sub_hz: float, noise_psd_w_hz: float
) -> np.ndarray:
    """offset + load / R with total power spread uniformly over n subchannels, broadcast [s].

    A client with load 0 finishes at its offset; one with load > 0 and no rate never finishes (inf).
    """
    n_sub, load_bits = np.asarray(n_sub, float), np.asarray(load_bits, float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        bw = n_sub * sub_hz
        rate = bw * np.log1p(power_w * gain / (noise_psd_w_hz * bw)) / LN2
        t = np.where(load_bits > 0, load_bits / rate, 0.0)
        t = np.where((load_bits > 0) & ~(rate > 0), np.inf, t)
    return offset_s + t


def min_power_w(
    time_s, n_sub, gain, *, offset_s, load_bits, sub_hz: float, noise_psd_w_hz: float
) -> np.ndarray:
    """P_k(T): the least total power that finishes by time_s, broadcast [W]; inf if impossible."""
    n_sub, load_bits = np.asarray(n_sub, float), np.asarray(load_bits, float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        bw = n_sub * sub_hz
        slack = time_s - offset_s
        spectral = load_bits / (slack * bw)  # bit/s/Hz needed
        p = noise_psd_w_hz * bw / gain * np.expm1(LN2 * spectral)
        p = np.where(load_bits > 0, p, 0.0)
        bad = (load_bits > 0) & ~((slack > 0) & (bw > 0) & (gain > 0))
        bad |= (load_bits <= 0) & (slack < 0)
    return np.where(bad, np.inf, p)


class _NewtonTerms:
    """P_k(T) and dP_k/dT, broadcast (finite for T > offset_k), with the per-link constants computed once:
    the Newton loop of ``min_time_flat`` calls it many times."""

    def __init__(self, n_sub, gain, offset_s, load_bits, sub_hz: float, noise_psd_w_hz: float):
        n_sub, load_bits = np.asarray(n_sub, float), np.asarray(load_bits, float)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            self.bw = n_sub * sub_hz
            self.ln2_load = LN2 * load_bits
            self.scale = noise_psd_w_hz * self.bw / gain
        self.neg_scale = -self.scale
        self.offset_s = offset_s
        self.sending = load_bits > 0
        self.all_sending = bool(self.sending.all())

    def __call__(self, time_s):
        """(P, dP/dT) at ``time_s``; call it under ``np.errstate(divide=, invalid=, over="ignore")``."""
        slack = time_s - self.offset_s
        x = self.ln2_load / (slack * self.bw)
        p = self.scale * np.expm1(x)
        dp = self.neg_scale * np.exp(x) * x / slack
        if self.all_sending:
            return p, dp
        return np.where(self.sending, p, 0.0), np.where(self.sending, dp, 0.0)


def min_time_flat(
    n_sub, gain, offset_s, *, load_bits, p_max_w, p_th_w: float, sub_hz: float, noise_psd_w_hz: float
):
    """Least worst-case finish time of one link and each client's power at it.

    Args:
        n_sub: (..., K) subchannels per client.
        gain: (K,) or (..., K) end-to-end power gains (linear).
        offset_s: (..., K) time before the upload can start (t_k^F on the main link, 0 on the fed link) [s].
        load_bits: (..., K) bits each client uploads.
        p_max_w: (K,) per-client power caps [W].
        p_th_w: network-wide power threshold of the link [W].
        sub_hz: bandwidth of one subchannel [Hz]; noise_psd_w_hz: N0 [W/Hz].

    Returns:
        (time_s (...), power_w (..., K)): the optimal T (inf if no finite T exists) and P_k(T) <= budgets.
    """
    args = (n_sub, gain)
    kw = dict(offset_s=offset_s, load_bits=load_bits, sub_hz=sub_hz, noise_psd_w_hz=noise_psd_w_hz)
    if max(np.ndim(a) for a in (n_sub, gain, offset_s, load_bits, p_max_w)) == 1:
        one = _min_time_one_link(n_sub, gain, offset_s, p_max_w=p_max_w, p_th_w=p_th_w, kw=kw)
        if one is not None:
            return one
    k = np.shape(n_sub)[-1]
    # lower bound: everyone at full power ignoring p_th; upper bound: everyone at an equal share of p_th
    lo = np.max(finish_time_s(p_max_w, *args, **kw), axis=-1)
    hi = np.max(finish_time_s(np.minimum(p_max_w, p_th_w / k), *args, **kw), axis=-1)
    lo, hi = np.broadcast_arrays(np.asarray(lo, float), np.asarray(hi, float))
    lo, hi = lo.copy(), hi.copy()
    ok = np.isfinite(hi)
    # for T >= lo every P_k(T) <= p_max_k already, so only g(T) = sum_k P_k(T) - p_th matters. g is convex
    # and decreasing: Newton started at lo (g >= 0) climbs monotonically to the root without overshooting.
    t = np.where(ok, lo, 0.0)
    todo = ok.copy()
    newton = _NewtonTerms(n_sub, gain, offset_s, load_bits, sub_hz, noise_psd_w_hz)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # once, not per step: it costs
        for _ in range(_NEWTON_STEPS):
            p, dp = newton(t[..., None])
            g = p.sum(axis=-1) - p_th_w
            todo &= g > 0
            if not todo.any():
                break
            step = np.where(todo, -g / dp.sum(axis=-1), 0.0)
            t = np.minimum(t + step, hi)
            todo &= step > 1e-15 * t
    # safeguard: bisect whatever Newton left unconverged (never seen in tests, kept for robustness)
    lo = t.copy()
    for _ in range(200 if todo.any() else 0):
        mid = 0.5 * (lo + hi)
        feas = np.sum(min_power_w(mid[..., None], *args, **kw), axis=-1) <= p_th_w
        hi, lo = np.where(todo & feas, mid, hi), np.where(todo & ~feas, mid, lo)
        if np.all(~todo | (hi - lo <= 1e-15 * hi)):
            break
    hi = np.where(ok & ~todo, t, hi)
    time = np.where(ok, hi, np.inf)
    power = min_power_w(np.where(ok, hi, 0.0)[..., None], *args, **kw)
    power = np.where(ok[..., None], np.minimum(power, p_max_w), 0.0)
    # floating-point guard so the returned powers never exceed p_th by rounding
    total = power.sum(axis=-1, keepdims=True)
    power = power * np.minimum(1.0, p_th_w / np.where(total > 0, total, 1.0))
    return time, power


def _min_time_one_link(n_sub, gain, offset_s, *, p_max_w, p_th_w: float, kw: dict):
    """``min_time_flat`` for ONE link (every argument (K,) or scalar), with the scalar bookkeeping (T, g, the
    Newton step) in Python floats rather than 0-d arrays: the same float operations in the same order, so
    the same bits, at a fraction of the cost (BCD solves one link at a time). None (then the vectorised
    loop runs) in the case Newton leaves unconverged, which the bisection safeguard handles."""
    k = np.shape(n_sub)[-1]
    lo = float(np.max(finish_time_s(p_max_w, n_sub, gain, **kw), axis=-1))
    hi = float(np.max(finish_time_s(np.minimum(p_max_w, p_th_w / k), n_sub, gain, **kw), axis=-1))
    ok = math.isfinite(hi)
    t = lo if ok else 0.0
    if ok:
        newton = _NewtonTerms(n_sub, gain, offset_s, kw["load_bits"], kw["sub_hz"], kw["noise_psd_w_hz"])
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            for _ in range(_NEWTON_STEPS):
                p, dp = newton(t)
                g = p.sum(axis=-1) - p_th_w
                if not g > 0:
                    break
                step = -g / dp.sum(axis=-1)
                t = min(t + step, hi)
                if not step > 1e-15 * t:
                    break
            else:
                return None
        hi = t
    power = min_power_w(hi if ok else 0.0, n_sub, gain, **kw)
    power = np.minimum(power, p_max_w) if ok else np.zeros(np.shape(power))
    total = power.sum(axis=-1)
    power = power * np.minimum(1.0, p_th_w / (total if total > 0 else 1.0))
    return np.asarray(hi if ok else np.inf), power


def client_counts(owner: np.ndarray, num_clients: int) -> np.ndarray:
    """(K,) number of subchannels each client owns."""
    owner = np.asarray(owner, dtype=int)
    return np.bincount(owner[owner >= 0], minlength=num_clients)


def min_time_on_link(link, n_sub, *, offset_s, load_bits, p_max_w):
    """Least worst-case finish time of a flat link (gain (K,)) at subchannel counts ``n_sub`` (..., K) and
    each client's power at it: Newton on the closed form of eq. (9) when the link has no rate model
    (``min_time_flat``), else bisection on its rate model (``fedsim.optimize.power_rate``, exact for any
    monotone rate). The one place that picks between the two."""
    gain = np.asarray(link.gain, float)
    if link.rate is not None:
        from fedsim.optimize.power_rate import min_time_rate

        return min_time_rate(
            link.rate,
            n_sub,
            gain,
            offset_s=offset_s,
            load_bits=load_bits,
            p_max_w=p_max_w,
            p_th_w=float(link.p_th_w),
        )
    return min_time_flat(
        n_sub,
        gain,
        offset_s,
        load_bits=load_bits,
        p_max_w=p_max_w,
        p_th_w=float(link.p_th_w),
        sub_hz=float(link.subchannel_hz),
        noise_psd_w_hz=float(link.noise_psd_w_hz),
    )


def solve_power_exact(link, owner, p_max_w, *, offset_s, load_bits) -> PowerSolution:
    """Optimal PSDs of one flat-channel link (gain (K,)) for a fixed assignment ``owner`` (S,)."""
    gain = np.asarray(link.gain, dtype=float)
    if gain.ndim != 1:
        raise ValueError(
            "the exact power solver needs a flat channel (gain of shape (K,)); use cvxpy for fading"
        )
    k = gain.shape[0]
    n = client_counts(owner, k)
    time, power = min_time_on_link(
        link,
        n,
        offset_s=np.asarray(offset_s, float),
        load_bits=np.asarray(load_bits, float),
        p_max_w=np.asarray(p_max_w, float),
    )
    owner = np.asarray(owner, dtype=int)
    psd = np.zeros(owner.shape[0])
    used = owner >= 0
    psd[used] = power[owner[used]] / (n[owner[used]] * link.subchannel_hz)
    time = float(time)
    return PowerSolution(psd, time, "optimal" if np.isfinite(time) else "infeasible")


def uniform_psd(link, owner, p_max_w) -> np.ndarray:
    """Baseline power: min(p_max_k, p_th/K) spread evenly over client k's subchannels, (S,) [W/Hz]."""
    p_max_w = np.asarray(p_max_w, dtype=float)
    k = p_max_w.shape[0]
    owner = np.asarray(owner, dtype=int)
    n = client_counts(owner, k)
    share = np.minimum(p_max_w, link.p_th_w / k)
    psd = np.zeros(owner.shape[0])
    used = owner >= 0
    psd[used] = share[owner[used]] / (n[owner[used]] * link.subchannel_hz)
    return psd
