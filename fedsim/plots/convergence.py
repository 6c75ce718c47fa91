"""Convergence curves per LoRA rank (Fig. 3/4 style): validation perplexity vs local steps and vs
simulated time, and Table IV (rounds and simulated time to the target, final validation and test
perplexity, BLEU and ROUGE-L on the test MRs when the run measured them)."""

from __future__ import annotations

import pandas as pd

from fedsim.plots.style import plt


def convergence_figure(curve: pd.DataFrame, target_ppl: float | None = None):
    """Two panels: val PPL vs step, val PPL vs simulated time [s]; one line per rank.

    ``curve`` columns: rank, step, sim_time_s, val_ppl (rows without val_ppl are ignored).
    """
    data = curve.dropna(subset=["val_ppl"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.0, 2.6), sharey=True)
    for rank, part in data.groupby("rank", sort=True):
        part = part.sort_values("step")
        left.plot(part["step"], part["val_ppl"], marker="o", label=f"r = {rank}")
        if "sim_time_s" in part and part["sim_time_s"].notna().any():
            right.plot(part["sim_time_s"], part["val_ppl"], marker="o", label=f"r = {rank}")
    for ax in (left, right):
        if target_ppl:
            ax.axhline(target_ppl, color="grey", linestyle=":", linewidth=1, label="target")
    left.set_xlabel("Local iterations (steps)")
    right.set_xlabel("Simulated time [s]")
    left.set_ylabel("Validation perplexity")
    left.legend(frameon=False)
    return fig


def table4(summary: pd.DataFrame) -> pd.DataFrame:
    """Table IV: one row per (model, rank) with rounds to target, simulated time, final val PPL, and test
    PPL / BLEU / ROUGE-L when those columns are present."""
    columns = [
        "model",
        "rank",
        "rounds_completed",
        "rounds_to_target",
        "target_ppl",
        "final_val_ppl",
        "test_ppl",
        "bleu",
        "rouge_l",
        "n_mrs",
        "sim_total_s",
        "converged",
    ]
    present = [c for c in columns if c in summary.columns]
    return summary[present].sort_values([c for c in ("model", "rank") if c in present]).reset_index(drop=True)
