"""Why a scheme's delay is what it is, from the rows: the decisions it took (cut layer, LoRA rank,
subchannels per client, total transmit power against p_th) and where its delay goes (eq. 17 split into
client forward + upload T1, server compute, client backward T2 and LoRA upload T3)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from fedsim.experiments.montecarlo.columns import BREAKDOWN_COLUMNS
from fedsim.plots.caption import caption
from fedsim.plots.delay import plain_log_axis
from fedsim.plots.schemes import legend_label, scheme_label, scheme_order
from fedsim.plots.style import add_caption, figure_legend, plt, scheme_style
from fedsim.stats import time_unit

BREAKDOWN_LABELS = {
    "delay_T1_s": "T1: client forward + activation upload",
    "delay_server_s": "main-server forward + backward",
    "delay_T2_s": "T2: client backward",
    "delay_T3_s": "T3: LoRA upload",
    "engine_extra_s": "event engine beyond eq. (17)",
}
BREAKDOWN_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3")


def _positions(rows: pd.DataFrame, axis: str | None, scale: float, dbm: bool) -> pd.Series:
    """x of every row's point: the swept value (scaled, or dBm) or 0 when nothing is swept."""
    if axis is None:
        return pd.Series(0.0, index=rows.index)
    x = rows[axis].astype(float) * scale
    return 10.0 * np.log10(x * 1e3) if dbm else x


def _dodged(ax, x: pd.Series, values: pd.Series, schemes: list[str], scheme_of: pd.Series, width: float):
    """Median (marker) and IQR (bar) per point and scheme, schemes side by side around each x."""
    for i, scheme in enumerate(schemes):
        mine = scheme_of == scheme
        stats = values[mine].groupby(x[mine]).quantile([0.25, 0.5, 0.75]).unstack()
        if stats.empty:
            continue
        offset = (i - (len(schemes) - 1) / 2) * width
        style = scheme_style(scheme, schemes)
        ax.errorbar(
            stats.index.to_numpy() + offset,
            stats[0.5],
            yerr=[stats[0.5] - stats[0.25], stats[0.75] - stats[0.5]],
            fmt=style["marker"],
            color=style["color"],
            markersize=4,
            elinewidth=1.0,
            capsize=0,
            label=legend_label(scheme),
        )


def _list_stat(column: pd.Series, fn) -> pd.Series:
    return column.map(lambda s: float(fn(json.loads(s))))


def decisions_figure(rows, axis=None, x_label=None, *, x_scale=1.0, x_dbm=False, title=None):
    """Four panels against the swept axis: cut layer, LoRA rank, subchannels per client (main link; the
    most any client got) and total main-link transmit power with p_th and K·p_max; returns the figure."""
    x = _positions(rows, axis, x_scale, x_dbm)
    schemes = scheme_order(rows["scheme"])
    xs = np.sort(x.unique())
    width = 0.6 * (np.diff(xs).min() if xs.size > 1 else 1.0) / max(len(schemes), 1)
    fig, axes = plt.subplots(2, 2, figsize=(7.0, 4.6), sharex=True, layout="constrained")
    panels = [
        (rows["cut_mean"], "Cut layer c (client blocks)"),
        (rows["rank"].astype(float), "LoRA rank r"),
        (_list_stat(rows["subchannels_main"], max), "Most main-link subchannels\nof one client"),
        (rows["power_main_total_w"], "Total main-link transmit\npower, sum over clients [W]"),
    ]
    for ax, (values, label) in zip(axes.flat, panels, strict=True):
        _dodged(ax, x, values.astype(float), schemes, rows["scheme"], width)
        ax.set_ylabel(label)
    power = axes[1, 1]
    caps = rows.assign(_x=x).groupby("_x")
    k = _list_stat(rows["subchannels_main"], len).max()
    span = xs if xs.size > 1 else xs[0] + np.array([-0.5, 0.5]) * len(schemes) * width  # one point: a bar

    def cap_line(values: pd.Series, **style):
        return power.plot(span, values.to_numpy() if xs.size > 1 else np.repeat(values.iloc[0], 2), **style)

    lines = cap_line(caps["p_th_main_w"].first(), color="0.2", linestyle="--", linewidth=1)
    labels = ["p_th (network-wide cap)"]
    if "p_max_w" in rows:
        lines += cap_line(caps["p_max_w"].first() * k, color="0.5", linestyle=":", linewidth=1)
        labels.append("K p_max (all clients at p_max)")
    power.set_yscale("log")
    plain_log_axis(power.yaxis)
    power.legend(lines, labels, frameon=False, fontsize=7, loc="best")
    if xs.size == 1 and axis is None:
        for ax in axes[1]:
            ax.set_xticks([])
    for ax in axes[1]:
        ax.set_xlabel(x_label or (axis or ""))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure_legend(fig, handles, labels, ncol=3)
    if title:
        fig.suptitle(title)
    add_caption(
        fig,
        caption(
            rows,
            "Markers: median over drops; bars: interquartile range",
            extra="Cut and rank are per-drop choices (cut: mean over clients); p_th and K p_max are the "
            "main-link caps on the summed power",
        ),
        width=140,
    )
    return fig


def _components(rows: pd.DataFrame) -> list[str]:
    columns = [c for c in BREAKDOWN_COLUMNS if c in rows]
    extra = rows["total_s"] - rows["analytic_total_s"]
    if (
        np.nanmax(np.abs(extra.replace([np.inf, -np.inf], np.nan).fillna(0.0)))
        > 1e-6 * rows["total_s"].median()
    ):
        columns.append("engine_extra_s")
    return columns


def breakdown_figure(rows, axis=None, x_label=None, *, x_scale=1.0, x_dbm=False, title=None):
    """Mean delay split into its terms (stacked), one panel per scheme against the swept axis, or one
    stacked bar per scheme when nothing is swept; the mean client energy beside it when the rows have it
    (engine energy model on). Returns the figure."""
    data = rows[np.isfinite(rows["total_s"].to_numpy(dtype=float))].copy()
    data["engine_extra_s"] = data["total_s"] - data["analytic_total_s"]
    columns = _components(data)
    seconds, unit = time_unit(data["total_s"])
    data["_x"] = _positions(data, axis, x_scale, x_dbm)
    means = data.groupby(["scheme", "_x"])[columns].mean() / seconds
    schemes = scheme_order(data["scheme"])
    colours = dict(zip(BREAKDOWN_LABELS, BREAKDOWN_COLOURS, strict=True))
    energy = data.groupby(["scheme", "_x"])["energy_j"].mean() / 1e3 if "energy_j" in data else None
    has_energy = energy is not None and bool(np.isfinite(energy).any())
    if data["_x"].nunique() > 1:
        fig, axes = plt.subplots(
            2 if has_energy else 1,
            len(schemes),
            figsize=(1.5 * len(schemes) + 0.6, 4.4 if has_energy else 2.6),
            sharey="row",
            sharex=True,
            layout="constrained",
            squeeze=False,
        )
        if has_energy:  # the engine's energy model is on: mean client energy of the whole run
            for ax, scheme in zip(axes[1], schemes, strict=True):
                ax.plot(energy.loc[scheme].index, energy.loc[scheme], color="0.2", marker="o", markersize=3)
            axes[1, 0].set_ylabel("Mean client energy [kJ]")
        for ax, scheme in zip(axes[0], schemes, strict=True):
            part = means.loc[scheme]
            ax.stackplot(
                part.index,
                *(part[c] for c in columns),
                colors=[colours[c] for c in columns],
                labels=[BREAKDOWN_LABELS[c] for c in columns],
            )
            ax.set_title(scheme_label(scheme))
        fig.supxlabel(x_label or axis or "", fontsize=10)
        axes[0, 0].set_ylabel(f"Mean total delay [{unit}]")
        handles, labels = axes[0, 0].get_legend_handles_labels()
    else:
        fig, ax = plt.subplots(figsize=(4.6, 2.8), layout="constrained")
        bottom = np.zeros(len(schemes))
        for c in columns:
            heights = np.array([means.loc[s][c].iloc[0] for s in schemes])
            ax.bar(range(len(schemes)), heights, bottom=bottom, color=colours[c], label=BREAKDOWN_LABELS[c])
            bottom += heights
        ax.set_xticks(range(len(schemes)), [scheme_label(s) for s in schemes])
        ax.set_ylabel(f"Mean total delay [{unit}]")
        handles, labels = ax.get_legend_handles_labels()
        if has_energy:  # the engine's energy model is on: mean client energy on the right axis
            right = ax.twinx()
            right.plot(range(len(schemes)), [energy.loc[s].iloc[0] for s in schemes], "ko", markersize=4)
            right.set_ylabel("Mean client energy [kJ] (dots)")
    figure_legend(fig, handles, labels, ncol=3)
    if title:
        fig.suptitle(title)
    add_caption(
        fig,
        caption(data, "Stacked means over feasible drops of the terms of eq. (17), which sum to the total"),
        width=140,
    )
    return fig
