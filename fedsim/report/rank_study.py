"""The rank study (issue 22) in its steps: the learning-rate sweep per rank (``results/rank_lr_sweep``), the
seeded comparison at each rank's chosen lr (``results/rank_study``) and the same trained to a plateau
(``results/rank_plateau``), recomputed from the committed convergence records with the study's own table
code, and the evaluation-noise measurement (``results/rank_study/eval_noise.csv``). A step without records
says so; nothing is claimed from it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from fedsim.experiments.study.tables import (
    chosen_lr_table,
    planned_runs,
    rank_differences,
    relative_targets_markdown,
    relative_targets_table,
    scenario_json,
    study_curves,
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


def sweep_section(results: Path) -> list[str]:
    folder = results / "rank_lr_sweep"
    rows = study_rows(folder) if (folder / "records").is_dir() else pd.DataFrame()
    lines = ["## Step 1: a learning rate per rank", ""]
    if rows.empty:
        return lines + ["No records of `scenarios/rank_lr_sweep.toml` are committed yet.", ""]
    chosen = chosen_lr_table(rows)
    lrs = sorted(rows["lr"].unique())
    table = []
    for c in chosen.itertuples():
        cells = [c.rank]
        for lr in lrs:
            value = float(chosen.loc[c.Index, f"plateau_ppl_lr{lr:g}"])
            cell = f"{value:.3f}" if np.isfinite(value) else "-"
            cells.append(f"**{cell}**" if lr == c.chosen_lr else cell)
        cells += [f"{c.chosen_lr:g}", "yes" if c.at_grid_edge else "no"]
        table.append(cells)
    noise = rows["eval_noise_pct"].to_numpy(float)
    seeds = sorted(rows["seed"].unique())
    lines += [
        f"Source: {provenance(folder, results)}.", "",
        f"{len(rows)} runs, split-fed, seed{'s' if len(seeds) > 1 else ''} {', '.join(str(s) for s in seeds)} "
        "(a seed the study itself never uses). The rule, fixed before the study: each rank takes the lr with "
        "the lowest plateau PPL (the mean of the last 3 validation evaluations), the smaller lr on a tie; "
        "while a rank's choice is the top of its grid, the next lr (x3) is added for that rank.", "",
        "Plateau validation PPL per rank and lr (bold: chosen; one run each, so no CI):", "",
        md_table(["rank", *(f"lr {lr:g}" for lr in lrs), "chosen lr", "at the grid's edge"], table), "",
        f"Evaluation noise of these runs (|PPL of the two interleaved halves| / PPL at the final evaluation): "
        f"median {np.nanmedian(noise):.1f} %, max {np.nanmax(noise):.1f} % over {len(noise)} runs. "
        f"{_margins(chosen, lrs)} With one seed per lr the seed-to-seed spread is not measured here, so margins "
        "of a few percent pick an lr without showing it is better.", "",
    ]  # fmt: skip
    if (folder / "figures" / "lr_sweep_val_ppl.png").is_file():
        lines += [image("rank_lr_sweep/lr_sweep_val_ppl.png", "lr sweep: val PPL per rank and lr"), ""]
    return lines


def _margins(chosen: pd.DataFrame, lrs) -> str:
    """How far each rank's chosen lr is ahead of its runner-up, in % of plateau PPL."""
    parts = []
    for c in chosen.itertuples():
        plateau = {lr: float(chosen.loc[c.Index, f"plateau_ppl_lr{lr:g}"]) for lr in lrs}
        others = [v for lr, v in plateau.items() if lr != c.chosen_lr and np.isfinite(v)]
        if others:
            parts.append(f"rank {c.rank}: {100 * (min(others) / plateau[c.chosen_lr] - 1):.1f} %")
        else:
            parts.append(f"rank {c.rank}: one lr only")
    return "The chosen lr's lead over the next best: " + ", ".join(parts) + "."


STEPS = {  # results folder -> the page's heading for it and what it adds to the step before
    "rank_study": ("## Step 2: E(r) over seeds at each rank's lr", ""),
    "rank_plateau": (
        "## Step 3: the same runs trained to a plateau",
        "Step 2 again at 128 steps (64 global rounds, twice as long), the cosine schedule stretched over them, "
        "with validation PPL every round, so that the runs can meet the plateau criterion (how many of step 2's "
        "runs did is stated above). Every other setting, the seeds and each rank's lr are step 2's.",
    ),
}


def _completeness(rows: pd.DataFrame, scenario: dict | None, planned: int | None) -> str:
    """The end of the "Runs committed" line: whether the tables are interim, and which schemes already have
    every run the study plans for them (a product sweep over schemes plans the same runs for each)."""
    if not planned or len(rows) >= planned:
        return "."
    sweep = (scenario or {}).get("sweep") or {}
    schemes = (sweep.get("axes") or {}).get("study.training.scheme") or []
    text = ". Until every run is in, the tables below are interim"
    if len(schemes) > 1 and sweep.get("mode", "product") == "product":
        per_scheme = planned // len(schemes)
        counts = rows.groupby("training_scheme").size()
        for scheme in (s for s in schemes if counts.get(s, 0) >= per_scheme):
            text += f"; {scheme} has all {per_scheme} of its planned runs, so its rows and their verdicts are final"
    return text + "."


def study_section(results: Path, name: str = "rank_study") -> list[str]:
    folder = results / name
    rows = study_rows(folder) if (folder / "records").is_dir() else pd.DataFrame()
    scenario = scenario_json(folder)
    planned = planned_runs(scenario)
    heading, adds = STEPS[name]
    lines = [heading, ""] + ([adds, ""] if adds else [])
    if rows.empty:
        return lines + [
            f"`scenarios/{name}.toml` (5 seeds x split-fed / centralized x ranks 1, 4, 16) has no committed "
            "records yet: nothing is claimed from it.",
            "",
        ]
    done = f"{len(rows)} of {planned}" if planned else f"{len(rows)}"
    pcts = ((scenario or {}).get("study") or {}).get("relative_targets_pct") or [2, 5, 10]
    curves = study_curves(folder, rows)
    lines += [
        f"Source: {provenance(folder, results)}.", "",
        f"Runs committed: {done}. Seeds per (scheme, rank): "
        + ", ".join(f"{s} r{r}: {n}" for (s, r), n in rows.groupby(["training_scheme", "rank"]).size().items())
        + _completeness(rows, scenario, planned),
        "",
        "### E(r) at targets relative to the plateau", "",
        "Target p % = the best plateau PPL any rank reaches (per scheme) x (1 + p/100); rounds interpolated "
        "in log PPL between evaluations; mean [95 % t-CI over seeds] (reached/runs).", "",
        relative_targets_markdown(relative_targets_table(curves, rows, pcts)), "",
        "### Table IV", "",
        "Mean ± std over seeds; SF = split_fed, C = centralized; SF − C paired by seed with its 95 % t-CI.", "",
        table_iv_markdown(table_iv(rows)), "",
    ]  # fmt: skip
    lines += findings(rows, curves, pcts, interim=bool(planned and len(rows) < planned))
    for fig in ("fig3_val_ppl", "fig4_rounds_split_fed"):
        if (folder / "figures" / f"{fig}.png").is_file():
            lines += [image(f"{name}/{fig}.png", f"{name.replace('_', ' ')}: {fig}"), ""]
    return lines


def findings(rows: pd.DataFrame, curves: pd.DataFrame, pcts, *, interim: bool) -> list[str]:
    """What the runs show, each statement with its seeds, its CI and whether the CI excludes 0: the rank
    against the largest rank (paired by seed), split-fed against centralized (Table IV's paired gap), whether
    the runs reached the plateau criterion, and the evaluation noise of the runs themselves."""
    diffs = rank_differences(curves, rows, pcts)
    head = "### What the runs show" + (" so far (interim: not every run is in)" if interim else "")
    table = [
        [d.training_scheme, f"r{d.rank} − r{d.versus_rank}", d.measure,
         f"{d.target_ppl:.3f}" if math.isfinite(d.target_ppl) else "-",
         f"{d.paired_seeds}" + (f" (+{d.unpaired_or_unreached} not reached)" if d.unpaired_or_unreached else ""),
         ci_text(d.diff_mean, d.diff_lo, d.diff_hi, digits=3 if d.measure == "plateau PPL" else 1),
         verdict(d.excludes_0, d.diff_lo)]
        for d in diffs.itertuples()
    ]  # fmt: skip
    lines = [
        head, "",
        "Each rank against the largest, paired by seed (the runs of one seed share data order and initial "
        "weights): difference in plateau PPL and in rounds to the plateau-relative targets above (interpolated), "
        "mean [95 % t-CI over the paired seeds]. A seed where either run never reached the target is left out. "
        f"The {len(diffs)} rows are separate 95 % intervals, not corrected for multiple comparisons: about one in "
        "20 excludes 0 by chance when nothing differs.",
        "",
        md_table(["scheme", "ranks", "measure", "target PPL", "paired seeds", "difference [95 % CI]", "verdict"],
                 table), "",
    ]  # fmt: skip
    gaps = table_iv(rows)
    said = []
    for g in gaps.itertuples():
        mean, lo, hi = g.gap_plateau_val_ppl, g.gap_plateau_val_ppl_lo, g.gap_plateau_val_ppl_hi
        excludes = math.isfinite(lo) and (lo > 0 or hi < 0)
        said.append(
            f"r{g.rank}: {ci_text(mean, lo, hi)} over {g.gap_plateau_val_ppl_seeds} paired seeds ({verdict(excludes, lo)})"
        )
    lines += ["**Split-fed − centralized plateau PPL** (paired by seed): " + "; ".join(said) + ".", ""]
    change = rows["smoothed_last20_change_pct"].to_numpy(dtype=float)
    flat = int(np.sum(np.abs(change) < FLAT_PCT))
    lines += [
        f"**Trained to a plateau?** {flat} of {len(rows)} runs meet the criterion (the smoothed validation PPL, a "
        f"trailing mean of 3 evaluations, changes by less than {FLAT_PCT:g} % over the last 20 % of the steps); "
        f"across the runs it changed by {np.nanmin(change):.2f} to {np.nanmax(change):.2f} % "
        "(positive: still improving)."
        + (" So 'plateau' here means the level after the study's steps, not a converged one."
           if flat < len(rows) else ""), "",
    ]  # fmt: skip
    noise = rows["eval_noise_pct"].to_numpy(dtype=float)
    if np.isfinite(noise).any():
        lines += [
            f"**Evaluation noise of the runs** (|PPL of the two interleaved halves| / PPL at the final evaluation, "
            f"{len(noise)} runs): median {np.nanmedian(noise):.1f} %, range {np.nanmin(noise):.1f} to "
            f"{np.nanmax(noise):.1f} %; the issue asks for under 1 %, which these subsets do not meet (see the "
            "measurement below).", "",
        ]  # fmt: skip
    return lines


def noise_section(results: Path) -> list[str]:
    path = results / "rank_study" / "eval_noise.csv"
    if not path.is_file():
        return []
    noise = pd.read_csv(path)
    if "order" not in noise:
        noise.insert(0, "order", "first")
    rows = [
        [
            r.order,
            r.model_state,
            int(r.examples),
            int(r.mrs),
            f"{r.halves_gap_pct:.1f} %",
            f"{r.mr_halves_gap_pct:.1f} %",
        ]
        for r in noise.itertuples()
    ]
    lines = [
        "## How many validation examples: the evaluation noise", "",
        "`python benchmarks/eval_noise.py`: the PPL gap between two halves of N validation examples, split by "
        "parity (interleaved) and by meaning representation (MR-grouped: references of one MR never fall in both "
        "halves; mean over 200 seeded splits), for the pre-trained model and after 24 training steps (one run, "
        "seed 0). Subset order `first`: the first N examples of the file, as the rank study evaluates (about 8 "
        "references of each of N/8 MRs); `mr_spread`: one reference of every MR before any MR's second.", "",
        md_table(["order", "model", "examples N", "MRs", "parity halves gap", "MR-grouped halves gap"], rows), "",
    ]  # fmt: skip
    for order, group in noise.groupby("order", sort=False):
        worst_mr = group.groupby("examples")["mr_halves_gap_pct"].max()  # the worse of the two model states
        below = worst_mr[worst_mr < 1.0]
        lines.append(
            f"- `{order}`: "
            + (f"the smallest N whose MR-grouped gap is under 1 % in both model states is {int(below.index[0])}."
               if len(below) else f"no N up to {int(worst_mr.index.max())} has an MR-grouped gap under 1 % in both "
               f"model states (smallest worst-state gap {worst_mr.min():.1f} % at N = {int(worst_mr.idxmin())}).")
        )  # fmt: skip
    for order, group in noise.groupby("order", sort=False):
        worst_parity = group.groupby("examples")["halves_gap_pct"].max()
        if (worst_parity < 1.0).any():
            first = worst_parity[worst_parity < 1.0].index[0]
            lines.append(
                f"- `{order}`, parity halves (which share MRs): under 1 % in both model states from N = "
                f"{int(first)} (worse state {worst_parity[first]:.3f} %)."
            )  # fmt: skip
    lines.append("")
    if "split_mrs" in noise:  # a claim about the whole split only where the measurement spans all its MRs
        split_mrs = int(noise["split_mrs"].iloc[0])
        whole = noise[noise["mrs"] == split_mrs]
        if not len(whole):
            lines += [f"The largest subset measured holds {int(noise['mrs'].max())} of the split's {split_mrs} "
                      "MRs, so the measurement says nothing yet about subsets that span them all.", ""]  # fmt: skip
        elif (whole["mr_halves_gap_pct"] >= 1.0).all():
            lines += [
                f"The E2E validation split has {split_mrs} MRs. In every subset that holds them all (N = "
                f"{int(whole['examples'].min())} to {int(whole['examples'].max())}, every order and model state "
                "measured), "
                f"MR-grouped halves differ by {whole['mr_halves_gap_pct'].min():.1f}-"
                f"{whole['mr_halves_gap_pct'].max():.1f} %, so under this measure the issue's < 1 % is out of reach "
                "of the validation split, whatever the subset size.", "",
            ]  # fmt: skip
    lines += [
        "Every run of the study is scored on the same fixed examples, so runs are compared on one example set; "
        "the halves gap says how far one subset's PPL may stand from another subset's, not how far two runs "
        "on the same subset are apart.", "",
    ]  # fmt: skip
    return lines


def page(results: Path) -> str:
    lines = [GENERATED, "", "# Rank study: a learning rate per rank, then E(r) over seeds", "",
             "Does the LoRA rank change E(r), the global rounds to a target? The scale alpha/r is the same at every "
             "rank (alpha = 2r), each rank gets its own learning rate from a sweep on a separate seed, and E(r) is "
             "read at targets relative to the plateau. How to run it: "
             "[Convergence and SplitFT studies](../guides/studies.md).", "",
             *sweep_section(results), *study_section(results), *study_section(results, "rank_plateau"),
             *noise_section(results)]  # fmt: skip
    return "\n".join(lines).rstrip() + "\n"
