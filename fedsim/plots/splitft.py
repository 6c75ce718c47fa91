"""SplitFT study figure: validation perplexity vs simulated time per arm (one panel per ``vary`` value) and,
below, each client's cut per round in the adaptive arms; and the study's markdown table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedsim.plots.style import plt
from fedsim.stats import time_unit


def splitft_figure(curve: pd.DataFrame, cuts: pd.DataFrame, target_ppl: float | None = None):
    """Top row: val PPL vs simulated time, one line per arm, one panel per value of the varied field
    (e.g. the Dirichlet alpha). Bottom row: cut per client vs round for the arms whose cuts change."""
    data = curve.dropna(subset=["val_ppl"])
    key = "dirichlet_alpha" if "dirichlet_alpha" in data and data["dirichlet_alpha"].nunique() > 1 else None
    values = sorted(data[key].unique()) if key else [None]
    fig, axes = plt.subplots(2, len(values), figsize=(2.6 * len(values) + 1.0, 4.8), squeeze=False)
    scale, unit = time_unit(data["sim_time_s"].to_numpy())
    arms = list(dict.fromkeys(data["arm"]))
    colors = {arm: f"C{i}" for i, arm in enumerate(arms)}
    for col, value in enumerate(values):
        top, bottom = axes[0, col], axes[1, col]
        part = data if key is None else data[data[key] == value]
        for arm, line in part.groupby("arm", sort=False):
            line = line.sort_values("sim_time_s")
            top.plot(
                line["sim_time_s"] * scale, line["val_ppl"], marker="o", ms=3, color=colors[arm], label=arm
            )
        if target_ppl:
            top.axhline(target_ppl, color="grey", linestyle=":", linewidth=1)
        top.set_title(f"{key} = {value:g}" if key else "")
        top.set_xlabel(f"Simulated time [{unit}]")
        c = cuts if key is None else cuts[cuts[key] == value]
        moving = [arm for arm, g in c.groupby("arm", sort=False) if g["cut"].nunique() > 1]
        for arm in moving[:1]:
            for client, g in c[c["arm"] == arm].groupby("client"):
                bottom.step(g["round"], g["cut"], where="post", label=f"client {client}")
            bottom.set_title(arm, fontsize="small")
        bottom.set_xlabel("Global round")
    axes[0, 0].set_ylabel("Validation perplexity")
    axes[1, 0].set_ylabel("Cut (blocks on the client)")
    axes[0, -1].legend(frameon=False, fontsize="small")
    if axes[1, -1].lines:
        axes[1, -1].legend(frameon=False, fontsize="small")
    fig.tight_layout()
    return fig


def splitft_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per run: arm, varied values, final val / test PPL, BLEU, ROUGE-L, time to target, bits, cuts."""
    columns = ["arm", "dirichlet_alpha", "final_val_ppl", "test_ppl", "bleu", "rouge_l", "sim_time_to_target_s",
               "sim_total_s", "bits_up", "bits_down", "cuts_end", "cut_changes", "wall_s"]  # fmt: skip
    return summary[[c for c in columns if c in summary.columns]]


def splitft_seeds_figure(curve: pd.DataFrame, cuts: pd.DataFrame, groups: list[str]):
    """A SplitFT study repeated over seeds, one column per group (e.g. IID and length-Dirichlet). Top row: val
    PPL vs simulated time, per arm the mean over seeds at each evaluation (thin lines: each seed). Below, one
    row per arm whose cuts move: each client's cut per round on the lowest seed."""
    data = curve.dropna(subset=["val_ppl"])
    keys = list(data[groups].drop_duplicates().sort_values(groups).itertuples(index=False, name=None)) or [()]
    arms = list(dict.fromkeys(data["arm"]))
    colors = {arm: f"C{i}" for i, arm in enumerate(arms)}
    moving = [a for a in arms if not cuts.empty and cuts[cuts["arm"] == a].groupby("run")["cut"].nunique().max() > 1]
    rows = 1 + len(moving)
    fig, axes = plt.subplots(rows, len(keys), figsize=(3.4 * len(keys) + 0.8, 2.7 + 1.6 * len(moving)),
                             squeeze=False)  # fmt: skip
    scale, unit = time_unit(data["sim_time_s"].to_numpy())
    for col, key in enumerate(keys):
        sel = np.ones(len(data), dtype=bool)
        for g, v in zip(groups, key, strict=True):
            sel &= (data[g] == v).to_numpy()
        part, top = data[sel], axes[0, col]
        for arm, runs in part.groupby("arm", sort=False):
            for _, run in runs.groupby("run"):
                top.plot(run["sim_time_s"] * scale, run["val_ppl"], color=colors[arm], alpha=0.25, linewidth=0.7)
            mean = runs.groupby("step")[["sim_time_s", "val_ppl"]].mean()
            n = runs["run"].nunique()
            top.plot(mean["sim_time_s"] * scale, mean["val_ppl"], marker="o", ms=2.5, color=colors[arm],
                     label=f"{arm} ({n} seed{'s' * (n > 1)})")  # fmt: skip
        top.set_yscale("log")
        top.set_title(", ".join(f"{g} = {v}" for g, v in zip(groups, key, strict=True)), fontsize="small")
        for row, arm in enumerate(moving, start=1):
            ax = axes[row, col]
            c = cuts[cuts["arm"] == arm]
            for g, v in zip(groups, key, strict=True):
                c = c[c[g] == v]
            if not c.empty:
                first = c[c["seed"] == c["seed"].min()] if "seed" in c else c
                for client, line in first.groupby("client"):
                    ax.step(line["round"], line["cut"], where="post", label=f"client {client}")
            ax.set_ylabel(f"{arm}\ncut", fontsize="small")
        top.set_xlabel(f"Simulated time [{unit}]")
        if moving:
            axes[-1, col].set_xlabel("Global round")
    axes[0, 0].set_ylabel("Validation perplexity")
    axes[0, -1].legend(frameon=False, fontsize="x-small")
    if moving and axes[1, -1].lines:
        axes[1, -1].legend(frameon=False, fontsize="x-small", ncol=2)
    fig.tight_layout()
    return fig
