"""Power control of one link as a convex programme in cvxpy (spec §5.2, scaled CLARABEL form).

Handles per-subchannel gains (fading). Each variable is a subchannel's power in units of a guess of its owner's
need (see _budget_share_guess), and log(1 + a x) is written log(a x0) + log(1/(a x0) + y), so that a client next
to a server (full-power SNR a ~ 1e9, optimum at ~1e-7 of its budget) and a link short only of bandwidth (optimal
SNR ~ 1e9) are both well conditioned; bits are in Mbit and rates in Mbit/s.
"""

from __future__ import annotations

import numpy as np

from fedsim.optimize.power import PowerSolution, client_counts, finish_time_s, min_power_w

_MBIT = 1e6


def solve_power_cvx(link, owner, p_max_w, *, offset_s, load_bits, solver: str = "CLARABEL") -> PowerSolution:
    """Minimise max_k(offset_k + load_k / R_k) over the PSDs of one link, assignment ``owner`` (S,) fixed.

    Returns a PowerSolution whose status is cvxpy's status string ("optimal", "optimal_inaccurate",
    "infeasible", "solver_error", ...). PSDs are clipped to the budgets so rounding never breaks them.
    """
    import cvxpy as cp  # heavy import, only when this solver is used

    owner = np.asarray(owner, dtype=int)
    p_max_w = np.asarray(p_max_w, dtype=float)
    offset_s = np.asarray(offset_s, dtype=float)
    load_bits = np.asarray(load_bits, dtype=float)
    k, s = p_max_w.shape[0], owner.shape[0]
    gain = np.broadcast_to(np.asarray(link.gain, float).reshape(k, -1), (k, s))
    b_hz = float(link.subchannel_hz)
    psd = np.zeros(s)
    senders = [c for c in range(k) if load_bits[c] > 0]
    if any(not np.any(owner == c) for c in senders):
        return PowerSolution(psd, float("inf"), "infeasible")
    if not senders:
        return PowerSolution(psd, float(np.max(offset_s)), "optimal")
    used = np.flatnonzero(owner >= 0)
    u_owner = owner[used]
    a_full = p_max_w[u_owner] * gain[u_owner, used] / (link.noise_psd_w_hz * b_hz)  # full-power SNR
    if np.any(a_full[np.isin(u_owner, senders)] <= 0):
        return PowerSolution(psd, float("inf"), "infeasible")
    a_full = np.where(a_full > 0, a_full, 1.0)  # non-senders' subchannels carry nothing; keep logs finite
    # Each subchannel's variable y is its power in units of a guess x0 of its owner's share of the budget,
    # x = q / p_max = x0 y: the least power that finishes the owner by the uniform-PSD time, which is within a few
    # orders of the optimum. Budget units alone (x0 = 1) leave x ~ 1e-8 for a client next to a server, and
    # full-power SNR units (x0 = 1 / a) leave y ~ 1e9 for a link that is short of nothing but bandwidth; either
    # way the solver's absolute tolerance is a relative error of the rate that depends on the float path.
    x0 = _budget_share_guess(owner, gain, p_max_w, offset_s, load_bits, link)[u_owner]
    snr0 = a_full * x0  # log(1 + a x) = log(a x0) + log(1 / (a x0) + y)
    # vectorised over clients with a (senders x used subchannels) membership matrix: one compile, fast
    member = (u_owner[None, :] == np.array(senders)[:, None]).astype(float)
    y = cp.Variable(used.shape[0], nonneg=True)
    rate = cp.Variable(len(senders), pos=True)
    t = cp.Variable()
    owner_budget = p_max_w[u_owner]
    scale = (b_hz / _MBIT) / np.log(2)
    cons = [
        (owner_budget * x0) @ y <= link.p_th_w,
        t >= np.max(offset_s),
        rate <= scale * (member @ np.log(snr0) + member @ cp.log(1.0 / snr0 + y)),
        (member * x0[None, :]) @ y <= 1,
        offset_s[senders] + cp.multiply(load_bits[senders] / _MBIT, cp.inv_pos(rate)) <= t,
    ]
    idle = np.flatnonzero(~np.isin(u_owner, senders))
    if idle.size:  # a client with nothing to send spends no power
        cons.append(y[idle] == 0)
    prob = cp.Problem(cp.Minimize(t), cons)
    try:
        prob.solve(solver=solver)
    except cp.error.SolverError as exc:
        return PowerSolution(psd, float("inf"), f"solver_error: {exc}")
    status = str(prob.status)
    if y.value is None or status not in ("optimal", "optimal_inaccurate"):
        return PowerSolution(psd, float("inf"), status)
    xv = np.clip(np.asarray(y.value, float) * x0, 0.0, 1.0)
    # keep the solution inside both budgets despite solver tolerance
    for c in range(k):
        mine = owner[used] == c
        tot = xv[mine].sum()
        if tot > 1.0:
            xv[mine] /= tot
    q = xv * owner_budget
    if q.sum() > link.p_th_w:
        q *= link.p_th_w / q.sum()
    psd[used] = q / b_hz
    with np.errstate(divide="ignore", invalid="ignore"):
        per_sub = b_hz * np.log2(1.0 + psd[used] * gain[owner[used], used] / link.noise_psd_w_hz)
        rates = np.bincount(owner[used], weights=per_sub, minlength=k)
        times = np.where(load_bits > 0, offset_s + load_bits / rates, offset_s)
    return PowerSolution(psd, float(np.max(times)), status)


def _budget_share_guess(owner, gain, p_max_w, offset_s, load_bits, link) -> np.ndarray:
    """Per client: the least power, as a share of its budget in [1e-12, 1], that finishes it by the time every
    client would take with the uniform PSD, each client's gains averaged over its subchannels; 1 where the
    uniform time is not finite. A scale for the solver's variables only: the optimum may lie far from it."""
    k = p_max_w.shape[0]
    n = client_counts(owner, k)
    used = owner >= 0
    mean_gain = np.bincount(owner[used], weights=gain[owner[used], np.flatnonzero(used)], minlength=k)
    mean_gain = np.divide(mean_gain, n, out=np.zeros(k), where=n > 0)
    share = np.minimum(p_max_w, link.p_th_w / k)
    sub_hz, n0 = float(link.subchannel_hz), link.noise_psd_w_hz
    t_uniform = float(
        np.max(
            finish_time_s(
                share, n, mean_gain, offset_s=offset_s, load_bits=load_bits, sub_hz=sub_hz, noise_psd_w_hz=n0
            )
        )
    )
    if not np.isfinite(t_uniform):
        return np.ones(k)
    need = min_power_w(
        t_uniform, n, mean_gain, offset_s=offset_s, load_bits=load_bits, sub_hz=sub_hz, noise_psd_w_hz=n0
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        x0 = np.where(np.isfinite(need), need / p_max_w, 1.0)
    return np.clip(x0, 1e-12, 1.0)
