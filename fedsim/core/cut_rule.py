"""The pure rules of SplitFT-style adaptive cuts (spec §10b). SplitFT describes adaptive per-client cuts but
publishes no formula, so both rules here are fedsim's own, named for what they do.

**score** (``decide``): every client gets the score

    s_k = (1 - gamma) · F_k / mean(F) + gamma · q_k / mean(q)

(F_k its compute [FLOP/s], q_k its model quality); s_k > 1 + eps moves its cut one block deeper, s_k < 1 - eps
one block shallower, within [cut_min, cut_max,k]. Training (``fedsim.learn.federated.adaptive_cut``) and the
rule-based ``splitft`` scheme (``fedsim.optimize.splitft``) both use it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def scores(compute: Sequence[float], quality: Sequence[float], gamma: float) -> np.ndarray:
    """s_k = (1 - gamma) F_k / mean F + gamma q_k / mean q."""
    f, q = np.asarray(compute, float), np.asarray(quality, float)
    return (1.0 - gamma) * f / f.mean() + gamma * q / q.mean()


def decide(
    cuts: Sequence[int],
    compute: Sequence[float],
    quality: Sequence[float],
    *,
    gamma: float,
    epsilon: float,
    cut_min: int,
    cut_max: Sequence[int],
) -> list[dict]:
    """New cut per client as rows {client, old, new, score, reason}; clients whose cut stays are left out."""
    s = scores(compute, quality, gamma)
    rows = []
    for k, (c, score, top) in enumerate(zip(cuts, s, cut_max, strict=True)):
        if c > top:
            new, reason = top, "above its memory/time bound"
        elif score > 1 + epsilon and c < top:
            new, reason = c + 1, "score above 1 + epsilon"
        elif score < 1 - epsilon and c > cut_min:
            new, reason = c - 1, "score below 1 - epsilon"
        else:
            continue
        rows.append({"client": k, "old": int(c), "new": int(new), "score": float(score), "reason": reason})
    return rows


def steady_cuts(
    cuts: Sequence[int],
    compute: Sequence[float],
    gamma: float,
    *,
    epsilon: float,
    cut_min: int,
    cut_max: Sequence[int],
) -> list[int]:
    """Where the rule leaves the cuts when every client's quality is equal (compute alone decides)."""
    cuts = [int(c) for c in cuts]
    for _ in range(max(cut_max) + 1):  # each decision moves a cut one block toward its bound
        rows = decide(
            cuts, compute, [1.0] * len(cuts), gamma=gamma, epsilon=epsilon, cut_min=cut_min, cut_max=cut_max
        )
        if not rows:
            break
        for row in rows:
            cuts[row["client"]] = row["new"]
    return cuts


def time_bound(block_flops: Sequence[float], flops_per_s: float, budget_s: float) -> int:
    """Largest cut l whose per-iteration FP + BP work sum_{j<=l} block_flops_j / F fits in ``budget_s``."""
    work = np.cumsum(np.asarray(block_flops, float)) / flops_per_s
    return int(np.searchsorted(work, budget_s, side="right"))


def balanced_cuts(
    block_flops: Sequence[float], flops_per_s: Sequence[float], cut_min: int, *, cut_max: Sequence[int]
) -> list[int]:
    """**balance**: the cuts that make every client's iteration time sum_{j<=c} block_flops_j / F_k as equal
    as the block grid allows. A round waits for its slowest client, so the budget is tau = the largest time
    any client needs at ``cut_min`` (the least work anyone can do), and each client takes the most blocks
    that fit in tau, within [cut_min, cut_max_k]: work moves from the server to the fast clients without
    slowing the round."""
    work = np.cumsum(np.asarray(block_flops, float))
    speeds = np.asarray(flops_per_s, float)
    tau = float(np.max(work[cut_min - 1] / speeds))
    return [
        int(min(max(time_bound(block_flops, f, tau * (1 + 1e-12)), cut_min), top))
        for f, top in zip(speeds, cut_max, strict=True)
    ]


def toward(cuts: Sequence[int], target: Sequence[int], reason: str) -> list[dict]:
    """One block toward each client's ``target`` cut, as rows {client, old, new, score, reason} (score NaN:
    the rule has none); clients already at their target are left out."""
    rows = []
    for k, (c, t) in enumerate(zip(cuts, target, strict=True)):
        if c != t:
            new = c + (1 if t > c else -1)
            rows.append(
                {"client": k, "old": int(c), "new": int(new), "score": float("nan"), "reason": reason}
            )
    return rows


def ema(losses: Sequence[Sequence[float]], beta: float) -> np.ndarray:
    """Exponential moving average over rounds of per-client losses (R, K): ema_1 = loss_1 and
    ema_t = beta · loss_t + (1 - beta) · ema_(t-1); a NaN loss (no measurement that round) keeps the previous
    value (NaN until a client's first measurement)."""
    x = np.asarray(losses, float)
    out = np.full(x.shape, np.nan)
    prev = np.full(x.shape[1:], np.nan)
    for t, row in enumerate(x):
        prev = np.where(np.isnan(prev), row, np.where(np.isnan(row), prev, beta * row + (1 - beta) * prev))
        out[t] = prev
    return out


def step_std(series: Sequence[Sequence[float]]) -> np.ndarray:
    """Per column (client), the standard deviation (ddof 1) of the round-to-round changes of a (R, K) series:
    how much a signal jumps between consecutive rounds (NaN with fewer than 2 changes)."""
    d = np.diff(np.asarray(series, float), axis=0)
    out = np.full(d.shape[1:], np.nan)
    enough = (~np.isnan(d)).sum(axis=0) >= 2  # a signal never measured (no probe set) stays NaN
    out[enough] = np.nanstd(d[:, enough], axis=0, ddof=1)
    return out


def relative_quality(losses: Sequence[Sequence[float]]) -> np.ndarray:
    """q_k / mean q per round with q = exp(-loss), (R, K): the quality term the score rule reads."""
    q = np.exp(-np.asarray(losses, float))
    return q / q.mean(axis=-1, keepdims=True)
