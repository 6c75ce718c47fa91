"""A convergence study's rows and tables: one tidy row per run (settings, final metrics, evaluation noise,
flatness, E(r) per target), the curves across runs, E(r) per rank with its seed spread, and Table IV with
the split-fed - centralized gap; ``write_study_tables`` writes them as CSV and markdown.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from fedsim.learn.records import (
    PLATEAU_EVALS,
    ConvergenceRecord,
    plateau_ppl,
    rounds_to_target,
    rounds_to_target_interpolated,
)


def study_row(record: ConvergenceRecord, point: int, targets, *, record_path) -> dict:
    """One tidy row per run: its settings, final metrics, evaluation noise, flatness and E(r) per target."""
    cfg = record.config or {}
    evals = [r for r in record.curve if "val_ppl" in r]
    last = evals[-1] if evals else {}
    row = {
        "point": int(point),
        "drop": 0,
        "model": record.model,
        "training_scheme": record.scheme,
        "rank": int(record.rank),
        "seed": int(cfg.get("seed", 0)),
        "lr": float(cfg.get("lr", math.nan)),
        "cut": int(cfg.get("cut", 0) or 0),
        "partition": str(cfg.get("partition", "")),
        "dirichlet_alpha": float(cfg.get("dirichlet_alpha", math.nan) or math.nan),
        "steps": int(record.curve[-1]["step"]) if record.curve else 0,
        "local_iterations": int(record.local_iterations),
        "first_val_ppl": float(evals[0]["val_ppl"]) if evals else math.nan,
        "final_val_ppl": float(last.get("val_ppl", math.nan)),
        "plateau_val_ppl": plateau_ppl(record.curve),
        "eval_noise_pct": eval_noise_pct(last),
        "last20_change_pct": last_fraction_change_pct(record.curve, 0.2),
        "smoothed_last20_change_pct": last_fraction_change_pct(smoothed(record.curve), 0.2),
        "record": str(record_path),
        "source": record.source,
    }
    final = record.final or {}
    for key in ("test_ppl", "bleu", "rouge_l", "wall_s"):
        row[key] = float(final[key]) if final.get(key) is not None else math.nan
    for target in targets:
        rounds = rounds_to_target(record.curve, target)
        row[target_column(target)] = math.nan if rounds is None else float(rounds)
        rounds = rounds_to_target_interpolated(record.curve, target)
        row[target_column(target, interpolated=True)] = math.nan if rounds is None else rounds
    return row


def scenario_json(folder: Path) -> dict | None:
    """A results folder's scenario.json (the resolved scenario its run wrote), or None when it has none."""
    path = folder / "scenario.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def planned_runs(scenario: dict | None) -> int | None:
    """Runs a scenario (its scenario.json) plans: the product or zip of its sweep axes."""
    if scenario is None:
        return None
    sweep = scenario.get("sweep") or {}
    sizes = [len(v) for v in (sweep.get("axes") or {}).values()]
    if not sizes:
        return 1
    return sizes[0] if sweep.get("mode") == "zip" else math.prod(sizes)


def study_rows(folder: Path) -> pd.DataFrame:
    """One row per record in a study folder's ``records/`` (``record`` relative to the folder): the rows of
    a study whose rows file is not kept (its records are)."""
    paths = sorted((folder / "records").glob("*.json"))
    rows = [
        study_row(ConvergenceRecord.load(p), i, [], record_path=f"records/{p.name}")
        for i, p in enumerate(paths)
    ]
    return pd.DataFrame(rows)


def target_column(target: float, interpolated: bool = False) -> str:
    """Row column of E(r) at ``target``: on the evaluation grid, or interpolated in log PPL."""
    return f"rounds_{'interp_' if interpolated else ''}to_ppl_{target:g}"


def eval_noise_pct(row: dict) -> float:
    """|PPL(half a) - PPL(half b)| / PPL in percent: the evaluation noise of the validation subset."""
    if not {"val_ppl", "val_ppl_a", "val_ppl_b"} <= row.keys():
        return math.nan
    return 100.0 * abs(row["val_ppl_a"] - row["val_ppl_b"]) / row["val_ppl"]


def last_fraction_change_pct(curve: list[dict], fraction: float) -> float:
    """Relative change (percent, positive = improvement) of val PPL over the last ``fraction`` of the steps:
    from the last evaluation at or before step (1 - fraction)·S to the final one."""
    evals = [r for r in curve if "val_ppl" in r]
    if len(evals) < 2:
        return math.nan
    start_step = (1 - fraction) * evals[-1]["step"]
    before = [r for r in evals if r["step"] <= start_step]
    if not before:
        return math.nan
    return 100.0 * (before[-1]["val_ppl"] - evals[-1]["val_ppl"]) / before[-1]["val_ppl"]


def smoothed(curve: list[dict], window: int = PLATEAU_EVALS) -> list[dict]:
    """The evaluations with val PPL replaced by its trailing moving average over ``window`` evaluations."""
    evals = [r for r in curve if "val_ppl" in r]
    out = []
    for i, row in enumerate(evals):
        values = [r["val_ppl"] for r in evals[max(0, i - window + 1) : i + 1]]
        out.append({**row, "val_ppl": float(np.mean(values))})
    return out


def relative_targets_table(curves: pd.DataFrame, rows: pd.DataFrame, pcts) -> pd.DataFrame:
    """E(r) at targets relative to the plateau: per training scheme, the best PPL any rank reaches is the
    lowest mean (over seeds) plateau PPL of a rank; target p % = best x (1 + p / 100). Per (scheme, rank, p)
    the rounds to the target interpolated in log PPL between evaluations, mean and 95 % t-CI over seeds and
    how many runs reached it."""
    out = []
    by_run = {key: run.sort_values("step").to_dict("records")
              for key, run in curves.groupby(["training_scheme", "rank", "seed", "lr"])}  # fmt: skip
    for scheme, srows in rows.groupby("training_scheme", sort=True):
        best = float(srows.groupby("rank")["plateau_val_ppl"].mean().min())
        for rank, group in srows.groupby("rank", sort=True):
            for pct in pcts:
                target = best * (1 + pct / 100)
                values = []
                for _, run in group.iterrows():
                    curve = by_run.get((scheme, rank, run["seed"], run["lr"]), [])
                    crossing = rounds_to_target_interpolated(curve, target)
                    values.append(math.nan if crossing is None else crossing)
                hit = np.asarray(values, dtype=float)
                mean, lo, hi = (
                    t_interval(hit[np.isfinite(hit)]) if np.isfinite(hit).any() else (math.nan,) * 3
                )
                out.append({"training_scheme": scheme, "rank": int(rank), "within_pct": float(pct),
                            "best_ppl": best, "target_ppl": target, "runs": len(hit),
                            "reached": int(np.isfinite(hit).sum()), "rounds_mean": mean, "rounds_lo": lo,
                            "rounds_hi": hi})  # fmt: skip
    return pd.DataFrame(out)


def relative_targets_markdown(table: pd.DataFrame) -> str:
    """E(r) at plateau-relative targets: rows (scheme, within p %), columns rank; mean [95 % CI] (reached/runs)."""
    lines = []
    for scheme, g in table.groupby("training_scheme", sort=True):
        ranks = sorted(g["rank"].unique())
        best = g["best_ppl"].iloc[0]
        lines += [f"**{scheme}** — global rounds to within p % of the best plateau PPL any rank reaches "
                  f"({best:.3f}; plateau = mean of the last {PLATEAU_EVALS} evaluations, mean over seeds), "
                  "interpolated in log PPL: mean [95 % t-CI over seeds] (runs that reached it / runs)", "",
                  "| within | target PPL | " + " | ".join(f"r = {r}" for r in ranks) + " |",
                  "|" + "---|" * (len(ranks) + 2)]  # fmt: skip
        for pct, tg in g.groupby("within_pct", sort=True):
            cells = []
            for r in ranks:
                e = tg[tg["rank"] == r].iloc[0]
                if e["reached"] == 0:
                    cells.append(f"not reached (0/{e['runs']})")
                    continue
                ci = f" [{e['rounds_lo']:.1f}, {e['rounds_hi']:.1f}]" if math.isfinite(e["rounds_lo"]) else ""
                cells.append(f"{e['rounds_mean']:.1f}{ci} ({e['reached']}/{e['runs']})")
            lines.append(f"| {pct:g} % | {tg['target_ppl'].iloc[0]:.3f} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def chosen_lr_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The learning rate per (training scheme, rank) of a learning-rate sweep, by a rule fixed before the
    comparison it feeds: the lr with the lowest plateau PPL (mean over the sweep's seeds), the smaller lr on a
    tie. Every lr's plateau is kept beside it; ``at_grid_edge`` says the choice is the grid's smallest or largest
    lr, so the best lr may lie outside the grid (the sweep's rule then adds the next value beyond it)."""
    out = []
    for (scheme, rank), group in rows.groupby(["training_scheme", "rank"], sort=True):
        by_lr = group.groupby("lr")["plateau_val_ppl"].mean().sort_index()
        best = float(by_lr.idxmin())  # idxmin takes the first (smallest) lr of equal plateaus
        edge = len(by_lr) > 1 and best in (float(by_lr.index[0]), float(by_lr.index[-1]))
        out.append({"training_scheme": scheme, "rank": int(rank), "chosen_lr": best, "at_grid_edge": edge,
                    **{f"plateau_ppl_lr{lr:g}": float(v) for lr, v in by_lr.items()}})  # fmt: skip
    return pd.DataFrame(out)


def study_curves(root: Path, rows: pd.DataFrame) -> pd.DataFrame:
    """Every evaluation of every run, one row each: training_scheme, rank, seed, lr, the settings (cut,
    partition, Dirichlet concentration), step, round, val_ppl and the PPL of the validation subset's two halves (from the records the rows point to)."""
    out = []
    for _, row in rows.iterrows():
        data = json.loads((root / row["record"]).read_text(encoding="utf-8"))
        for point in data["curve"]:
            if "val_ppl" in point:
                out.append({"training_scheme": row["training_scheme"], "rank": int(row["rank"]),
                            "seed": int(row["seed"]), "lr": float(row["lr"]),
                            **{f: row[f] for f in SETTING_FIELDS if f in row}, "step": int(point["step"]),
                            "round": point["round"],
                            "val_ppl": point["val_ppl"], "val_ppl_a": point.get("val_ppl_a", math.nan),
                            "val_ppl_b": point.get("val_ppl_b", math.nan)})  # fmt: skip
    return pd.DataFrame(out)


def t_interval(values) -> tuple[float, float, float]:
    """Mean and its two-sided 95 % Student-t confidence interval (``mean_ci95``; NaN bounds with fewer than
    2 finite values)."""
    from fedsim.stats import mean_ci95

    mean, half = mean_ci95(values)
    if np.isfinite(np.asarray(values, dtype=float)).sum() < 2:
        half = math.nan
    return mean, mean - half, mean + half


def rounds_table(rows: pd.DataFrame, targets) -> pd.DataFrame:
    """E(r) per (training scheme, rank, target): mean, std, min, max over seeds and how many reached it."""
    out = []
    for (scheme, rank), group in rows.groupby(["training_scheme", "rank"], sort=True):
        for target in targets:
            values = group[target_column(target)].to_numpy(dtype=float)
            hit = values[np.isfinite(values)]
            column = target_column(target, interpolated=True)
            interp = group[column].to_numpy(dtype=float) if column in group else np.full(len(group), np.nan)
            interp = interp[np.isfinite(interp)]
            out.append({
                "training_scheme": scheme, "rank": int(rank), "target_ppl": float(target),
                "runs": len(values), "reached": len(hit),
                "rounds_mean": float(hit.mean()) if len(hit) else math.nan,
                "rounds_std": float(hit.std(ddof=1)) if len(hit) > 1 else math.nan,
                "rounds_min": float(hit.min()) if len(hit) else math.nan,
                "rounds_max": float(hit.max()) if len(hit) else math.nan,
                "interp_mean": float(interp.mean()) if len(interp) else math.nan,
                "interp_std": float(interp.std(ddof=1)) if len(interp) > 1 else math.nan,
            })  # fmt: skip
    return pd.DataFrame(out)


_METRICS = ("plateau_val_ppl", "final_val_ppl", "test_ppl", "bleu", "rouge_l")


# training settings a study may vary for split-fed beside the rank: Table IV gets one row per value of each
SETTING_FIELDS = ("cut", "partition", "dirichlet_alpha")


def varied_settings(rows: pd.DataFrame) -> list[str]:
    """The SETTING_FIELDS whose value differs between the study's split-fed runs."""
    sf = rows[rows.training_scheme == "split_fed"]
    return [f for f in SETTING_FIELDS if f in rows and sf[f].nunique() > 1]


def table_iv(rows: pd.DataFrame) -> pd.DataFrame:
    """Table IV: per rank and training scheme the mean ± std over seeds of final val PPL, test PPL, BLEU and
    ROUGE-L; per rank the paired (same seed) split_fed - centralized gap of each with its 95 % t-CI. When the
    split-fed runs differ in cut or data partition (``varied_settings``), one row per rank and setting, each
    paired with the rank's centralized runs (centralized training pools the data and has no cut)."""
    metrics = [m for m in _METRICS if m in rows]  # rows of an older study may lack the plateau
    setting = varied_settings(rows)
    out = []
    for rank, group in rows.groupby("rank", sort=True):
        if not setting:
            out.append(_table_iv_entry({"rank": int(rank)}, group, metrics))
            continue
        central = group[group.training_scheme == "centralized"]
        split = group[group.training_scheme == "split_fed"]
        for key, g in split.groupby(setting, sort=True):
            values = key if isinstance(key, tuple) else (key,)
            entry = {"rank": int(rank), **dict(zip(setting, values, strict=True))}
            out.append(_table_iv_entry(entry, pd.concat([g, central]), metrics))
    return pd.DataFrame(out)


def _table_iv_entry(entry: dict, group: pd.DataFrame, metrics) -> dict:
    for scheme in ("split_fed", "centralized"):
        g = group[group.training_scheme == scheme]
        entry[f"{scheme}_seeds"] = len(g)
        for m in metrics:
            v = g[m].to_numpy(dtype=float)
            entry[f"{scheme}_{m}_mean"] = float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
            entry[f"{scheme}_{m}_std"] = float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else math.nan
    paired = group.pivot_table(index="seed", columns="training_scheme", values=metrics)
    entry["paired_seeds"] = 0  # the most seeds any metric pairs (metrics a study did not record pair none)
    for m in metrics:
        if ("split_fed" in paired.get(m, {})) and ("centralized" in paired.get(m, {})):
            gap = (paired[m]["split_fed"] - paired[m]["centralized"]).dropna()
            mean, lo, hi = t_interval(gap.to_numpy())
        else:
            mean = lo = hi = math.nan
            gap = []
        entry.update({f"gap_{m}": mean, f"gap_{m}_lo": lo, f"gap_{m}_hi": hi, f"gap_{m}_seeds": len(gap)})
        entry["paired_seeds"] = max(entry["paired_seeds"], len(gap))
    return entry


def mean_std_text(mean: float, std: float) -> str:
    """A table cell "mean ± std" (3 decimals; "-" without a mean, no ± without a std)."""
    if not math.isfinite(mean):
        return "-"
    return f"{mean:.3f}" + (f" ± {std:.3f}" if math.isfinite(std) else "")


def table_iv_markdown(table: pd.DataFrame) -> str:
    """Table IV as markdown: mean ± std per scheme, and the split-fed - centralized gap [95 % CI]."""

    def gap(row, m):
        mean, lo, hi = row[f"gap_{m}"], row[f"gap_{m}_lo"], row[f"gap_{m}_hi"]
        if not math.isfinite(mean):
            return "-"
        return f"{mean:+.3f}" + (f" [{lo:+.3f}, {hi:+.3f}]" if math.isfinite(lo) else "")

    names = {"plateau_val_ppl": f"plateau PPL (last {PLATEAU_EVALS} evals)", "final_val_ppl": "val PPL",
             "test_ppl": "test PPL", "bleu": "BLEU", "rouge_l": "ROUGE-L"}  # fmt: skip
    setting = [f for f in SETTING_FIELDS if f in table]
    head = ["rank", *(f"SF {f}" for f in setting), "seeds (SF/C)"]
    metrics = [m for m in _METRICS if f"gap_{m}" in table]
    for m in metrics:
        head += [f"SF {names[m]}", f"C {names[m]}", f"SF−C {names[m]} [95 % CI]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in table.iterrows():
        cells = [str(int(row["rank"])), *(f"{row[f]:g}" if isinstance(row[f], float) else str(row[f]) for f in setting)]
        cells.append(f"{int(row['split_fed_seeds'])}/{int(row['centralized_seeds'])}")
        for m in metrics:
            cells += [mean_std_text(row[f"split_fed_{m}_mean"], row[f"split_fed_{m}_std"]),
                      mean_std_text(row[f"centralized_{m}_mean"], row[f"centralized_{m}_std"]), gap(row, m)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rounds_markdown(table: pd.DataFrame) -> str:
    """E(r) per target (rows) and rank (columns) per training scheme: mean ± std [reached/runs]."""
    if table.empty:
        return "(no absolute targets: `study.targets` is empty)\n"
    lines = []
    for scheme, g in table.groupby("training_scheme", sort=False):
        ranks = sorted(g["rank"].unique())
        lines += [f"**{scheme}** — global rounds to reach the target validation PPL: mean ± std over seeds "
                  "of the first evaluated round at or below it [runs that reached it / runs]; ≈ the crossing "
                  "interpolated in log PPL between evaluations", "",
                  "| target PPL | " + " | ".join(f"r = {r}" for r in ranks) + " |",
                  "|" + "---|" * (len(ranks) + 1)]  # fmt: skip
        for target, tg in g.groupby("target_ppl", sort=False):
            cells = []
            for r in ranks:
                e = tg[tg["rank"] == r].iloc[0]
                if e["reached"] == 0:
                    cells.append(f"not reached [0/{e['runs']}]")
                    continue
                std = f" ± {e['rounds_std']:.1f}" if math.isfinite(e["rounds_std"]) else ""
                cell = f"{e['rounds_mean']:.1f}{std} [{e['reached']}/{e['runs']}]"
                if math.isfinite(e.get("interp_mean", math.nan)):
                    istd = f" ± {e['interp_std']:.1f}" if math.isfinite(e["interp_std"]) else ""
                    cell += f"; ≈{e['interp_mean']:.1f}{istd}"
                cells.append(cell)
            lines.append(f"| {target:g} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_study_tables(rows: pd.DataFrame, targets, folder: Path, *, relative_pcts=()) -> list[str]:
    """Write ``tables/`` (E(r) per target and per plateau-relative target, Table IV; CSV and markdown) and
    return the summary's lines."""
    from fedsim.atomic import atomic_write_csv, atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    curves = study_curves(folder.parent, rows)
    relative_lines: list[str] = []
    if relative_pcts and not rows.empty:
        relative = relative_targets_table(curves, rows, relative_pcts)
        relative_md = relative_targets_markdown(relative)
        atomic_write_csv(folder / "rounds_to_relative_target.csv", relative)
        atomic_write_text(folder / "rounds_to_relative_target.md", relative_md + "\n")
        relative_lines = ["## E(r) at targets relative to the plateau", "", relative_md]
    table_rows, at = rows, ""
    if not rows.empty and rows.groupby(["training_scheme", "rank"])["lr"].nunique().max() > 1:
        # a learning-rate sweep: the lr each rank gets; Table IV and the flatness line at that lr only
        chosen = chosen_lr_table(rows)
        atomic_write_csv(folder / "chosen_lr.csv", chosen)
        relative_lines += ["## Learning rate per rank (lowest plateau PPL of the sweep; smaller lr on a tie)",
                           "", chosen.to_markdown(index=False, floatfmt=".4g"), ""]  # fmt: skip
        pick = {(c.training_scheme, c.rank): c.chosen_lr for c in chosen.itertuples()}
        chosen_lr = [pick[key] for key in zip(rows.training_scheme, rows["rank"], strict=True)]
        table_rows = rows[rows["lr"].to_numpy() == chosen_lr]
        at = ", each rank at its chosen lr"
    rounds, table = rounds_table(rows, targets), table_iv(table_rows)
    rounds_md, table_md = rounds_markdown(rounds), table_iv_markdown(table)
    atomic_write_csv(folder / "rounds_to_target.csv", rounds)
    atomic_write_text(folder / "rounds_to_target.md", rounds_md + "\n")
    atomic_write_csv(folder / "table4.csv", table)
    atomic_write_text(folder / "table4.md", table_md + "\n")
    atomic_write_csv(folder / "curves.csv", curves)
    noise = rows["eval_noise_pct"].to_numpy(dtype=float)
    best = table_rows.groupby(["training_scheme", "rank"])["final_val_ppl"].mean().idxmin()
    flat = table_rows[(table_rows.training_scheme == best[0]) & (table_rows["rank"] == best[1])][
        "last20_change_pct"
    ]
    lines = [
        "## E(r): global rounds to the target validation PPL", "", rounds_md, *relative_lines,
        f"## Table IV (mean ± std over seeds; SF = split_fed, C = centralized; gap paired by seed{at})", "",
        table_md, "",
        f"Evaluation noise (|PPL of the two interleaved halves of the validation subset| / PPL, final "
        f"evaluation): median {np.nanmedian(noise):.2f} %, max {np.nanmax(noise):.2f} % over {len(noise)} runs.",
        f"Best (scheme, rank) by mean final val PPL: {best[0]} r={best[1]}; its val PPL changed by "
        f"{flat.mean():.2f} % (mean over seeds) over the last 20 % of steps.", "",
    ]  # fmt: skip
    return lines


def rank_differences(curves: pd.DataFrame, rows: pd.DataFrame, pcts) -> pd.DataFrame:
    """Does the rank change E(r) or the plateau? Per training scheme, each rank against the scheme's largest
    rank, paired by seed (runs of one seed share data order and initial weights): the difference in rounds to
    each plateau-relative target (``relative_targets_table``'s targets, interpolated) and in plateau PPL, mean
    and 95 % t-CI over the seeds where both runs have a value, and whether the CI excludes 0."""
    targets = relative_targets_table(curves, rows, pcts)
    by_run = {key: run.sort_values("step").to_dict("records")
              for key, run in curves.groupby(["training_scheme", "rank", "seed"])}  # fmt: skip
    out = []
    for scheme, srows in rows.groupby("training_scheme", sort=True):
        ranks = sorted(srows["rank"].unique())
        ref = ranks[-1]

        def per_seed(rank, value, srows=srows):
            return {int(r.seed): value(r) for r in srows[srows["rank"] == rank].itertuples()}

        measures = [("plateau PPL", None, lambda r: float(r.plateau_val_ppl))]
        for pct in pcts:
            mine = targets[(targets.training_scheme == scheme) & (targets.within_pct == float(pct))]
            target = float(mine["target_ppl"].iloc[0])

            def crossing(r, target=target, scheme=scheme):
                c = rounds_to_target_interpolated(by_run.get((scheme, int(r.rank), int(r.seed)), []), target)
                return math.nan if c is None else c

            measures.append((f"rounds to within {pct:g} %", target, crossing))
        for rank in ranks[:-1]:
            for name, target, value in measures:
                mine, theirs = per_seed(rank, value), per_seed(ref, value)
                diffs = np.asarray([mine[s] - theirs[s] for s in sorted(set(mine) & set(theirs))], dtype=float)
                finite = diffs[np.isfinite(diffs)]
                mean, lo, hi = t_interval(finite) if finite.size else (math.nan,) * 3
                out.append({"training_scheme": scheme, "rank": int(rank), "versus_rank": int(ref),
                            "measure": name, "target_ppl": target, "paired_seeds": int(finite.size),
                            "unpaired_or_unreached": int(diffs.size - finite.size), "diff_mean": mean,
                            "diff_lo": lo, "diff_hi": hi,
                            "excludes_0": bool(math.isfinite(lo) and (lo > 0 or hi < 0))})  # fmt: skip
    return pd.DataFrame(out)
