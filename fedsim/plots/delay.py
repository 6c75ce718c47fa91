"""Figures 5-8 style: mean total delay vs a swept axis, one line per scheme, 95 % confidence band;
and the distribution (CDF) of the delay over random placements."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from fedsim.optimize.schemes import ordered
from fedsim.plots.style import SECONDS_FORMATTER, plt, scheme_label, scheme_style


def mean_ci95(values: np.ndarray) -> tuple[float, float]:
    """Mean and half-width of the Student-t 95 % confidence interval of finite ``values`` (0 for n < 2)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size < 2:
        return float(v.mean()), 0.0
    return float(v.mean()), float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))


def curve_stats(rows: pd.DataFrame, axis: str, value: str = "total_s") -> pd.DataFrame:
    """Per (axis value, scheme): mean, ci95 half-width and number of finite drops."""
    out = []
    for (x, scheme), group in rows.groupby([axis, "scheme"], sort=True):
        mean, half = mean_ci95(group[value].to_numpy())
        out.append(
            {
                "x": x,
                "scheme": scheme,
                "mean": mean,
                "ci95": half,
                "n": int(np.isfinite(group[value].to_numpy(dtype=float)).sum()),
            }
        )
    return pd.DataFrame(out)


def _x(values: np.ndarray, scale: float, dbm: bool) -> np.ndarray:
    x = np.asarray(values, dtype=float) * scale
    return 10.0 * np.log10(x * 1e3) if dbm else x


def delay_vs_axis(
    rows: pd.DataFrame,
    axis: str,
    x_label: str | None = None,
    x_scale: float = 1.0,
    x_dbm: bool = False,
    title: str | None = None,
    value: str = "total_s",
):
    """Mean ``value`` [s] against ``axis`` for every scheme, with 95 % CI bands; returns the figure."""
    table = curve_stats(rows, axis, value)
    fig, ax = plt.subplots(figsize=(3.5, 2.6))
    schemes = ordered(table["scheme"])
    for scheme in schemes:
        part = table[table["scheme"] == scheme].sort_values("x")
        x = _x(part["x"].to_numpy(), x_scale, x_dbm)
        mean, half = part["mean"].to_numpy(), part["ci95"].to_numpy()
        style = scheme_style(scheme, schemes)
        ax.plot(x, mean, label=scheme_label(scheme), **style)
        ax.fill_between(x, mean - half, mean + half, color=style["color"], alpha=0.2, lw=0)
    ax.set_xlabel(x_label or (f"{axis} [dBm]" if x_dbm else axis))
    ax.set_ylabel("Total training delay [s]")
    ax.yaxis.set_major_formatter(SECONDS_FORMATTER)
    if title:
        ax.set_title(title, pad=28)
    _legend_above(ax)
    return fig


def _legend_above(ax) -> None:
    """Legend in a band above the axes, so it never hides a curve."""
    ax.legend(
        frameon=False,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncol=3,
        columnspacing=1.0,
        handlelength=2.0,
    )


def delay_cdf(rows: pd.DataFrame, value: str = "total_s", title: str | None = None):
    """Empirical CDF of ``value`` over every drop (and point) for each scheme; returns the figure."""
    fig, ax = plt.subplots(figsize=(3.5, 2.6))
    schemes = ordered(rows["scheme"])
    for scheme in schemes:
        v = np.sort(rows.loc[rows["scheme"] == scheme, value].to_numpy(dtype=float))
        v = v[np.isfinite(v)]
        if v.size:
            ax.step(
                v,
                np.arange(1, v.size + 1) / v.size,
                where="post",
                label=scheme_label(scheme),
                color=scheme_style(scheme, schemes)["color"],
                linestyle=scheme_style(scheme, schemes)["linestyle"],
            )
    ax.set_xlabel("Total training delay [s]")
    ax.xaxis.set_major_formatter(SECONDS_FORMATTER)
    ax.set_ylabel("CDF over placements")
    if title:
        ax.set_title(title)
    _legend_above(ax)
    return fig
