"""Live arms compared over seeds (the SplitFT systems, issue 23), read from the finished runs' own files, so a
study that is still running reads as an interim one.

- ``collect(live)``: every finished run's summary, validation curve, cuts and per-phase round times.
- ``times_to_target(summary, curve)``: per group (the varied field other than the seed, e.g. the partition)
  and seed, the common target is the highest final validation PPL among that seed's arms, so every run
  reaches it; each run's simulated time to it is interpolated linearly in log PPL between evaluations.
- ``paired(summary, column)``: each arm against the baseline arm of the same group and seed: the relative
  change per seed, its mean and Student-t 95 % CI over seeds, and whether the CI excludes 0.
- ``phase_seconds(phases)``: per run, the mean seconds per round spent in each group of engine phases
  (the slowest actor's share), what explains a difference in round time between two arms.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from fedsim.stats import mean_ci95

GROUPS = ("partition", "dirichlet_alpha")  # the varied fields that split a study (the seed repeats within)
BASELINE = "splitlora_fixed"
# engine phases (fedsim.engine trace rows) -> the delay term they belong to
PHASE_GROUPS = {
    "client compute": ("forward", "backward"),
    "server compute": ("server_forward", "server_backward"),
    "activation upload": ("upload_activation",),
    "gradient download": ("download_gradient",),
    "LoRA upload": ("upload_lora", "broadcast"),
    "block moves": ("move_block_to_client", "move_block_to_server"),
    "re-allocation": ("reallocate",),
    "probe": ("probe_forward", "upload_probe_activation", "probe_server_forward"),
}


def group_columns(summary: pd.DataFrame) -> list[str]:
    """The varied fields (other than the seed) present in ``summary``."""
    return [c for c in GROUPS if c in summary.columns and summary[c].notna().any()]


def _pair_keys(summary: pd.DataFrame) -> list[str]:
    """What pairs two arms' runs: the same group and, where the study repeats seeds, the same seed."""
    return [*group_columns(summary), *(["seed"] if "seed" in summary.columns else [])]


def collect(live: Path) -> dict[str, pd.DataFrame]:
    """The finished runs under ``live`` (a ``summary.json`` in their folder): ``summary`` (one row per run),
    ``curve`` (every evaluation), ``cuts`` (cut per client per round) and ``phases`` (``phases.csv`` rows,
    where the run wrote one). Empty frames when nothing has finished."""
    runs = sorted(p.parent for p in Path(live).glob("*/summary.json"))
    summary = pd.DataFrame([json.loads((r / "summary.json").read_text(encoding="utf-8")) for r in runs])
    curve = [row for r in runs for row in json.loads((r / "curve.json").read_text(encoding="utf-8"))]

    def frames(name: str) -> pd.DataFrame:
        parts = [pd.read_csv(r / name).assign(run=r.name) for r in runs if (r / name).is_file()]
        parts = [p for p in parts if not p.empty]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    return {"summary": summary, "curve": pd.DataFrame(curve), "cuts": frames("cuts.csv"),
            "phases": frames("phases.csv")}  # fmt: skip


def time_to_ppl(evals: pd.DataFrame, target: float) -> float:
    """Simulated time [s] at which the validation curve ``evals`` (``sim_time_s``, ``val_ppl``, in order) first
    reaches ``target``: linear in log PPL between the two evaluations around the crossing; NaN if never."""
    t, p = evals["sim_time_s"].to_numpy(float), evals["val_ppl"].to_numpy(float)
    hit = np.flatnonzero(p <= target)
    if hit.size == 0:
        return math.nan
    i = int(hit[0])
    if i == 0:
        return float(t[0])
    lo, hi = math.log(p[i - 1]), math.log(p[i])
    frac = (lo - math.log(target)) / (lo - hi)
    return float(t[i - 1] + frac * (t[i] - t[i - 1]))


def times_to_target(summary: pd.DataFrame, curve: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with ``common_target_ppl`` (the highest final val PPL among the arms of the same group and
    seed) and ``sim_time_to_common_s`` (each run's simulated time to it)."""
    if summary.empty:
        return summary
    keys = _pair_keys(summary)
    out = summary.copy()
    out["common_target_ppl"] = out.groupby(keys)["final_val_ppl"].transform("max")
    evals = curve.dropna(subset=["val_ppl"]).sort_values(["run", "step"])
    by_run = dict(list(evals.groupby("run")))
    out["sim_time_to_common_s"] = [
        time_to_ppl(by_run[r.run], r.common_target_ppl) if r.run in by_run else math.nan for r in out.itertuples()
    ]
    return out


def paired(summary: pd.DataFrame, column: str, *, baseline: str = BASELINE) -> pd.DataFrame:
    """Every arm against ``baseline`` on ``column``, paired by group and seed: per (arm, group) the number of
    seeds, the mean relative change 100 (arm / baseline - 1) with its 95 % t-CI half-width, and whether the CI
    excludes 0 (needs two seeds or more)."""
    groups, keys = group_columns(summary), _pair_keys(summary)
    base = summary[summary["arm"] == baseline].set_index(keys)[column]
    rows = []
    for (arm, *group), g in summary[summary["arm"] != baseline].groupby(["arm", *groups], sort=False):
        ref = base.reindex(pd.MultiIndex.from_frame(g[keys]) if len(keys) > 1 else g[keys[0]])
        change = 100.0 * (g[column].to_numpy(float) / ref.to_numpy(float) - 1.0)
        change = change[np.isfinite(change)]
        mean, half = mean_ci95(change)
        rows.append({"arm": arm, **dict(zip(groups, group, strict=True)), "seeds": int(change.size),
                     "change_pct": mean, "ci_pct": half if change.size > 1 else math.nan,
                     "excludes_0": bool(change.size > 1 and abs(mean) > half)})  # fmt: skip
    return pd.DataFrame(rows)


def phase_seconds(phases: pd.DataFrame) -> pd.DataFrame:
    """Per run, the mean over its rounds of the seconds each group of phases takes (``PHASE_GROUPS``; per phase
    the slowest actor's summed time in the round), one column per group."""
    if phases.empty:
        return pd.DataFrame()
    group_of = {phase: name for name, members in PHASE_GROUPS.items() for phase in members}
    p = phases.assign(term=phases["phase"].map(group_of)).dropna(subset=["term"])
    per_round = p.groupby(["run", "round", "term"])["max_actor_s"].sum().unstack("term", fill_value=0.0)
    rounds = phases.groupby("run")["round"].nunique()
    table = per_round.groupby(level="run").sum().div(rounds, axis=0)
    return table.reindex(columns=[c for c in PHASE_GROUPS if c in table.columns]).reset_index()
