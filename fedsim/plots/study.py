"""Figures of a convergence study, from its saved records and rows: Fig. 3 analog (validation PPL vs steps
per LoRA rank, mean and min-max band over seeds, one column per training scheme, its lower panel the second
half of the steps on a linear axis) and Fig. 4 analog (global rounds to reach a target PPL vs the target,
per rank, mean with the seeds' min-max as error bars)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from fedsim.experiments.study.tables import (
    planned_runs,
    scenario_json,
    study_curves,
    study_rows,
    varied_settings,
)
from fedsim.plots.delay import plain_log_axis
from fedsim.plots.style import add_caption, plt

_SCHEME_TITLES = {"split_fed": "Split-federated (FedsLLM)", "centralized": "Centralized LoRA"}


def fig3_curves(curves: pd.DataFrame, rows: pd.DataFrame):
    """Validation PPL vs local iterations; one line per rank (mean over seeds), band = min..max of seeds.

    Top row: every step, log axis. Bottom row: the second half of the steps on a linear axis, where the
    ranks' plateaus (a few percent apart) lie; on the top row's log axis from PPL ~20 they would look equal.
    """
    schemes = [s for s in ("split_fed", "centralized") if s in set(curves["training_scheme"])]
    fig, axes = plt.subplots(2, len(schemes), figsize=(3.5 * len(schemes), 4.9), sharey="row", squeeze=False,
                             height_ratios=(1.0, 0.85))  # fmt: skip
    ranks = sorted(curves["rank"].unique())
    colors = plt.cm.viridis(np.linspace(0.05, 0.85, len(ranks)))
    start = int(curves["step"].max()) // 2
    for top, bottom, scheme in zip(axes[0], axes[1], schemes, strict=True):
        part = curves[curves.training_scheme == scheme]
        for rank, color in zip(ranks, colors, strict=True):
            g = part[part["rank"] == rank].groupby("step")["val_ppl"]
            if g.ngroups == 0:
                continue
            stats = g.agg(["mean", "min", "max", "count"])
            late = stats[stats.index >= start]
            top.plot(stats.index, stats["mean"], color=color, marker="o", markersize=3,
                     label=f"r = {rank} (n={int(stats['count'].max())})")  # fmt: skip
            bottom.plot(late.index, late["mean"], color=color, marker="o", markersize=2.5)
            for ax, s in ((top, stats), (bottom, late)):
                ax.fill_between(s.index, s["min"], s["max"], color=color, alpha=0.18, linewidth=0)
        top.set_title(_SCHEME_TITLES.get(scheme, scheme))
        top.set_yscale("log")
        plain_log_axis(top.yaxis)
        top.legend(frameon=False, fontsize=7)  # each panel its own: the schemes may have different seed counts
        bottom.set_title(f"from step {start} (linear axis)", fontsize=8)
        bottom.set_xlabel("Local iterations (steps)")
    axes[0][0].set_ylabel("Validation perplexity (log)")
    axes[1][0].set_ylabel("Validation perplexity")
    _finish(fig, _setting(rows) + " Line: mean over seeds; band: min-max over seeds (n = seeds).")
    return fig


def fig_lr_sweep(curves: pd.DataFrame, rows: pd.DataFrame):
    """A learning-rate sweep: validation PPL vs local iterations, one panel per rank, one line per lr (mean over
    seeds); the lr the sweep's rule chose (lowest plateau PPL, ``chosen_lr_table``) drawn thick."""
    from fedsim.experiments.study.tables import chosen_lr_table

    chosen = {(c.training_scheme, c.rank): c.chosen_lr for c in chosen_lr_table(rows).itertuples()}
    keys = sorted(chosen)
    fig, axes = plt.subplots(1, len(keys), figsize=(2.6 * len(keys), 2.8), sharey=True, squeeze=False)
    lrs = sorted(curves["lr"].unique())
    colors = dict(zip(lrs, plt.cm.plasma(np.linspace(0.05, 0.85, len(lrs))), strict=True))
    for ax, (scheme, rank) in zip(axes[0], keys, strict=True):
        part = curves[(curves.training_scheme == scheme) & (curves["rank"] == rank)]
        for lr in sorted(part["lr"].unique()):
            mean = part[part["lr"] == lr].groupby("step")["val_ppl"].mean()
            best = lr == chosen[(scheme, rank)]
            ax.plot(mean.index, mean.to_numpy(), color=colors[lr], marker="o", markersize=2.5,
                    linewidth=2.2 if best else 1.0, label=f"lr {lr:g}" + (" (chosen)" if best else ""))  # fmt: skip
        ax.set_title(f"r = {rank}" + ("" if scheme == "split_fed" else f", {scheme}"))
        ax.set_xlabel("Local iterations (steps)")
        ax.set_yscale("log")
        plain_log_axis(ax.yaxis)
        ax.legend(frameon=False, fontsize=6)
    axes[0][0].set_ylabel("Validation perplexity (log)")
    _finish(fig, _setting(rows) + " Line: mean over seeds per lr; thick: the lr with the lowest plateau PPL.")
    return fig


def fig4_rounds(table: pd.DataFrame, rows: pd.DataFrame, scheme: str = "split_fed"):
    """Global rounds to reach each target PPL vs the target, per rank; error bars = min..max over seeds;
    targets not reached by every seed of a rank are drawn hollow at the mean of the seeds that did."""
    part = table[table.training_scheme == scheme]
    fig, ax = plt.subplots(figsize=(3.6, 2.8))
    ranks = sorted(part["rank"].unique())
    colors = plt.cm.viridis(np.linspace(0.05, 0.85, len(ranks)))
    offsets = np.linspace(-0.012, 0.012, len(ranks)) if len(ranks) > 1 else [0.0]
    for rank, color, off in zip(ranks, colors, offsets, strict=True):
        g = part[(part["rank"] == rank) & (part["reached"] > 0)].sort_values("target_ppl")
        if g.empty:
            continue
        x = g["target_ppl"].to_numpy() * (1 + off)
        y = g["rounds_mean"].to_numpy()
        err = np.vstack([y - g["rounds_min"].to_numpy(), g["rounds_max"].to_numpy() - y])
        ax.errorbar(x, y, yerr=err, color=color, marker="o", markersize=3, capsize=2, label=f"r = {rank}")
        partial = (g["reached"] < g["runs"]).to_numpy()
        if partial.any():
            ax.plot(x[partial], y[partial], linestyle="none", marker="o", markersize=7, markerfacecolor="white",
                    markeredgecolor=color)  # fmt: skip
    ax.set_xlabel("Target validation perplexity")
    ax.set_ylabel("Global rounds to reach target")
    ax.invert_xaxis()  # harder targets to the right
    ax.legend(frameon=False, fontsize=7)
    ax.set_title(_SCHEME_TITLES.get(scheme, scheme))
    _finish(
        fig, _setting(rows) + " Marker: mean over seeds; bars: min-max; hollow: not every seed reached it."
    )
    return fig


def fig_setting_gaps(curves: pd.DataFrame, rows: pd.DataFrame):
    """A study of split-fed settings against centralized training (``setting_gaps``): (a) validation PPL vs
    steps, mean over seeds per setting (colour: cut; line style: data partition) and centralized; (b) the
    seed-paired plateau-PPL gap split-fed − centralized in % of centralized, per cut and partition, with its
    95 % t-CI over seeds."""
    from fedsim.experiments.study.settings import data_label, setting_gaps

    gaps = setting_gaps(rows)
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.2, 2.9))
    cuts = sorted(gaps["cut"].unique())
    colors = dict(zip(cuts, plt.cm.viridis(np.linspace(0.05, 0.8, len(cuts))), strict=True))
    datas = list(dict.fromkeys(gaps["data"]))
    styles = dict(zip(datas, ["-", "--", ":", "-."], strict=False))
    start = int(curves["step"].max()) // 4  # the first quarter (PPL 20 -> 5) would hide the gaps
    curves = curves[curves["step"] >= start]
    split = curves[curves.training_scheme == "split_fed"]
    for (cut, partition, alpha), g in split.groupby(["cut", "partition", "dirichlet_alpha"], sort=True):
        data = data_label(partition, alpha)
        mean = g.groupby("step")["val_ppl"].mean()
        left.plot(mean.index, mean.to_numpy(), color=colors[cut], linestyle=styles.get(data, "-"), linewidth=1.1,
                  label=f"cut {cut}, {data} (n={g['seed'].nunique()})")  # fmt: skip
    central = curves[curves.training_scheme == "centralized"]
    if not central.empty:
        mean = central.groupby("step")["val_ppl"].mean()
        left.plot(mean.index, mean.to_numpy(), color="black", linewidth=1.4,
                  label=f"centralized (n={central['seed'].nunique()})")  # fmt: skip
    left.set_xlabel("Local iterations (steps)")
    left.set_ylabel("Validation perplexity")
    left.set_title(f"(a) Mean over seeds, from step {start}")
    left.legend(frameon=False, fontsize=6)
    offsets = np.linspace(-0.15, 0.15, len(datas)) if len(datas) > 1 else [0.0]
    for data, off in zip(datas, offsets, strict=True):
        g = gaps[gaps["data"] == data].sort_values("cut")
        x = np.searchsorted(cuts, g["cut"].to_numpy()) + off
        y = g["gap_pct_mean"].to_numpy(float)
        err = np.vstack([y - g["gap_pct_lo"].to_numpy(float), g["gap_pct_hi"].to_numpy(float) - y])
        seeds = "/".join(str(int(n)) for n in g["gap_pct_seeds"])
        right.errorbar(x, y, yerr=np.nan_to_num(err), linestyle="none", marker="o", markersize=4, capsize=3,
                       color="0.2", markerfacecolor="white" if data != "IID" else "0.2",
                       label=f"{data} (paired seeds {seeds})")  # fmt: skip
    right.axhline(0.0, color="0.5", linewidth=0.8)
    right.set_xticks(range(len(cuts)), [f"cut {c}" for c in cuts])
    right.set_xlim(-0.6, len(cuts) - 0.4)
    right.set_ylabel("Plateau PPL gap SF − C (%)")
    right.set_title("(b) Gap paired by seed, 95 % t-CI")
    right.legend(frameon=False, fontsize=6)
    _finish(fig, _setting(rows) + " Plateau: mean of the last 3 validation evaluations; (b) bars: 95 % Student-t "
            "CI over the seed-paired gaps (none with one seed).")  # fmt: skip
    return fig


def _finish(fig, caption: str) -> None:
    """Lay the panels out above a caption line (wrapped to the figure's width)."""
    fig.tight_layout()  # the caption hangs below the figure's bottom edge (saved with a tight box)
    add_caption(fig, caption, width=int(fig.get_figwidth() * 20))


def _setting(rows: pd.DataFrame) -> str:
    r = rows.iloc[0]
    seeds = rows["seed"].nunique()
    by_rank = rows.groupby("rank")["lr"].unique()
    if rows["lr"].nunique() <= 1:
        lr = f"lr {r['lr'] if math.isfinite(r['lr']) else float('nan'):g}"
    elif by_rank.map(len).max() == 1:  # one lr per rank (a study's lr_by_rank)
        lr = "lr by rank " + ", ".join(f"{rank}: {lrs[0]:g}" for rank, lrs in by_rank.items())
    else:
        lr = "lr " + " / ".join(f"{v:g}" for v in sorted(rows["lr"].unique()))
    return (f"{r['model']}, E2E, {lr}, I = {int(r['local_iterations'])}, {int(rows['steps'].max())} steps, "
            f"{seeds} seed(s).")  # fmt: skip


def _rows_complete(root: Path, rows: pd.DataFrame, records: int) -> bool:
    """Whether a study folder's rows file holds the study: it names each row's record, every one of them
    exists, and it has every run its scenario.json plans (without one: a row per record). Records beyond
    those (the convergence study's learning-rate checks) are not the study's rows, so the records' count
    alone cannot decide."""
    if rows.empty or "record" not in rows.columns:
        return False
    if not all((root / str(r)).is_file() for r in rows["record"]):
        return False
    planned = planned_runs(scenario_json(root)) or records
    return len(rows) >= planned


def study_figures(root: Path, formats: list[str]) -> list[Path]:
    """Fig. 3 and Fig. 4 analogs of a study's results folder (``tables/`` must exist: ``fedsim run`` writes
    it)."""
    from fedsim.plots.style import save

    rows = pd.read_parquet(root / "rows.parquet") if (root / "rows.parquet").is_file() else pd.DataFrame()
    records = len(list((root / "records").glob("*.json")))
    from_records = records > 0 and not _rows_complete(root, rows, records)
    if from_records:  # a study committed record by record: no rows file, or one older than its records
        rows = study_rows(root)
    if rows.empty:
        return []
    curves_path = root / "tables" / "curves.csv"  # written with the tables; older folders: from the records
    curves = study_curves(root, rows) if from_records or not curves_path.is_file() else pd.read_csv(curves_path)
    if rows.groupby(["training_scheme", "rank"])["lr"].nunique().max() > 1:  # a learning-rate sweep
        return save(fig_lr_sweep(curves, rows), root / "figures" / "lr_sweep_val_ppl", formats)
    if varied_settings(rows) and "centralized" in set(rows["training_scheme"]):  # settings vs centralized
        return save(fig_setting_gaps(curves, rows), root / "figures" / "splitfed_vs_centralized", formats)
    made = save(fig3_curves(curves, rows), root / "figures" / "fig3_val_ppl", formats)
    table_path = root / "tables" / "rounds_to_target.csv"
    if table_path.exists() and table_path.read_text(encoding="utf-8").strip():  # empty: a study without targets
        table = pd.read_csv(table_path)
        for scheme in sorted(set(table["training_scheme"])):
            if table[table.training_scheme == scheme]["reached"].sum():
                made += save(
                    fig4_rounds(table, rows, scheme), root / "figures" / f"fig4_rounds_{scheme}", formats
                )
    return made
