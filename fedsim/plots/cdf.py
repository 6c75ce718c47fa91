"""Distribution of the total delay over random placements: the CDF per scheme on a log time axis cut at
a high quantile (outliers counted in the caption), and the CDF of each baseline's delay relative to the
proposed scheme on the same drop."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedsim.plots.caption import caption
from fedsim.plots.delay import plain_log_axis
from fedsim.plots.schemes import legend_label, scheme_order
from fedsim.plots.style import add_caption, figure_legend, plt, scheme_style
from fedsim.stats import paired_table, time_unit


def _ecdf(ax, values: np.ndarray, scheme: str, schemes: list[str], label: str | None = None) -> None:
    v = np.sort(values[np.isfinite(values)])
    if v.size:
        style = scheme_style(scheme, schemes)
        y = np.arange(1, v.size + 1) / v.size
        ax.step(v, y, where="post", label=label, color=style["color"], linestyle=style["linestyle"])


def _ratios(rows: pd.DataFrame, value: str) -> pd.DataFrame:
    """Per (point, drop): T_scheme / T_proposed for every other scheme."""
    wide = rows.pivot_table(index=["point", "drop"], columns="scheme", values=value, aggfunc="first")
    return wide.drop(columns="proposed").div(wide["proposed"], axis=0)


def delay_cdf(
    rows: pd.DataFrame, value: str = "total_s", title: str | None = None, *, quantile: float = 0.99
):
    """Empirical CDF of ``value`` over every drop (and point) per scheme, the x axis logarithmic and cut
    at the ``quantile`` of all finite delays; below it, the CDF of T_baseline / T_proposed per drop."""
    seconds, unit = time_unit(rows[value])
    schemes = scheme_order(rows["scheme"])
    has_pairs = "proposed" in schemes and len(schemes) > 1
    fig, axes = plt.subplots(
        2 if has_pairs else 1,
        1,
        figsize=(6.4, 5.0 if has_pairs else 3.4),
        layout="constrained",
        squeeze=False,
    )
    top = axes[0, 0]
    values = rows[value].to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    right = float(np.quantile(finite, quantile)) if finite.size else 1.0
    for scheme in schemes:
        _ecdf(
            top,
            rows.loc[rows["scheme"] == scheme, value].to_numpy(dtype=float) / seconds,
            scheme,
            schemes,
            legend_label(scheme),
        )
    top.set_xscale("log")
    if finite.size:
        top.set_xlim(finite.min() / seconds * 0.95, right / seconds)
    plain_log_axis(top.xaxis)
    top.set_xlabel(f"Total training delay [{unit}] (log scale)")
    top.set_ylabel("CDF over drops")
    beyond = int((finite > right).sum())
    note = f"Upper x axis cut at the {100 * quantile:g}th percentile of all delays ({beyond} delays beyond)"
    paired = pd.DataFrame()
    if has_pairs:
        bottom = axes[1, 0]
        ratios = _ratios(rows, value)
        for scheme in scheme_order(ratios.columns):
            _ecdf(bottom, ratios[scheme].to_numpy(dtype=float), scheme, schemes)
        bottom.axvline(1.0, color="0.3", linewidth=0.8)
        bottom.set_xscale("log")
        plain_log_axis(bottom.xaxis)
        bottom.set_xlabel("Delay relative to proposed on the same drop, T_baseline / T_proposed")
        bottom.set_ylabel("CDF over drops")
        paired = paired_table(rows)
    handles, labels = top.get_legend_handles_labels()
    figure_legend(fig, handles, labels, ncol=2)
    if title:
        fig.suptitle(title)
    add_caption(fig, caption(rows, "Empirical CDFs (steps) over all drops", paired, extra=note))
    return fig
