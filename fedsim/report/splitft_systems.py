"""SplitFT in two systems (issue 23): the compute-bound one (``results/splitft_compute_bound``) and the
uplink-bound one (``results/splitft_uplink_bound``), each a fixed-cut SplitLoRA baseline against the balance,
score (probe EMA) and optimiser cut rules over seeds, read from the finished runs (an unfinished study reads
as interim)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import tomllib

from fedsim.experiments.live.compare import (
    BASELINE,
    PHASE_GROUPS,
    collect,
    group_columns,
    paired,
    phase_seconds,
    times_to_target,
)
from fedsim.experiments.study.tables import scenario_json
from fedsim.report.common import GENERATED, image, md_table, provenance
from fedsim.stats import mean_ci95

STUDIES = {
    "splitft_compute_bound": "Compute-bound system: 10x client compute spread, fast uplink, memory caps that bind",
    "splitft_uplink_bound": "Uplink-bound system: the first study's radio and clients, the same arms and caps",
}


def _planned(folder: Path) -> tuple[int | None, dict]:
    """Runs the study plans (arms x every combination of its ``vary`` values) and its scenario: the scenario
    file beside ``results/`` (``scenarios/<name>.toml``: the whole study, also while a run of part of it is
    committed), else the results folder's ``scenario.json``."""
    path = folder.parent.parent / "scenarios" / f"{folder.name}.toml"
    if path.is_file():
        scenario = tomllib.loads(path.read_text(encoding="utf-8"))
    else:
        scenario = scenario_json(folder)
    if scenario is None:
        return None, {}
    live = scenario.get("live") or {}
    n = len(live.get("arms") or {})
    for values in (live.get("vary") or {}).values():
        n *= len(values)
    return n, scenario


def _mean_ci(values, fmt: str = "{:.3g}") -> str:
    mean, half = mean_ci95(values)
    if math.isnan(mean):
        return "-"
    n = int(pd.Series(values).notna().sum())
    return fmt.format(mean) + (f" ± {fmt.format(half)}" if n > 1 else "")


def _group_label(row, groups: list[str]) -> str:
    return ", ".join(f"{row[g]}" for g in groups)


def _count_label(key, n: int) -> str:
    key = key if isinstance(key, tuple) else (key,)
    return f"`{key[0]}`" + "".join(f" {v}" for v in key[1:]) + f": {n}"


def arms_table(summary: pd.DataFrame) -> str:
    groups = group_columns(summary)
    rows = []
    for (arm, *_), g in summary.groupby(["arm", *groups], sort=False):
        rows.append([f"`{arm}`", _group_label(g.iloc[0], groups), len(g),
                     _mean_ci(g["final_val_ppl"], "{:.4g}"), _mean_ci(g["test_ppl"], "{:.4g}"), _mean_ci(g["bleu"], "{:.2f}"),
                     _mean_ci(g["rouge_l"], "{:.2f}"), _mean_ci(g["sim_total_s"]),
                     _mean_ci(g["sim_time_to_common_s"]), _mean_ci(g["bits_up"] / 1e6, "{:.4g}"),
                     _mean_ci(g["bits_down"] / 1e6, "{:.4g}"), _mean_ci(g["cut_changes"], "{:.3g}")])  # fmt: skip
    header = ["arm", "/".join(groups) or "-", "seeds", "final val PPL", "test PPL", "BLEU", "ROUGE-L",
              "simulated time [s]", "time to common target [s]", "uplink Mbit", "downlink Mbit", "cut moves"]  # fmt: skip
    return md_table(header, rows)


def _change_cell(r) -> str:
    """One ``paired`` row as a table cell: the mean change with its CI, marked when the CI excludes 0."""
    if math.isnan(r["change_pct"]):
        return "-"
    if math.isnan(r["ci_pct"]):
        return f"{r['change_pct']:+.1f} % (one seed)"
    mark = " **CI excludes 0**" if r["excludes_0"] else ""
    return f"{r['change_pct']:+.1f} ± {r['ci_pct']:.1f} %{mark}"


def paired_table(summary: pd.DataFrame) -> str:
    groups = group_columns(summary)
    columns = [("sim_time_to_common_s", "time to common target"), ("sim_total_s", "simulated time"),
               ("final_val_ppl", "final val PPL"), ("test_ppl", "test PPL")]  # fmt: skip
    if not (summary["arm"] != BASELINE).any() or not (summary["arm"] == BASELINE).any():
        return "No pair yet: the baseline and another arm must both have run on the same partition and seed."
    tables = {c: paired(summary, c).set_index(["arm", *groups]) for c, _ in columns}
    first = tables[columns[0][0]]
    rows = []
    for key in first.index:
        key_t = key if isinstance(key, tuple) else (key,)
        cells = [f"`{key_t[0]}`", ", ".join(str(v) for v in key_t[1:]), int(first.loc[key, "seeds"])]
        cells += [_change_cell(tables[c].loc[key]) for c, _ in columns]
        rows.append(cells)
    header = ["arm", "/".join(groups) or "-", "seeds", *(name for _, name in columns)]
    return md_table(header, rows)


RCUT = "_rcut"  # an arm named ``<arm>_rcut<r>`` is ``<arm>`` with rank r on the cut blocks


def rcut_table(summary: pd.DataFrame) -> str:
    """Each ``<arm>_rcut<r>`` arm against ``<arm>`` itself, paired by group and seed: what the lower rank on the
    cut blocks changes at the same alpha/r (PPLs, uplink bits, time to the common target); empty without a
    pair."""
    groups = group_columns(summary)
    columns = [("final_val_ppl", "final val PPL"), ("test_ppl", "test PPL"), ("bits_up", "uplink bits"),
               ("sim_time_to_common_s", "time to common target")]  # fmt: skip
    rows = []
    for arm in dict.fromkeys(a for a in summary["arm"] if RCUT in a):
        base = arm.split(RCUT)[0]
        pair = summary[summary["arm"].isin([arm, base])]
        if not (pair["arm"] == base).any():
            continue
        tables = {c: paired(pair, c, baseline=base).set_index(["arm", *groups]) for c, _ in columns}
        for key, r0 in tables[columns[0][0]].iterrows():
            key_t = key if isinstance(key, tuple) else (key,)
            cells = [f"`{arm}` vs `{base}`", ", ".join(str(v) for v in key_t[1:]), int(r0["seeds"])]
            cells += [_change_cell(tables[c].loc[key]) for c, _ in columns]
            rows.append(cells)
    if not rows:
        return ""
    return md_table(["pair", "/".join(groups) or "-", "seeds", *(name for _, name in columns)], rows)


SIGNALS = {"batch": "training-batch loss", "probe": "probe-set loss", "ema": "EMA of the probe-set loss"}


def quality_table(live: Path) -> str:
    """The score rule's quality signals (``quality_noise.csv`` of every score-rule run): per signal the noise,
    the round-to-round standard deviation of the quality term q_k / mean q (mean over clients and runs), against
    the signal, the spread of that term's mean between clients (max - min, mean over runs); empty without
    runs."""
    frames = [pd.read_csv(f).assign(run=f.parent.name) for f in sorted(live.glob("*/quality_noise.csv"))
              if f.parent.name.startswith("score")]  # fmt: skip
    if not frames:
        return ""
    noise = pd.concat(frames)
    rows = []
    for key, label in SIGNALS.items():
        step = noise[f"{key}_rel_step_std"].mean()
        spread = noise.groupby("run")[f"{key}_rel_mean"].agg(lambda v: v.max() - v.min()).mean()
        rows.append([label, f"{step:.3g}", f"{spread:.3g}", f"{spread / step:.3g}" if step > 0 else "-"])
    probe = int(noise["probe_examples"].max())
    header = ["signal", "noise: round-to-round std of q_k / mean q", "signal: spread between clients",
              "signal / noise"]  # fmt: skip
    runs, rounds, clients = noise["run"].nunique(), int(noise["rounds"].max()), noise.groupby("run").size().max()
    return md_table(header, rows) + (
        f"\n\nOver {runs} score-rule runs of {rounds} rounds, {clients} clients each; probe sets of {probe} examples per "
        "client (`live/<run>/quality_noise.csv`)."
    )


def phase_table(summary: pd.DataFrame, phases: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """Mean seconds per round by delay term, per arm and group (mean over seeds), and the frame behind it."""
    per_run = phase_seconds(phases)
    if per_run.empty:
        return "", per_run
    groups = group_columns(summary)
    terms = [t for t in PHASE_GROUPS if t in per_run.columns]
    frame = summary[["run", "arm", *groups, "sim_total_s", "rounds_completed"]].merge(per_run, on="run")
    frame = frame.assign(round_s=frame["sim_total_s"] / frame["rounds_completed"])
    means = frame.groupby(["arm", *groups], sort=False)[["round_s", *terms]].mean().reset_index()
    rows = [[f"`{r['arm']}`", _group_label(r, groups), f"{r['round_s']:.3g}", *(f"{r[t]:.3g}" for t in terms)]
            for _, r in means.iterrows()]  # fmt: skip
    header = ["arm", "/".join(groups) or "-", "round [s]", *terms]
    return md_table(header, rows), means


def explanations(means: pd.DataFrame, groups: list[str]) -> list[str]:
    """Per arm and group, its round time against the baseline's and the delay terms that moved most."""
    if means.empty:
        return []
    terms = [t for t in PHASE_GROUPS if t in means.columns]
    lines = []
    for _, r in means[means["arm"] != BASELINE].iterrows():
        same = (means[groups] == r[groups]).all(axis=1) if groups else True
        base = means[(means["arm"] == BASELINE) & same]
        if base.empty:
            continue
        b = base.iloc[0]
        deltas = sorted(((r[t] - b[t], t) for t in terms), key=lambda d: -abs(d[0]))
        moved = ", ".join(f"{t} {d:+.3g} s" for d, t in deltas[:3] if abs(d) > 1e-3 * max(b["round_s"], 1e-12))
        lines.append(
            f"- `{r['arm']}` ({_group_label(r, groups)}): {r['round_s']:.3g} s per round against "
            f"{b['round_s']:.3g} s ({100 * (r['round_s'] / b['round_s'] - 1):+.1f} %)"
            + (f"; largest changes per round: {moved}." if moved else "; no delay term moves.")
        )
    return lines


def study_section(results: Path, name: str, title: str, *, study: tuple) -> list[str]:
    """One system's section from its ``_study_data``."""
    folder = results / name
    lines = [f"## {title}", ""]
    planned, scenario = _planned(folder)
    summary, phase_md, means = study
    if summary.empty:
        return lines + [f"`scenarios/{name}.toml` has no committed runs yet: nothing is claimed about it.", ""]
    groups = group_columns(summary)
    counts = summary.groupby(["arm", *groups], sort=False).size()
    done = f"{len(summary)} of {planned}" if planned else str(len(summary))
    interim = planned is not None and len(summary) < planned
    train = ((scenario.get("live") or {}).get("training")) or {}
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8")) if (folder / "meta.json").is_file() else {}
    overrides = "".join(f" `--set {o}`" for o in meta.get("overrides") or [])
    lines += [
        f"Source: {provenance(folder, results)}" + (f", with{overrides}" if overrides else "") + ".", "",
        f"Runs committed: {done}" + (" (interim: the tables change as runs land)." if interim else ".")
        + " Seeds per arm" + (f" and {'/'.join(groups)}" if groups else "") + ": "
        + ", ".join(_count_label(k, n) for k, n in counts.items()) + ".", "",
        f"Validation PPL on the first {train.get('eval_samples', '?')} validation examples after every round, "
        f"test PPL on {train.get('test_samples', '?')} test examples, BLEU and ROUGE-L on "
        f"{train.get('generate_mrs', '?')} test MRs. Times are the engine's simulated seconds; mean ± the 95 % "
        "t-CI half-width over seeds. Every run times the same radio drop (placement, shadowing and client "
        "compute come from the base seed, not the run's seed): the seeds vary the training (data order, LoRA "
        "initialisation, probe sets), so a CI here is over training noise on this one drop, and a simulated "
        "time with ± 0 means the arm moved its cuts the same way in every seed, not that the gain holds on "
        "other drops.", "",
        "**Common target.** Per partition and seed, the highest final validation PPL among that seed's arms, "
        "so every run reaches it; each run's simulated time to it is interpolated in log PPL between "
        "evaluations. It asks which arm reaches the quality all arms share soonest.", "",
        "### The arms", "", arms_table(summary), "",
        f"### Against the fixed-cut baseline (`{BASELINE}`), paired by seed", "",
        "Relative change of each arm against the baseline run of the same partition and seed (negative = "
        "smaller = better for times and PPL); mean ± 95 % t-CI over seeds; a CI is marked when it excludes 0.",
        "", paired_table(summary), "",
    ]  # fmt: skip
    rcut = rcut_table(summary)
    if rcut:
        lines += [
            "### Rank on the cut blocks at the same alpha/r, paired by seed", "",
            "Each `*_rcut<r>` arm against the same arm with the training rank on every block (same partition "
            "and seed); mean ± 95 % t-CI over seeds. "
            + ("With `lora_alpha_policy = \"proportional\"` the cut blocks keep the other blocks' LoRA scale "
               "(peft `alpha_pattern`), so a PPL change here is the rank's, not a larger step's."
               if train.get("lora_alpha_policy") == "proportional" else
               f"The LoRA alpha policy is {train.get('lora_alpha_policy', 'fixed')!r}: the cut blocks' scale "
               "alpha/r differs from the other blocks', so a PPL change mixes rank and step size."),
            "", rcut, "",
        ]  # fmt: skip
    if phase_md:
        lines += [
            "### Where a round's time goes", "",
            "Mean seconds per round by delay term (per engine phase the slowest client's summed time in the "
            "round, `phases.csv`; terms overlap in time, so they do not add up to the round), mean over seeds.",
            "", phase_md, "", *explanations(means, groups), "",
        ]  # fmt: skip
    quality = quality_table(folder / "live")
    if quality:
        lines += [
            "### The score rule's quality signal", "",
            "How far each client's quality term q_k / mean q sits from the others' (the signal the rule acts on) "
            "against how much it jumps from one round to the next (its noise): the probe EMA is what "
            "`score_probe` reads; the training-batch loss is what the first study's score rule read.", "",
            quality, "",
        ]  # fmt: skip
    zero = summary[(summary["bleu"] <= 0) | (summary["rouge_l"] <= 0)]
    lines += [
        f"BLEU and ROUGE-L above 0 in {len(summary) - len(zero)} of {len(summary)} runs"
        + (f" (zero in: {', '.join(f'`{r}`' for r in zero['run'])})." if len(zero) else "."),
        "",
    ]
    if (folder / "figures" / "splitft.png").is_file():
        lines += [image(f"{name}/splitft.png", f"{name}: val PPL vs simulated time, cut trajectories"), ""]
    return lines


def _study_data(results: Path, name: str) -> tuple[pd.DataFrame, str, pd.DataFrame]:
    """A study's runs (with times to the common target), read once for its section and the side-by-side
    comparison, and its seconds per round by delay term (markdown and frame, ``phase_table``)."""
    live = results / name / "live"
    data = collect(live) if live.is_dir() else {"summary": pd.DataFrame()}
    if data["summary"].empty:
        return pd.DataFrame(), "", pd.DataFrame()
    summary = times_to_target(data["summary"], data["curve"])
    return summary, *phase_table(summary, data.get("phases", pd.DataFrame()))


_COMPUTE, _TRANSFER = ("client compute", "server compute"), ("activation upload", "LoRA upload")


def _verdict(r) -> str:
    if math.isnan(r["change_pct"]):
        return "-"
    if math.isnan(r["ci_pct"]):
        return f"{r['change_pct']:+.1f} % (one seed: not resolved)"
    word = ("wins" if r["change_pct"] < 0 else "loses") if r["excludes_0"] else "not resolved"
    return f"{r['change_pct']:+.1f} ± {r['ci_pct']:.1f} % ({word})"


def side_by_side(data: dict[str, tuple]) -> list[str]:
    """Each arm's paired change in time to the common target in both systems (``_study_data`` of each),
    beside what bounds each system's baseline round (its compute terms against its transfer terms): where
    adaptive cuts win and where they lose, and the delay terms that say why."""
    lines = ["## The two systems side by side", ""]
    if any(summary.empty for summary, _, _ in data.values()):
        return lines + ["Not both systems have committed runs yet: nothing is compared.", ""]
    bounds = []
    for name, (_, _, means) in data.items():
        base = means[means["arm"] == BASELINE]
        if base.empty:
            continue
        b = base.mean(numeric_only=True)  # over the baseline's partitions
        compute = sum(float(b.get(t, 0.0)) for t in _COMPUTE)
        transfer = sum(float(b.get(t, 0.0)) for t in _TRANSFER)
        bounds.append(f"`{name}`: a baseline round of {b['round_s']:.3g} s, its compute terms {compute:.3g} s "
                      f"and its transfer terms {transfer:.3g} s")  # fmt: skip
    changes = {}
    for name, (summary, _, _) in data.items():
        if (summary["arm"] == BASELINE).any() and (summary["arm"] != BASELINE).any():
            changes[name] = paired(summary, "sim_time_to_common_s").set_index(
                ["arm", *group_columns(summary)]
            )
    keys = sorted({key for table in changes.values() for key in table.index}, key=str)
    rows = []
    for key in keys:
        key_t = key if isinstance(key, tuple) else (key,)
        cells = [f"`{key_t[0]}`", ", ".join(str(v) for v in key_t[1:])]
        for name in STUDIES:
            table = changes.get(name)
            if table is None or key not in table.index:
                cells.append("-")
                continue
            r = table.loc[key]
            cells.append(f"{_verdict(r)}, {int(r['seeds'])} seed{'s' if r['seeds'] != 1 else ''}")
        rows.append(cells)
    lines += [
        "What bounds each system's fixed-cut round (mean over its baseline runs; terms overlap in time): "
        + "; ".join(bounds) + ".", "",
        f"Change in simulated time to the common target against `{BASELINE}` on the same partition and seed, "
        "mean ± 95 % t-CI over seeds: an arm wins (or loses) where the CI excludes 0; otherwise it is not "
        "resolved at this scale.", "",
        md_table(["arm", "partition", *(f"`{n}`" for n in STUDIES)], rows) if rows
        else "No arm has been paired with the baseline in either system yet.", "",
    ]  # fmt: skip
    return lines


def page(results: Path) -> str:
    lines = [GENERATED, "", "# SplitFT in two systems", "",
             "Live SmolLM2-135M split-LoRA runs timed by the event engine, repeated over seeds and two "
             "partitions (IID and length-Dirichlet alpha = 0.1): the fixed-cut SplitLoRA baseline (every client "
             "at the cut the weakest client's memory allows) against three adaptive cut rules under per-client "
             "memory caps: `balance` (equalise per-client iteration time), `score_probe` (fedsim's score rule "
             "on an EMA of each client's loss on a fixed probe set; SplitFT publishes no formula) and "
             "`optimiser` (the delay model's per-client cuts for the drop); `*_rcut4` arms put rank 4 on the "
             "cut blocks at the same alpha/r. Adaptive arms re-choose subchannels and power after every cut "
             "move (charged as a broadcast); the probe's forward passes are timed. What the rules do: "
             "[Convergence and SplitFT studies](../guides/studies.md).", ""]  # fmt: skip
    data = {name: _study_data(results, name) for name in STUDIES}
    for name, title in STUDIES.items():
        lines += study_section(results, name, title, study=data[name])
    lines += side_by_side(data)
    return "\n".join(lines).rstrip() + "\n"
