"""Figures and tables drawn only from a results folder's saved rows (never from objects in memory)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from fedsim.atomic import atomic_write_csv, atomic_write_text
from fedsim.errors import InputError
from fedsim.experiments.montecarlo.summary import axis_columns, to_markdown
from fedsim.experiments.study.tables import scenario_json
from fedsim.plots.cdf import delay_cdf
from fedsim.plots.convergence import convergence_figure, table4
from fedsim.plots.decisions import breakdown_figure, decisions_figure
from fedsim.plots.delay import curve_stats, delay_vs_axis
from fedsim.plots.style import paper_style, save
from fedsim.stats import paired_table

__all__ = ["make_figures"]


def _outputs(root: Path) -> dict:
    path = root / "scenario.json"
    if not path.exists():
        raise InputError(f"{root}: not a results folder (no scenario.json); run `fedsim run` first")
    return json.loads(path.read_text(encoding="utf-8")).get("outputs", {})


def _sweep_figures(root: Path, outputs: dict, formats: list[str]) -> list[Path]:
    rows = pd.read_parquet(root / "rows.parquet")
    if rows.empty:
        return []
    figures = root / "figures"
    made: list[Path] = []
    wanted = outputs.get("figures", ["delay", "decisions", "breakdown"])
    axes = axis_columns(rows)
    axis = outputs.get("x_axis") or (axes[0] if axes else None)
    if axis is not None and axis not in rows.columns:
        raise InputError(f"outputs.x_axis: {axis!r} is not a swept axis (swept: {', '.join(axes) or 'none'})")
    swept = axis is not None and rows[axis].nunique() > 1
    x = dict(
        axis=axis if swept else None,
        x_label=outputs.get("x_label"),
        x_scale=outputs.get("x_scale", 1.0),
        x_dbm=outputs.get("x_dbm", False),
        title=outputs.get("title"),
    )
    if swept and "delay" in wanted:
        fig = delay_vs_axis(
            rows,
            stat=outputs.get("stat", "mean"),
            y_log=outputs.get("y_log", True),
            x2_column=outputs.get("x2_column"),
            x2_label=outputs.get("x2_label"),
            note=outputs.get("note", ""),
            **x,
        )
        made += save(fig, figures / "delay_vs_axis", formats)
        atomic_write_csv(figures / "delay_vs_axis.csv", curve_stats(rows, axis))
        made.append(figures / "delay_vs_axis.csv")
    if "placement_cdf" in wanted or not swept:
        made += save(delay_cdf(rows, title=outputs.get("title")), figures / "delay_cdf", formats)
    paired = paired_table(rows, x["axis"])
    if not paired.empty:
        figures.mkdir(parents=True, exist_ok=True)
        atomic_write_csv(figures / "paired_vs_proposed.csv", paired)
        made.append(figures / "paired_vs_proposed.csv")
    has_columns = {"subchannels_main", "power_main_total_w", "delay_T1_s"} <= set(rows.columns)
    if has_columns and "decisions" in wanted:
        made += save(decisions_figure(rows, **x), figures / "decisions", formats)
    if has_columns and "breakdown" in wanted:
        made += save(breakdown_figure(rows, **x), figures / "breakdown", formats)
    return made


def _live_figures(root: Path, outputs: dict, formats: list[str]) -> list[Path]:
    live = root / "live"
    made: list[Path] = []
    figures = root / "figures"
    source = live / "curve.csv" if (live / "curve.csv").exists() else root / "records" / "curve.csv"
    if source.exists():
        curve = pd.read_csv(source)
        if "val_ppl" in curve and curve["val_ppl"].notna().any():
            target = (
                curve["target_ppl"].dropna().iloc[0]
                if "target_ppl" in curve and curve["target_ppl"].notna().any()
                else None
            )
            made += save(convergence_figure(curve, target), figures / "convergence", formats)
    if not (live / "arms_curve.csv").exists() and any(live.glob("*/summary.json")):
        # a SplitFT study committed run by run (its per-run folders, not the aggregates of a finished run)
        from fedsim.experiments.live.compare import collect, group_columns
        from fedsim.plots.splitft import splitft_seeds_figure

        data = collect(live)
        summary = data["summary"]
        if "seed" in summary.columns:
            groups = group_columns(summary)
            labels = summary[["run", "arm", *groups, "seed"]]
            curve = data["curve"].drop(columns=[c for c in labels.columns if c != "run"], errors="ignore")
            figure = splitft_seeds_figure(curve.merge(labels, on="run"), data["cuts"], groups)
            made += save(figure, figures / "splitft", formats)
    if (live / "arms_curve.csv").exists():  # SplitFT-style arms (fedsim.experiments.live.arms)
        from fedsim.plots.splitft import splitft_figure, splitft_table

        arms, cuts = pd.read_csv(live / "arms_curve.csv"), pd.read_csv(live / "arms_cuts.csv")
        if "seed" in arms.columns:  # repeated over seeds: mean curves, cut trajectories per moving arm
            from fedsim.experiments.live.compare import group_columns
            from fedsim.plots.splitft import splitft_seeds_figure

            figure = splitft_seeds_figure(arms, cuts, group_columns(arms))
        else:
            target = arms["target_ppl"].dropna().iloc[0] if arms["target_ppl"].notna().any() else None
            figure = splitft_figure(arms, cuts, target)
        made += save(figure, figures / "splitft", formats)
        table = splitft_table(pd.read_csv(live / "arms_summary.csv"))
        atomic_write_text(figures / "splitft_table.md", to_markdown(table) + "\n")
        made.append(figures / "splitft_table.md")
    if (live / "summary.csv").exists():
        table = table4(pd.read_csv(live / "summary.csv"))
        figures.mkdir(parents=True, exist_ok=True)
        atomic_write_csv(figures / "table4.csv", table)
        atomic_write_text(figures / "table4.md", to_markdown(table) + "\n")
        made += [figures / "table4.csv", figures / "table4.md"]
    return made


def _is_study(root: Path) -> bool:
    return (scenario_json(root) or {}).get("study") is not None


def make_figures(
    results_dir: str | Path, formats: list[str] | None = None, overrides: dict | None = None
) -> list[Path]:
    """Draw every figure and table the folder's rows support; returns the files written.

    ``overrides``: [outputs] fields to change for this drawing only (e.g. ``{"stat": "median"}``)."""
    root = Path(results_dir)
    outputs = {**_outputs(root), **(overrides or {})}
    formats = list(formats or outputs.get("formats") or ["png", "pdf"])
    made: list[Path] = []
    with paper_style():
        if _is_study(root):
            from fedsim.plots.study import study_figures

            return study_figures(root, formats)
        if (root / "rows.parquet").exists():
            made += _sweep_figures(root, outputs, formats)
        made += _live_figures(root, outputs, formats)
    return made
