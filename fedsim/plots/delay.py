"""Figures 5-8 style: total delay against a swept axis, one line per scheme (mean with 95 % t-CI or median
with IQR, log time axis in a unit chosen from the data), above a panel of each baseline's paired delay
reduction against the proposed scheme on the same drops."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from fedsim.plots.caption import BAND_TEXT, caption
from fedsim.plots.schemes import legend_label, scheme_order
from fedsim.plots.style import add_caption, figure_legend, plt, scheme_style
from fedsim.stats import centre_band, mean_ci95, paired_table, time_unit

__all__ = ["curve_stats", "delay_vs_axis", "mean_ci95", "plain_log_axis"]

# Row columns that can label a second x axis, with their unit.
PHYSICAL_COLUMNS = {
    "client_flops_per_s_mean": ("Mean client compute", "FLOP/s"),
    "server_flops_per_s": ("Server compute", "FLOP/s"),
}
_SI = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def curve_stats(rows: pd.DataFrame, axis: str, value: str = "total_s") -> pd.DataFrame:
    """Per (axis value, scheme): mean and 95 % CI half-width, median and quartiles, number of finite drops."""
    out = []
    for (x, scheme), group in rows.groupby([axis, "scheme"], sort=True):
        v = group[value].to_numpy(dtype=float)
        mean, half = mean_ci95(v)
        median, q25, q75 = centre_band(v, "median")
        n = int(np.isfinite(v).sum())
        out.append(dict(x=x, scheme=scheme, mean=mean, ci95=half, median=median, q25=q25, q75=q75, n=n))
    return pd.DataFrame(out)


def _x(values, scale: float, dbm: bool) -> np.ndarray:
    x = np.asarray(values, dtype=float) * scale
    return 10.0 * np.log10(x * 1e3) if dbm else x


def plain_log_axis(axis) -> None:
    """Log ticks written as plain numbers: at 1, 2, 5 x 10^n, or also 1.5, 3, 7 x 10^n when the axis (call
    it once the data or limits are set) spans less than a factor 20, so a 5-40 h range gets several labels."""
    low, high = sorted(abs(v) for v in axis.get_view_interval())
    subs = (1.0, 2.0, 5.0) if low <= 0 or high / low >= 20 else (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
    axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=30))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _si_scale(values) -> tuple[float, str]:
    top = float(np.nanmax(np.abs(values))) if len(values) else 0.0
    return next(((f, p) for f, p in _SI if top >= f), (1.0, ""))


def _second_axis(ax, rows: pd.DataFrame, axis: str, x: np.ndarray, column: str, label: str | None) -> None:
    """Tick labels on top giving the physical quantity ``column`` (its mean over the point's drops)."""
    values = rows.groupby(axis)[column].mean().sort_index().to_numpy(dtype=float)
    name, unit = PHYSICAL_COLUMNS.get(column, (column, ""))
    factor, prefix = _si_scale(values)
    step = 1 if len(x) <= 6 else 2
    top = ax.secondary_xaxis("top")
    top.set_xticks(x[::step], labels=[f"{v / factor:.3g}" for v in values[::step]])
    top.set_xlabel(label or f"{name} [{prefix}{unit}]")


def _band(ax, x, centre, low, high, scheme: str, schemes: list[str], label: str | None = None) -> None:
    style = scheme_style(scheme, schemes)
    ax.plot(x, centre, label=label, **style)
    ax.fill_between(x, low, high, color=style["color"], alpha=0.18, lw=0)


def delay_vs_axis(
    rows: pd.DataFrame,
    axis: str,
    x_label: str | None = None,
    *,
    x_scale: float = 1.0,
    x_dbm: bool = False,
    title: str | None = None,
    value: str = "total_s",
    stat: str = "mean",
    y_log: bool = True,
    x2_column: str | None = None,
    x2_label: str | None = None,
    note: str = "",
):
    """Total delay per scheme against ``axis`` (top) and the paired reduction of each baseline vs proposed
    on the same drops (bottom, when proposed is in the rows); returns the figure."""
    seconds, unit = time_unit(rows[value])
    schemes = scheme_order(rows["scheme"])
    paired = paired_table(rows, axis, value)
    fig, axes = plt.subplots(
        2 if not paired.empty else 1,
        1,
        figsize=(6.4, 5.0 if not paired.empty else 3.4),
        sharex=True,
        layout="constrained",
        height_ratios=[3, 2] if not paired.empty else None,
        squeeze=False,
    )
    top = axes[0, 0]
    table = curve_stats(rows, axis, value)
    lo, hi = ("mean", "ci95") if stat == "mean" else ("q25", "q75")
    for scheme in schemes:
        part = table[table["scheme"] == scheme].sort_values("x")
        x = _x(part["x"], x_scale, x_dbm)
        if stat == "mean":
            centre, low, high = part["mean"], part["mean"] - part["ci95"], part["mean"] + part["ci95"]
        else:
            centre, low, high = part["median"], part[lo], part[hi]
        _band(top, x, centre / seconds, low / seconds, high / seconds, scheme, schemes, legend_label(scheme))
    uncertain = {"analytic_total_p05_s", "analytic_total_p95_s"} <= set(rows.columns)
    if uncertain:  # training.e_draws: how the predicted delay moves with E(r) drawn from its seeds
        for scheme in schemes:
            part = rows[rows["scheme"] == scheme].groupby(axis)[["analytic_total_p05_s", "analytic_total_p95_s"]]
            spread = part.mean().sort_index()
            x = _x(pd.Series(spread.index.to_numpy()), x_scale, x_dbm)
            color = scheme_style(scheme, schemes)["color"]
            for col in spread.columns:
                top.plot(x, spread[col] / seconds, color=color, linestyle=":", linewidth=1.0)
    top.set_ylabel(f"Total training delay [{unit}]")
    if y_log:
        top.set_yscale("log")
        plain_log_axis(top.yaxis)
    if x2_column and x2_column in rows:
        xs = _x(np.sort(rows[axis].unique()), x_scale, x_dbm)
        _second_axis(top, rows, axis, xs, x2_column, x2_label)
    bottom = axes[-1, 0]
    if not paired.empty:
        _reduction_panel(bottom, paired, schemes, x_scale, x_dbm, stat)
    bottom.set_xlabel(x_label or (f"{axis} [dBm]" if x_dbm else axis))
    handles, labels = top.get_legend_handles_labels()
    figure_legend(fig, handles, labels, ncol=2)
    fig.align_ylabels(axes[:, 0])
    if title:
        fig.suptitle(title)
    extra = "Lower panel: paired saving of proposed over each baseline, 100 (1 - T_proposed / T_baseline) on the same drop"
    if uncertain:
        extra += (f"; dotted: mean over drops of the 5 % and 95 % predicted delay (eq. 17) with E(r) drawn from its "
                  f"seeds ({int(rows['e_draws'].iloc[0])} draws per drop)")
    add_caption(fig, caption(rows, BAND_TEXT[stat], paired, extra="; ".join(p for p in (extra, note) if p)))
    return fig


def _reduction_panel(
    ax, paired: pd.DataFrame, schemes: list[str], x_scale: float, x_dbm: bool, stat: str
) -> None:
    keys = ("mean", "lo", "hi") if stat == "mean" else ("median", "q25", "q75")
    for scheme in scheme_order(paired["scheme"]):
        part = paired[paired["scheme"] == scheme].sort_values("x")
        x = _x(part["x"], x_scale, x_dbm)
        centre, low, high = (part[f"reduction_{k}_pct"] for k in keys)
        _band(ax, x, centre, low, high, scheme, schemes)
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    ax.set_ylabel("Paired saving [%]")
