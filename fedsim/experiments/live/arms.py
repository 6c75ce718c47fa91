"""Live studies with named arms (SplitFT, spec §10): every arm x ``vary`` combination is one live
co-simulation (real split-LoRA training timed by the event engine, ``fedsim.experiments.live.runs.simulate_live``).

Writes under ``live/``: one folder per run (record, engine rounds, each round's time per engine phase
(``phases.csv``), cut per client per round, every cut change; adaptive arms also the quality signal per round
and client and its round-to-round noise, and with ``adaptive_cuts.reoptimise_allocation`` every radio
allocation, ``allocations.csv``) and, across runs, ``arms_summary.csv`` (final val / test PPL, BLEU, ROUGE-L,
simulated time to the target PPL (every arm runs all its rounds; the target only marks the first hit), bits
sent each way, cuts at start and end), ``arms_curve.csv`` and ``arms_cuts.csv`` for figures.
"""

from __future__ import annotations

import json
import math
import time

import pandas as pd
from pydantic import ValidationError

from fedsim.atomic import atomic_write_csv, atomic_write_text
from fedsim.experiments.harness.store import ResultsStore
from fedsim.experiments.live.runs import (
    prepare_live_folder,
    run_done,
    simulate_live,
    with_checkpoint,
    write_allocations,
    write_done,
)
from fedsim.experiments.montecarlo.summary import to_markdown
from fedsim.learn.config import TrainConfig
from fedsim.scenario.arms import arm_configs

_UP = ("upload_activation", "upload_lora", "move_block_to_server", "upload_probe_activation")
_DOWN = ("download_gradient", "move_block_to_client")


def _bits(sim, phases) -> float:
    if not len(sim.trace_rows):
        return math.nan
    trace = sim.trace
    return float(trace.loc[trace["phase"].isin(phases), "bits"].sum())


def phase_rows(sim) -> pd.DataFrame:
    """Per round and engine phase (forward, upload_activation, move_block_to_client, reallocate, probe_forward,
    ...): the events, their summed duration, the largest per-actor sum (the slowest client's share) and the
    bits: what each round's time went to, to explain an arm's round time against another's."""
    if not len(sim.trace_rows):
        return pd.DataFrame()
    t = sim.trace.assign(duration_s=lambda f: f["end_s"] - f["start_s"])
    per_actor = t.groupby(["round", "phase", "actor"], sort=True).agg(
        s=("duration_s", "sum"), bits=("bits", "sum")
    )
    out = per_actor.groupby(level=["round", "phase"]).agg(
        actors=("s", "size"), busy_s=("s", "sum"), max_actor_s=("s", "max"), bits=("bits", "sum")
    )
    return out.reset_index()


def _run(scenario, store: ResultsStore, name: str, tags: dict, cfg: TrainConfig, progress: bool) -> None:
    folder = store.root / "live" / name
    folder.mkdir(parents=True, exist_ok=True)
    cfg = with_checkpoint(cfg, folder)
    started = time.perf_counter()
    # every arm runs all its rounds (final PPLs compare at equal rounds); the target marks the curve's first hit
    run_cfg = cfg.model_copy(update={"target_ppl": None})
    source = f"fedsim run {scenario.name} (live arm {name})"
    sim, trainer, _ = simulate_live(scenario, run_cfg, progress, source=source)
    atomic_write_csv(folder / "rounds.csv", pd.DataFrame(sim.round_rows))
    atomic_write_csv(folder / "phases.csv", phase_rows(sim))
    final = trainer.final_metrics()
    record = trainer.record()
    record.save(folder / record.file_name())
    cuts = pd.DataFrame(trainer.cut_rows()).assign(run=name, **tags)
    atomic_write_csv(folder / "cuts.csv", cuts)
    atomic_write_csv(folder / "cut_changes.csv", pd.DataFrame(trainer.cut_changes()))
    write_allocations(folder, trainer)  # with adaptive_cuts.reoptimise_allocation only
    if cfg.adaptive_cuts is not None:  # the quality signal per round, and its measured noise
        atomic_write_csv(folder / "quality.csv", pd.DataFrame(trainer.quality_rows()))
        atomic_write_csv(folder / "quality_noise.csv", pd.DataFrame(trainer.quality_noise()))
    ppl = [r for r in record.curve if "val_ppl" in r]
    target = cfg.target_ppl
    hit = next((r["sim_time_s"] for r in ppl if target is not None and r["val_ppl"] <= target), None)
    start_cuts = cuts[cuts["round"] == 0]["cut"].tolist()
    end_cuts = cuts[cuts["round"] == cuts["round"].max()]["cut"].tolist()
    summary = {
        "run": name,
        **tags,
        "model": cfg.model,
        "rank": cfg.rank,
        "rank_cut": cfg.rank_cut,
        "adaptive": cfg.adaptive_cuts is not None,
        "rounds_completed": int(sim.rounds_completed),
        "first_val_ppl": ppl[0]["val_ppl"] if ppl else None,
        "final_val_ppl": ppl[-1]["val_ppl"] if ppl else None,
        **{k: final[k] for k in ("test_ppl", "bleu", "rouge_l") if k in final},
        "target_ppl": target,
        "sim_time_to_target_s": hit,
        "sim_total_s": float(sim.total_s),
        "bits_up": _bits(sim, _UP),
        "bits_down": _bits(sim, _DOWN),
        "cuts_start": json.dumps(start_cuts),
        "cuts_end": json.dumps(end_cuts),
        "cut_changes": len(trainer.cut_changes()),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    curve = [{"run": name, **tags, "target_ppl": target, **row} for row in record.curve]
    atomic_write_text(folder / "curve.json", json.dumps(curve))
    atomic_write_text(folder / "summary.json", json.dumps(summary))  # marks the run done
    write_done(folder)  # last: the sha256 of every output, checked on a rerun


def config_differs(folder, cfg: TrainConfig) -> str | None:
    """Why the finished run in ``folder`` was not trained with ``cfg``, or None when it was: its record's
    ``config``, read back through ``TrainConfig`` (so a field added later reads as its default), against the
    run's configuration; the checkpoint path and the target (arms run all their rounds) aside."""
    want = _comparable(cfg)
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("config"), dict):
            try:
                have = _comparable(TrainConfig.model_validate(data["config"]))
            except ValidationError:
                return "its record's config no longer reads as a TrainConfig"
            diff = sorted(k for k in want.keys() | have.keys() if want.get(k) != have.get(k))
            return f"trained with other settings ({', '.join(diff)})" if diff else None
    return "its record is missing"


def _comparable(cfg: TrainConfig) -> dict:
    data = cfg.model_dump(mode="json")
    return {k: v for k, v in data.items() if k not in ("checkpoint_path", "target_ppl")}


def run_arms(scenario, store: ResultsStore, progress: bool = True) -> list[str]:
    """Run (or resume) every arm x vary combination; returns the report lines (summary table). A finished run
    is reused when its outputs verify (``done.json``'s sha256) and its record was trained with the run's
    configuration; otherwise it is set aside and run again. The arms and ``vary`` values only pick runs, so a
    study can be run a part at a time (e.g. one seed first) into the same folder."""
    runs = arm_configs(scenario.live)
    root = store.root / "live"
    prepare_live_folder(root, scenario)  # the same inputs as the per-rank live runs (radio and schemes too)
    for name, tags, cfg in runs:
        done = run_done(root / name, store, "run")
        why = config_differs(root / name, cfg) if done else None
        if why is not None:
            store.set_aside(root / name, f"{why}; run again")
        if not done or why is not None:
            _run(scenario, store, name, tags, cfg, progress)
    names = [name for name, _, _ in runs]
    table = pd.DataFrame([json.loads((root / n / "summary.json").read_text()) for n in names])
    atomic_write_csv(root / "arms_summary.csv", table)
    curves = [row for n in names for row in json.loads((root / n / "curve.json").read_text())]
    atomic_write_csv(root / "arms_curve.csv", pd.DataFrame(curves))
    atomic_write_csv(root / "arms_cuts.csv", pd.concat([pd.read_csv(root / n / "cuts.csv") for n in names]))
    shown = [c for c in table.columns if c not in ("model", "first_val_ppl", "target_ppl", "cuts_start")]
    return ["## Live arms (real split-LoRA training timed by the engine)", "", to_markdown(table[shown]), ""]
