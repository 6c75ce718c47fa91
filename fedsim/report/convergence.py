"""The measured convergence study (``results/convergence_study``) and its long runs
(``results/convergence_long``): tables recomputed from the committed convergence records with the study's own
table code, and the precise evaluation that ``fedsim evaluate`` wrote."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pandas as pd

from fedsim.experiments.study.tables import (
    rounds_markdown,
    rounds_table,
    scenario_json,
    study_row,
    table_iv,
    table_iv_markdown,
)
from fedsim.learn.records import ConvergenceRecord, rounds_to_target, rounds_to_target_interpolated
from fedsim.report.common import GENERATED, image, md_table, provenance, span

FLAT_FRACTION = 0.2  # "the last 20 % of the steps": measured from the last evaluation at or before 80 %


def records(folder: Path, lr_checks: bool = False) -> list[tuple[Path, ConvergenceRecord]]:
    """The study's records (the learning-rate checks, ``*_lr<lr>.json``, only with ``lr_checks``)."""
    paths = sorted((folder / "records").glob("*.json"))
    paths = [p for p in paths if ("_lr" in p.stem) == lr_checks]
    return [(p, ConvergenceRecord.load(p)) for p in paths]


def targets(folder: Path) -> list[float]:
    return [float(t) for t in scenario_json(folder)["study"]["targets"]]


def rows(folder: Path, runs) -> pd.DataFrame:
    return pd.DataFrame(
        [study_row(rec, i, targets(folder), record_path=path.name) for i, (path, rec) in enumerate(runs)]
    )


def evals(record: ConvergenceRecord) -> list[dict]:
    return [r for r in record.curve if "val_ppl" in r]


def late_change(record: ConvergenceRecord) -> tuple[float, int, int]:
    """(change of val PPL in %, negative = still falling; from step; to step) over the last stretch: from
    the last evaluation at or before (1 - FLAT_FRACTION) of the steps to the final one."""
    e = evals(record)
    end = e[-1]
    start = [r for r in e if r["step"] <= (1 - FLAT_FRACTION) * end["step"]][-1]
    return (
        100.0 * (end["val_ppl"] - start["val_ppl"]) / start["val_ppl"],
        int(start["step"]),
        int(end["step"]),
    )


def noise_pct(record: ConvergenceRecord) -> float:
    last = evals(record)[-1]
    if "val_ppl_a" not in last:
        return math.nan
    return 100.0 * abs(last["val_ppl_a"] - last["val_ppl_b"]) / last["val_ppl"]


def settings(runs) -> list[str]:
    """The training settings every run shares, and its seeds, from the records' configs."""
    cfgs = [rec.config or {} for _, rec in runs]
    first = cfgs[0]
    shared = {k: v for k, v in first.items() if all(c.get(k) == v for c in cfgs)}
    seeds = sorted({c.get("seed") for c in cfgs})
    ranks = sorted({rec.rank for _, rec in runs})
    schemes = sorted({rec.scheme for _, rec in runs})
    keys = ("model", "num_clients", "batch_size", "seq_len", "local_iterations", "steps", "cut", "targets",
            "lora_alpha", "lr", "weight_decay", "partition", "eval_every", "eval_samples", "eval_halves",
            "test_samples", "generate_mrs", "max_new_tokens", "train_samples")  # fmt: skip
    cells = [[f"`{k}`", f"`{shared[k]}`"] for k in keys if k in shared]
    return [
        f"{len(runs)} runs: schemes {', '.join(schemes)}; ranks {', '.join(map(str, ranks))}; "
        f"seeds {', '.join(map(str, seeds))}. Settings every run shares (its `TrainConfig`, from the records):",
        "",
        md_table(["setting", "value"], cells),
        "",
        f"Validation PPL is measured on the first `eval_samples` = {shared.get('eval_samples')} validation "
        f"examples (the same subset for every run) every `eval_every` = {shared.get('eval_every')} steps; test "
        f"PPL on `test_samples` = {shared.get('test_samples')} test examples; BLEU and ROUGE-L on "
        f"`generate_mrs` = {shared.get('generate_mrs')} test MRs.",
    ]


def noise_and_flatness(runs) -> list[str]:
    out = []
    noise = [noise_pct(rec) for _, rec in runs]
    finite = [n for n in noise if math.isfinite(n)]
    if finite:
        out.append(f"- **Evaluation noise** at the last evaluation (|PPL of the two interleaved halves of the "
                   f"validation subset| / PPL): median {statistics.median(finite):.1f} %, range "
                   f"{span(finite, unit=' %')} over {len(finite)} runs.")  # fmt: skip
    for scheme in sorted({rec.scheme for _, rec in runs}):
        changes = [late_change(rec) for _, rec in runs if rec.scheme == scheme]
        frm, to = {c[1] for c in changes}, {c[2] for c in changes}
        stretch = f"steps {min(frm)}-{max(to)}" if len(frm) == len(to) == 1 else "the last stretch"
        share = 100 * (max(to) - min(frm)) / max(to)
        out.append(f"- **{scheme}: change of val PPL over {stretch}** (from the last evaluation at or before "
                   f"{100 * (1 - FLAT_FRACTION):.0f} % of the steps, so the last {share:.0f} % of them): mean "
                   f"{statistics.fmean(c[0] for c in changes):+.2f} % over {len(changes)} runs, range "
                   f"{span([c[0] for c in changes], '{:+.2f}', ' %')} (negative: still falling).")  # fmt: skip
    return out


def lr_check(folder: Path, runs) -> list[str]:
    checks = records(folder, lr_checks=True)
    if not checks:
        return []
    step = max(int(rec.curve[-1]["step"]) for _, rec in checks)
    rank = checks[0][1].rank
    seed = (checks[0][1].config or {}).get("seed")
    same = [rec for _, rec in runs if rec.scheme == checks[0][1].scheme and rec.rank == rank
            and (rec.config or {}).get("seed") == seed]  # fmt: skip
    table = []
    for rec in [rec for _, rec in checks] + same:
        at = [r for r in evals(rec) if r["step"] == step]
        table.append((rec.config["lr"], f"{at[0]['val_ppl']:.2f}" if at else "-"))
    table.sort()
    return [
        "## The learning-rate check", "",
        f"{checks[0][1].scheme}, rank {rank}, seed {seed}: validation PPL after {step} steps at each learning "
        "rate (the check's records, `*_lr<lr>.json`, and the study's own run at its learning rate). Their "
        "`lora_alpha` is fixed, so the LoRA update scales with alpha / r.", "",
        md_table(["lr", f"val PPL at step {step}"], [[f"{lr:g}", v] for lr, v in table]), "",
    ]  # fmt: skip


def long_runs(results: Path) -> list[str]:
    folder = results / "convergence_long"
    runs = records(folder)
    if not runs:
        return []
    tgts = targets(folder)
    head = ["scheme", "rank", "seed", "steps", "final val PPL", "change, last stretch",
            *(f"rounds to {t:g} (≈ interp.)" for t in tgts), "test PPL", "BLEU", "ROUGE-L"]  # fmt: skip
    table = []
    for _, rec in sorted(runs, key=lambda r: (r[1].scheme, r[1].rank)):
        change, frm, to = late_change(rec)
        cells = [rec.scheme, rec.rank, (rec.config or {}).get("seed"), to, f"{evals(rec)[-1]['val_ppl']:.3f}",
                 f"{change:+.2f} % (steps {frm}-{to})"]  # fmt: skip
        for t in tgts:
            grid, interp = rounds_to_target(rec.curve, t), rounds_to_target_interpolated(rec.curve, t)
            cells.append("not reached" if grid is None else f"{grid:g} (≈{interp:.1f})")
        final = rec.final or {}
        cells += [f"{final.get('test_ppl', math.nan):.3f}", f"{final.get('bleu', math.nan):.1f}",
                  f"{final.get('rouge_l', math.nan):.1f}"]  # fmt: skip
        table.append(cells)
    lines = ["## Long runs", "", f"`scenarios/convergence_long.toml`, {len(runs)} runs; otherwise the study's "
             "settings:", "", *settings(runs)[2:], "", md_table(head, table), ""]  # fmt: skip
    lines += repeat_check(results, runs)
    lines += precise(folder)
    return lines


def repeat_check(results: Path, long) -> list[str]:
    """The long runs' first steps against the study's runs of the same scheme, rank and seed."""
    study = {
        (r.scheme, r.rank, (r.config or {}).get("seed")): r for _, r in records(results / "convergence_study")
    }
    worst, compared, steps = 0.0, 0, set()
    for _, rec in long:
        twin = study.get((rec.scheme, rec.rank, (rec.config or {}).get("seed")))
        if twin is None:
            continue
        theirs = {r["step"]: r["val_ppl"] for r in evals(twin)}
        for r in evals(rec):
            if r["step"] in theirs:
                worst = max(worst, abs(r["val_ppl"] - theirs[r["step"]]))
                steps.add(r["step"])
        compared += 1
    if not compared:
        return []
    return [f"Their first {max(steps)} steps repeat the study's runs of the same scheme, rank and seed: "
            f"largest validation-PPL difference {worst:.3g} over {compared} runs.", ""]  # fmt: skip


def precise(folder: Path) -> list[str]:
    """``fedsim evaluate``'s tables, with the counts read from its per-example rows."""
    md = folder / "tables" / "precise_eval.md"
    if not md.is_file():
        return []
    counts = []
    for path in sorted((folder / "precise").glob("*.csv")):
        frame = pd.read_csv(path, usecols=["example", "mr", "tokens"])
        counts.append((len(frame), int(frame.tokens.sum()), frame.mr.nunique()))
    lines = ["## The long runs on the whole validation split", "",
             "`fedsim evaluate results/convergence_long`: each run's final checkpoint scored per example; "
             "differences paired on the same examples with 95 % bootstrap CIs over the MRs."]  # fmt: skip
    if counts:
        ex, tok, mrs = (span([c[i] for c in counts], "{:,.0f}") for i in range(3))
        lines[-1] += f" Per run: {ex} examples, {tok} tokens, {mrs} MRs ({len(counts)} runs)."
    body = md.read_text(encoding="utf-8").strip().splitlines()
    if body and body[0].startswith("#"):
        body = body[1:]
    while body and not body[0].strip():
        body = body[1:]
    return [*lines, "", *body, ""]


def page(results: Path) -> str:
    folder = results / "convergence_study"
    runs = records(folder)
    frame = rows(folder, runs)
    lines = [GENERATED, "", "# Convergence study: what the LoRA rank does", "",
             "Real SmolLM2-135M fine-tuning on E2E, one run per (rank, scheme, seed); how to run it and what it "
             "measures: [Convergence and SplitFT studies](../guides/studies.md).", "",
             f"Source: {provenance(folder, results)}.", "", "## Setting", "", *settings(runs), "",
             "## E(r): global rounds to the target", "", rounds_markdown(rounds_table(frame, targets(folder))),
             "## Table IV", "",
             "Mean ± std over seeds; SF = split_fed, C = centralized; SF − C paired by seed with its 95 % t-CI.",
             "", table_iv_markdown(table_iv(frame)), "", "## Noise and flatness", "",
             *noise_and_flatness(runs), "", *lr_check(folder, runs), *long_runs(results), "## Figures", ""]  # fmt: skip
    for name in ("convergence_study", "convergence_long"):
        for fig in ("fig3_val_ppl", "fig4_rounds_split_fed", "fig4_rounds_centralized"):
            if (results / name / "figures" / f"{fig}.png").is_file():
                lines.append(image(f"{name}/{fig}.png", f"{name}: {fig}"))
    return "\n".join(lines).rstrip() + "\n"
