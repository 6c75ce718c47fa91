"""The end-of-run summary: mean total delay per scheme at each sweep point (in a unit chosen from the data),
the reduction of the means vs scheme a, and the paired comparison of every baseline with the proposed
scheme on the same drops (mean per-drop reduction, its 95 % t-CI, share of drops the proposed wins)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fedsim.optimize.schemes import ordered

META_COLUMNS = {
    "scenario",
    "point",
    "drop",
    "scheme",
    "seed",
    "status",
    "rank",
    "cut_mean",
    "cuts",
    "rounds",
    "rounds_source",
    "iteration_s",
    "T1_s",
    "T2_s",
    "T3_s",
    "analytic_total_s",
    "optimizer_iterations",
    "solver_status",
    "total_s",
    "rounds_completed",
    "energy_j",
    "engine_status",
}


def axis_columns(rows: pd.DataFrame) -> list[str]:
    """The swept-axis columns of a rows table (dotted field names)."""
    return [c for c in rows.columns if c not in META_COLUMNS and "." in c]


def _finite_mean(values: pd.Series) -> float:
    v = values.to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.inf


def summary_table(rows: pd.DataFrame, value: str = "total_s") -> pd.DataFrame:
    """One row per sweep point: axis values, mean ``value`` per scheme (finite drops), infeasible count,
    and ``proposed_vs_a_pct`` = 100 (1 - mean proposed / mean a)."""
    axes = axis_columns(rows)
    schemes = ordered(rows["scheme"])
    out = []
    for point, group in rows.groupby("point", sort=True):
        entry = {"point": int(point), **{a: group[a].iloc[0] for a in axes}}
        for scheme in schemes:
            entry[scheme] = _finite_mean(group.loc[group["scheme"] == scheme, value])
        entry["infeasible"] = int((~np.isfinite(group[value].to_numpy(dtype=float))).sum())
        if "proposed" in entry and "a" in entry and math.isfinite(entry["a"]) and entry["a"] > 0:
            entry["proposed_vs_a_pct"] = 100.0 * (1.0 - entry["proposed"] / entry["a"])
        out.append(entry)
    return pd.DataFrame(out)


def paired_summary(rows: pd.DataFrame, value: str = "total_s") -> pd.DataFrame:
    """One row per sweep point: axis values and, per baseline, 'reduction % [95 % CI], wins %' of the
    proposed scheme against it on the same drops (``fedsim.stats.paired_stats``)."""
    from fedsim.stats import paired_table

    paired = paired_table(rows, value=value)
    if paired.empty:
        return paired
    axes = axis_columns(rows)
    firsts = rows.groupby("point")[axes].first() if axes else None
    out = []
    for point, group in paired.groupby("point", sort=True):
        entry = {"point": int(point), **({a: firsts.loc[point, a] for a in axes} if axes else {})}
        for _, r in group.iterrows():
            entry[f"proposed vs {r['scheme']}"] = (
                f"{r['reduction_mean_pct']:.1f} % [{r['reduction_lo_pct']:.1f}, {r['reduction_hi_pct']:.1f}], "
                f"wins {r['wins_pct']:.0f} %"
            )
        out.append(entry)
    return pd.DataFrame(out)


def sweep_report(rows: pd.DataFrame, timing: str, value: str = "total_s") -> list[str]:
    """Markdown lines of the end-of-run summary: the means table in hours (or the unit the data calls
    for) and the paired table."""
    from fedsim.stats import time_unit

    seconds, unit = time_unit(rows[value])
    table = summary_table(rows, value)
    schemes = [s for s in table.columns if s in set(rows["scheme"])]
    table[schemes] = table[schemes] / seconds
    drops = rows.groupby("point")["drop"].nunique()
    lines = [
        f"## Mean total delay [{unit}] per scheme ({int(drops.min())} drops per point; timing: {timing}; "
        "finite drops; proposed_vs_a_pct = reduction of the means)",
        "",
        to_markdown(table),
        "",
    ]
    lines += [decisions_line(rows), ""]
    if "rank_flip_share" in rows:
        lines += uncertainty_lines(rows, seconds, unit)
    paired = paired_summary(rows, value)
    if not paired.empty:
        lines += [
            "## Proposed vs each baseline on the same drops: mean per-drop delay reduction "
            "100 (1 - T_proposed / T_baseline) [95 % t-CI], share of drops where proposed is faster",
            "",
            to_markdown(paired),
            "",
        ]
    return lines


def uncertainty_lines(rows: pd.DataFrame, seconds: float, unit: str) -> list[str]:
    """How sure the decisions are, given how sure E(r) is (``training.e_draws``): per point and scheme the
    share of draws of E(r) from its seeds whose chosen rank differs, and the mean 5-95 % range of the
    predicted delay."""
    axes = axis_columns(rows)
    keys = [*axes, "scheme"] if axes else ["scheme"]
    table = rows.groupby(keys, sort=True).agg(
        rank_flip_pct=("rank_flip_share", lambda v: 100 * float(np.mean(v))),
        delay_p05=("analytic_total_p05_s", lambda v: float(np.mean(v)) / seconds),
        delay_p95=("analytic_total_p95_s", lambda v: float(np.mean(v)) / seconds),
    ).reset_index()
    table = table.rename(columns={"delay_p05": f"delay_p05_{unit}", "delay_p95": f"delay_p95_{unit}"})
    draws = int(rows["e_draws"].iloc[0])
    return [
        f"## How sure: E(r) drawn from its seeds ({draws} draws per task; one seed's E(r) per rank, independently)",
        "",
        "rank_flip_pct: share of draws whose chosen rank differs from the row's (mean-E(r)) rank; delay_p05 / "
        "delay_p95: mean over drops of the 5 % and 95 % quantiles of the predicted delay (eq. 17) over the draws.",
        "",
        to_markdown(table),
        "",
    ]


def decisions_line(rows: pd.DataFrame) -> str:
    """Where E(r) came from, and the LoRA rank and cut the proposed scheme chose (share of its rows)."""
    sources = sorted(set(rows["rounds_source"].astype(str))) if "rounds_source" in rows else ["unknown"]
    text = f"E(r), the global rounds to the target per LoRA rank, from: {', '.join(sources)}."
    mine = rows[rows["scheme"] == "proposed"] if "scheme" in rows else rows.iloc[:0]
    if len(mine) and {"rank", "cut_mean"} <= set(mine.columns):

        def shares(column: str) -> str:
            counts = mine[column].value_counts(normalize=True).sort_index()
            return ", ".join(f"{k:g} ({100 * v:.0f} %)" for k, v in counts.items())

        text += (
            f" Proposed chose rank {shares('rank')}; mean cut {shares('cut_mean')} of its {len(mine)} rows."
        )
    return text


def _cell(value) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
    return str(value)


def to_markdown(table: pd.DataFrame, align: list[str] | None = None) -> str:
    """A GitHub markdown table (``DataFrame.to_markdown``): each row's values as ``_cell`` writes them
    (text as is), numeric columns right-aligned unless ``align`` gives each column's alignment."""
    header = [str(c) for c in table.columns]
    cells = pd.DataFrame([[_cell(v) for v in row.tolist()] for _, row in table.iterrows()], columns=header)
    if align is None:
        align = ["right" if pd.api.types.is_numeric_dtype(dtype) else "left" for dtype in table.dtypes]
    return cells.to_markdown(index=False, disable_numparse=True, colalign=align)
