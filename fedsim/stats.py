"""Statistics for the summaries, tables and figures: mean with Student-t 95 % CI, median with IQR, the paired
comparison of each baseline with the proposed scheme on the same drops, and a readable time unit."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

STATS = ("mean", "median")


def _finite(values) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return v[np.isfinite(v)]


def mean_ci95(values) -> tuple[float, float]:
    """Mean and half-width of the Student-t 95 % confidence interval of finite ``values`` (0 for n < 2)."""
    v = _finite(values)
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size < 2:
        return float(v.mean()), 0.0
    return float(v.mean()), float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))


def centre_band(values, stat: str = "mean") -> tuple[float, float, float]:
    """(centre, low, high) of finite ``values``: mean and its 95 % t-CI, or median and the IQR (25-75 %)."""
    v = _finite(values)
    if v.size == 0:
        return (float("nan"),) * 3
    if stat == "median":
        q25, q50, q75 = np.percentile(v, [25, 50, 75])
        return float(q50), float(q25), float(q75)
    mean, half = mean_ci95(v)
    return mean, mean - half, mean + half


def paired_stats(proposed, baseline) -> dict[str, float]:
    """Compare delays on the same drops: ``proposed[i]`` and ``baseline[i]`` come from drop i.

    reduction_pct = 100 (1 - T_proposed / T_baseline) per drop (how much less time the proposed scheme
    needs): mean with the 95 % t-CI, median with the IQR. ratio = T_baseline / T_proposed: geometric mean
    with the 95 % CI of the paired t-test on log delays. Both use pairs where both delays are finite.
    wins_pct / ties_pct: share of drops (with at least one finite delay) where the proposed delay is lower /
    equal (to 1e-12 relative; a baseline whose random draw hits the proposed choice ties).
    """
    p, b = np.asarray(proposed, dtype=float), np.asarray(baseline, dtype=float)
    if p.shape != b.shape:
        raise ValueError(f"paired delays need equal shapes, got {p.shape} and {b.shape}")
    any_finite = np.isfinite(p) | np.isfinite(b)
    both = np.isfinite(p) & np.isfinite(b) & (p > 0) & (b > 0)
    ties = np.isclose(p, b, rtol=1e-12, atol=0.0) | (np.isinf(p) & np.isinf(b))
    considered = any_finite.sum()
    out = {
        "n_pairs": int(both.sum()),
        "wins_pct": float(100.0 * ((p < b) & ~ties)[any_finite].mean()) if considered else float("nan"),
        "ties_pct": float(100.0 * ties[any_finite].mean()) if considered else float("nan"),
    }
    reduction = 100.0 * (1.0 - p[both] / b[both])
    mean, half = mean_ci95(reduction)
    q25, q50, q75 = np.percentile(reduction, [25, 50, 75]) if reduction.size else (np.nan,) * 3
    log_ratio = np.log(b[both] / p[both])
    gm, log_half = mean_ci95(log_ratio)
    out.update(
        {
            "reduction_mean_pct": mean,
            "reduction_lo_pct": mean - half,
            "reduction_hi_pct": mean + half,
            "reduction_median_pct": float(q50),
            "reduction_q25_pct": float(q25),
            "reduction_q75_pct": float(q75),
            "ratio_gmean": float(np.exp(gm)),
            "ratio_lo": float(np.exp(gm - log_half)),
            "ratio_hi": float(np.exp(gm + log_half)),
        }
    )
    return out


def paired_table(
    rows: pd.DataFrame, axis: str | None = None, value: str = "total_s", *, reference: str = "proposed"
) -> pd.DataFrame:
    """``paired_stats`` of every other scheme against ``reference`` at each sweep point (pairs matched on
    (point, drop)); one row per (point, scheme) with the axis value as ``x`` (None when nothing is swept)."""
    if reference not in set(rows["scheme"]):
        return pd.DataFrame()
    wide = rows.pivot_table(index=["point", "drop"], columns="scheme", values=value, aggfunc="first")
    xs = rows.groupby("point")[axis].first() if axis else None
    out = []
    for point, group in wide.groupby(level="point", sort=True):
        for scheme in [s for s in group.columns if s != reference]:
            entry = {"point": int(point), "x": xs[point] if xs is not None else None, "scheme": scheme}
            out.append(entry | paired_stats(group[reference].to_numpy(), group[scheme].to_numpy()))
    return pd.DataFrame(out)


def time_unit(values_s) -> tuple[float, str]:
    """(seconds per unit, unit) that keeps the median of ``values_s`` between about 1 and 1000: h, min or s."""
    v = np.asarray(values_s, dtype=float)
    v = v[np.isfinite(v)]
    median = float(np.median(v)) if v.size else 0.0
    for seconds, unit in ((3600.0, "h"), (60.0, "min")):
        if median >= 2 * seconds:
            return seconds, unit
    return 1.0, "s"
