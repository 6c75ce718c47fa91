"""Split-fed vs centralized (issue 22, ``results/splitfed_vs_centralized``): does splitting the model and
federating its client side cost validation PPL, at the FedsLLM cut and deeper cuts, on IID and non-IID data?
Read from the committed convergence records with the study's own table code; a study still running reads as
interim and its missing settings say so."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from fedsim.experiments.study.settings import data_label, setting_differences, setting_gaps
from fedsim.experiments.study.tables import (
    PLATEAU_EVALS,
    mean_std_text,
    planned_runs,
    scenario_json,
    study_rows,
    table_iv,
    table_iv_markdown,
)
from fedsim.report.common import (
    FLAT_PCT,
    GENERATED,
    ci_text,
    image,
    md_table,
    provenance,
    verdict,
)

FOLDER = "splitfed_vs_centralized"


def _setup(scenario: dict | None, rows: pd.DataFrame) -> str:
    """The training every run shares, from the committed scenario.json (and the rows)."""
    training = ((scenario or {}).get("study") or {}).get("training") or {}
    r = rows.iloc[0]
    alpha = training.get("lora_alpha", "?")
    scale = f"alpha = {alpha:g}r" if training.get("lora_alpha_policy") == "proportional" else f"alpha = {alpha}"
    every = int(training.get("eval_every", 0)) // max(int(r["local_iterations"]), 1)
    return (
        f"{r['model']} on E2E, LoRA rank {int(r['rank'])} ({scale}), "
        f"lr {r['lr']:g} with a {training.get('lr_schedule', '?')} schedule after "
        f"{training.get('warmup_steps', '?')} warm-up steps, K = {training.get('num_clients', '?')} clients, "
        f"b = {training.get('batch_size', '?')}, L = {training.get('seq_len', '?')}, I = {int(r['local_iterations'])}, "
        f"{int(r['steps'])} steps; validation PPL every {every} global rounds on the first "
        f"{training.get('eval_samples', '?')} validation examples"
    )


def gap_section(rows: pd.DataFrame, planned_settings: list[tuple] | None) -> list[str]:
    gaps = setting_gaps(rows)
    table = [
        [g.cut, g.data, f"{g.split_fed_seeds}/{g.centralized_seeds}", mean_std_text(g.split_fed_mean, g.split_fed_std),
         mean_std_text(g.centralized_mean, g.centralized_std), ci_text(g.gap_mean, g.gap_lo, g.gap_hi),
         ci_text(g.gap_pct_mean, g.gap_pct_lo, g.gap_pct_hi, digits=1), verdict(g.gap_pct_excludes_0, g.gap_pct_lo)]
        for g in gaps.itertuples()
    ]  # fmt: skip
    have = {(int(g.cut), g.partition, float(g.dirichlet_alpha)) for g in gaps.itertuples()}
    missing = [s for s in planned_settings or [] if s not in have]
    lines = [
        "## The gap per cut and partition", "",
        f"Plateau PPL = the mean of a run's last {PLATEAU_EVALS} validation evaluations. Mean ± std over seeds; "
        "the gap split-fed − centralized is paired by seed (centralized pools the data and has no cut, so its "
        "runs are the reference of every setting), in PPL and in % of the centralized run, each with its 95 % "
        "Student-t CI over the paired seeds.", "",
        md_table(["cut", "data", "seeds (SF/C)", "SF plateau PPL", "C plateau PPL", "SF − C [95 % CI]",
                  "SF − C in % [95 % CI]", "verdict"], table), "",
    ]  # fmt: skip
    if missing:
        lines += [
            "Not run yet (no record committed, nothing claimed): "
            + ", ".join(f"cut {c} on {data_label(p, a)}" for c, p, a in missing)
            + ".",
            "",
        ]
    return lines


def differences_section(rows: pd.DataFrame) -> list[str]:
    diffs = setting_differences(rows)
    if diffs.empty:
        return []
    table = [
        [d.comparison, d.data, d.seeds, ci_text(d.mean, d.lo, d.hi, digits=1), verdict(d.excludes_0, d.lo)]
        for d in diffs.itertuples()
    ]
    return [
        "## Do the cut and the partition matter among split-fed runs?", "",
        "Split-fed plateau PPL, paired by seed, in % of the reference run: each deeper cut against cut "
        f"{int(rows['cut'].min())} on the same data, and the non-IID partition against IID at the same cut. "
        "Separate 95 % intervals, not corrected for multiple comparisons.", "",
        md_table(["comparison", "at", "paired seeds", "difference in % [95 % CI]", "verdict"], table), "",
    ]  # fmt: skip


def per_seed_section(rows: pd.DataFrame) -> list[str]:
    """Every run's plateau PPL, one row per seed: what the paired gaps and their CIs are computed from."""
    central = rows.training_scheme == "centralized"
    ordered = pd.concat([rows[central], rows[~central].sort_values(["partition", "dirichlet_alpha", "cut"])])
    label = ordered.apply(
        lambda r: "centralized" if r.training_scheme == "centralized"
        else f"cut {int(r.cut)}, {data_label(r.partition, r.dirichlet_alpha)}", axis=1
    )  # fmt: skip
    wide = ordered.assign(run=label).pivot_table(index="seed", columns="run", values="plateau_val_ppl", sort=False)
    wide = wide.reindex(columns=list(dict.fromkeys(label)))  # centralized, then by data and cut (2 before 15)
    table = [[int(seed), *(f"{v:.3f}" if math.isfinite(v) else "-" for v in values)]
             for seed, values in zip(wide.index, wide.to_numpy(float), strict=True)]  # fmt: skip
    return ["### Plateau PPL per seed", "", md_table(["seed", *wide.columns], table), ""]


def noise_lines(rows: pd.DataFrame) -> list[str]:
    central = rows[rows.training_scheme == "centralized"]["plateau_val_ppl"].to_numpy(float)
    change = rows["smoothed_last20_change_pct"].to_numpy(float)
    flat = int(np.sum(np.abs(change) < FLAT_PCT))
    noise = rows["eval_noise_pct"].to_numpy(float)
    lines = ["## The noise these gaps stand against", ""]
    if central.size > 1:
        lines.append(
            f"- Seed to seed, centralized plateau PPL varies by {100 * np.std(central, ddof=1) / np.mean(central):.1f} % "
            f"(std / mean over {central.size} seeds): a gap smaller than that needs many seeds to resolve, "
            "however it is paired."
        )
    lines.append(
        f"- Trained to a plateau? {flat} of {len(rows)} runs meet the criterion (smoothed validation PPL changes "
        f"by less than {FLAT_PCT:g} % over the last 20 % of steps); the change ranges {np.nanmin(change):.2f} to "
        f"{np.nanmax(change):.2f} % (positive: still improving), so the plateau is the level after the study's "
        "steps" + (", not a converged one." if flat < len(rows) else ".")
    )
    if np.isfinite(noise).any():
        lines.append(
            f"- Evaluation noise (|PPL of the two interleaved halves| / PPL at the final evaluation, {len(noise)} "
            f"runs): median {np.nanmedian(noise):.1f} %, range {np.nanmin(noise):.1f} to {np.nanmax(noise):.1f} %. "
            "Every run is scored on the same examples, so this bounds how far another subset could read, not "
            "how far two runs on this one are apart ([the measurement](rank-study.md))."
        )
    return lines + [""]


def _planned_settings(scenario: dict | None) -> list[tuple] | None:
    """The split-fed settings (cut, partition, Dirichlet concentration) the committed scenario.json plans."""
    if scenario is None:
        return None
    sweep = (scenario.get("sweep") or {}).get("axes") or {}
    keys = ["study.training.scheme", "study.training.cut", "study.training.partition",
            "study.training.dirichlet_alpha"]  # fmt: skip
    if not all(k in sweep for k in keys):
        return None
    planned = zip(*(sweep[k] for k in keys), strict=True)
    return sorted({(int(c), p, float(a)) for s, c, p, a in planned if s == "split_fed"})


def page(results: Path) -> str:
    folder = results / FOLDER
    lines = [GENERATED, "", "# Split-fed vs centralized: what the cut and the data partition cost", "",
             "Does splitting the model and federating its client side cost validation perplexity, at the FedsLLM "
             "cut (2 of SmolLM2-135M's 30 blocks) and deeper (8 and 15), on IID data and on SplitFT's "
             "length-Dirichlet partition? Compared on the plateau (the mean of the last evaluations, not one "
             "final checkpoint), paired by seed, with a CI over seeds. How to run it: "
             "[Convergence and SplitFT studies](../guides/studies.md).", ""]  # fmt: skip
    rows = study_rows(folder) if (folder / "records").is_dir() else pd.DataFrame()
    if rows.empty:
        lines += ["`scenarios/splitfed_vs_centralized.toml` has no committed records yet: nothing is claimed.", ""]
        return "\n".join(lines).rstrip() + "\n"
    scenario = scenario_json(folder)
    planned = planned_runs(scenario)
    interim = bool(planned and len(rows) < planned)
    reused = int(rows["source"].str.contains("reused from", regex=False).sum())
    lines += [
        f"Source: {provenance(folder, results)}.", "",
        f"Setup: {_setup(scenario, rows)}. Runs committed: {len(rows)}"
        + (f" of {planned}" if planned else "")
        + f" ({reused} of them the rank study's own runs of the same configuration, copied with their source)."
        + (" **Interim: not every run is in; nothing below is a conclusion until it is.**" if interim else ""),
        "",
    ]  # fmt: skip
    lines += gap_section(rows, _planned_settings(scenario))
    if (folder / "figures" / f"{FOLDER}.png").is_file():
        lines += [image(f"{FOLDER}/{FOLDER}.png", "split-fed vs centralized: curves and the paired gap"), ""]
    lines += per_seed_section(rows)
    lines += differences_section(rows)
    lines += noise_lines(rows)
    lines += ["## Table IV", "",
              "Every metric the runs recorded; mean ± std over seeds; SF − C paired by seed with its 95 % t-CI "
              "(final val PPL is one checkpoint: the plateau above is the comparison).", "",
              table_iv_markdown(table_iv(rows)), ""]  # fmt: skip
    return "\n".join(lines).rstrip() + "\n"
