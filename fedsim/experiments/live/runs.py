"""The live co-simulation of a scenario: real split-LoRA training (``LiveTrainer``) driven by the event
engine, once per LoRA rank. Writes ``live/`` in the results folder: per rank the engine's round rows, the
convergence record (val PPL vs steps and simulated time); and ``curve.csv`` + ``summary.csv`` for figures.

Faults: with ``training.checkpoint_every`` a run checkpoints into its folder and a rerun resumes it
(``fedsim.learn.live_trainer``: the engine is replayed, the training state loaded); a finished run's ``done.json``
(written last) lists the sha256 of its outputs, and a run whose outputs do not verify is set aside and
run again."""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import TypeAdapter, ValidationError

from fedsim.atomic import atomic_write_csv, atomic_write_text, set_aside
from fedsim.core.allocation import uniform_ranks
from fedsim.experiments.harness import seeds
from fedsim.experiments.harness.store import ResultsStore
from fedsim.experiments.montecarlo.summary import to_markdown
from fedsim.experiments.montecarlo.tasks import engine_config
from fedsim.radio import draw_radio_drop
from fedsim.scenario.model import Scenario

DONE = "done.json"
_LIVE_POINT = 2**31 - 1  # seed slot of the live run, apart from every sweep point


def _live_problem(scenario: Scenario, cfg, *, drop, workload, **options):
    """The delay model of one global round of the live run at the trained rank (E(r) = 1 round); ``options``
    are further Problem fields (rank_cut, per_client_cuts)."""
    from fedsim.optimize import Problem

    return Problem(
        drop=drop,
        workload=workload,
        batch_size=cfg.batch_size,
        local_iterations=cfg.local_iterations,
        rounds_by_rank={int(cfg.rank): 1.0},
        upload_every_local_iteration=scenario.training.upload_every_local_iteration,
        **options,
    )


def _allocation(scenario: Scenario, drop, workload, cfg):
    """Subchannels and power from the live scheme; cut and rank fixed by the trained model's config."""
    from fedsim.optimize import optimize
    from fedsim.optimize.schemes import scheme_name

    problem = _live_problem(scenario, cfg, drop=drop, workload=workload)
    base, d = scenario.montecarlo.base_seed, scenario.live.drop
    result = optimize(
        problem,
        scenario.live.scheme,
        rng=seeds.scheme_rng(base, _LIVE_POINT, d, scheme=scheme_name(scenario.live.scheme)),
        power_solver=scenario.schemes.power_solver,
    )
    k, j = drop.num_clients, workload.num_layers
    cut = min(int(cfg.cut), j)
    return replace(
        result.allocation, cuts=np.full(k, cut, dtype=int), ranks=uniform_ranks(k, j, int(cfg.rank))
    )


def live_cut_planner(scenario: Scenario, cfg, *, drop, workload, alloc):
    """The ``optimiser`` cut rule's planner for this drop and allocation (``cut_planner``): the delay model of
    one global round at the trained rank, with the config's cut-layer rank (on both sides of each cut: the
    config refuses the optimiser with a one-sided r_cut)."""
    from fedsim.experiments.live.cut_planner import cut_planner

    problem = _live_problem(scenario, cfg, drop=drop, workload=workload, rank_cut=cfg.rank_cut)
    return cut_planner(problem, alloc, int(cfg.rank), cut_min=cfg.adaptive_cuts.cut_min)


def live_reallocator(scenario: Scenario, cfg, *, drop, workload, alloc, adapter):
    """``adaptive_cuts.reoptimise_allocation``: the ``LinkReallocator`` that re-chooses subchannels and power
    after each cut move with the live scheme's link step (``fedsim.optimize.allocate_links``; the delay model
    of one global round at the trained rank with the config's cut-layer rank, as ``live_cut_planner``), starting
    from ``alloc``; with the ``optimiser`` rule each new allocation also rebuilds the planner on its rates."""
    from fedsim.errors import InputError
    from fedsim.experiments.live.cut_planner import LinkReallocator
    from fedsim.optimize import get_scheme
    from fedsim.optimize.baselines import BcdScheme

    scheme = get_scheme(scenario.live.scheme)
    if not isinstance(scheme, BcdScheme):
        raise InputError(
            f"adaptive_cuts.reoptimise_allocation needs a built-in scheme (its link step); live.scheme is "
            f"{scheme.name!r}"
        )
    problem = _live_problem(
        scenario, cfg, drop=drop, workload=workload, per_client_cuts=True, rank_cut=cfg.rank_cut
    )

    def on_change(new) -> None:
        if cfg.adaptive_cuts.rule == "optimiser":
            adapter.set_planner(live_cut_planner(scenario, cfg, drop=drop, workload=workload, alloc=new))

    return LinkReallocator(
        problem,
        alloc,
        rank=int(cfg.rank),
        spec=scheme.spec,
        power_solver=scenario.schemes.power_solver,
        on_change=on_change,
    )


def write_allocations(folder: Path, trainer) -> None:
    """``allocations.csv`` of a run whose radio is re-optimised after cut moves (one row per allocation version
    and client: the round it times from, subchannels main / fed, powers); nothing otherwise."""
    allocator = getattr(trainer, "allocator", None)
    if allocator is not None:
        atomic_write_csv(folder / "allocations.csv", pd.DataFrame(allocator.rows))


def live_drop(scenario: Scenario, cfg, model_config):
    """The system a live run of ``cfg`` is timed on: (drop, workload, allocation) -- the scenario's live drop,
    the workload of the trained model's config under ``[model]``'s counting settings, and the live scheme's
    subchannels and power at ``cfg``'s common cut and rank (``simulate_live`` puts the trainer's own cuts
    and ranks in)."""
    from fedsim.core.workload import workload_from_config

    workload = workload_from_config(
        model_config,
        seq_len=cfg.seq_len,
        bits=scenario.model.bits,
        mode=scenario.model.workload_mode,
        lora_targets=tuple(scenario.model.lora_targets),
        bwd_factor=scenario.model.bwd_factor,
        name=cfg.model,
    )
    system = scenario.system.model_copy(update={"num_clients": cfg.num_clients})
    rng = seeds.drop_rng(scenario.montecarlo.base_seed, _LIVE_POINT, scenario.live.drop)
    drop = draw_radio_drop(system, scenario.radio, rng)
    return drop, workload, _allocation(scenario, drop, workload, cfg)


def simulate_live(scenario: Scenario, cfg, progress: bool, *, source: str):
    """One live co-simulation of training config ``cfg`` on the scenario's system: (SimResult, trainer, alloc).

    With SplitFT settings (per-client cuts, cut-layer rank, adaptive cuts) the engine times the trainer's own
    cuts and ranks, and the adaptive rule reads the drop's client compute unless the config gives it; the
    ``optimiser`` rule gets the delay model of this drop and allocation (``cut_planner``)."""
    from fedsim.engine import simulate
    from fedsim.learn.live_trainer import LiveTrainer
    from fedsim.learn.setup import load

    live = scenario.live
    model, _, data = load(cfg, progress=progress)
    drop, workload, alloc = live_drop(scenario, cfg, model.config)
    base = scenario.montecarlo.base_seed
    trainer = LiveTrainer.from_config(cfg, model=model, data=data, progress=progress, source=source)
    if cfg.cuts is not None or cfg.rank_cut is not None or cfg.adaptive_cuts is not None:
        cuts, ranks = trainer.layout()
        alloc = replace(alloc, cuts=np.asarray(cuts, dtype=int), ranks=np.asarray(ranks, dtype=int))
    adapter = trainer.system.adapter
    if adapter is not None and cfg.adaptive_cuts.client_flops_per_s is None:
        per_block = cfg.batch_size * (workload.fwd_flops + workload.bwd_flops)
        adapter.set_compute(drop.client_flops_per_s, per_block)
    if adapter is not None and cfg.adaptive_cuts.rule == "optimiser":
        adapter.set_planner(live_cut_planner(scenario, cfg, drop=drop, workload=workload, alloc=alloc))
    if adapter is not None and cfg.adaptive_cuts.reoptimise_allocation:
        trainer.set_allocator(
            live_reallocator(scenario, cfg, drop=drop, workload=workload, alloc=alloc, adapter=adapter)
        )
    max_rounds = live.max_rounds or max(1, math.ceil(cfg.steps / cfg.local_iterations))
    sim = simulate(
        drop,
        workload,
        alloc,
        batch_size=cfg.batch_size,
        local_iterations=cfg.local_iterations,
        rounds=float(max_rounds),
        config=engine_config(
            scenario, trace=scenario.engine.trace
        ),  # the upload reading of [training], as the sweep
        rng=seeds.engine_rng(base, _LIVE_POINT, live.drop),
        trainer=trainer,
    )
    return sim, trainer, alloc


def with_checkpoint(cfg, folder):
    """``cfg`` with its checkpoint file in the run's folder when it asks for checkpoints (``checkpoint_every``
    steps): a killed live run resumes there (``fedsim.learn.live_trainer``)."""
    if not cfg.checkpoint_every:
        return cfg
    return cfg.model_copy(update={"checkpoint_path": str(folder / "checkpoint.pt")})


def _run_rank(scenario: Scenario, store: ResultsStore, rank: int, progress: bool) -> dict:
    live = scenario.live
    folder = store.root / "live" / f"rank{rank}"
    folder.mkdir(parents=True, exist_ok=True)
    cfg = with_checkpoint(live.training.model_copy(update={"rank": int(rank)}), folder)
    started = time.perf_counter()
    sim, trainer, alloc = simulate_live(
        scenario, cfg, progress, source=f"fedsim run {scenario.name} (live, rank {rank})"
    )
    atomic_write_csv(folder / "rounds.csv", pd.DataFrame(sim.round_rows))
    write_allocations(folder, trainer)
    if len(sim.trace_rows):
        atomic_write_csv(folder / "trace.csv", sim.trace)
    final = trainer.final_metrics()  # test PPL, BLEU, ROUGE-L of the deployed split model
    record = trainer.record()
    record.save(folder / record.file_name())
    ppl = [row["val_ppl"] for row in record.curve if "val_ppl" in row]
    summary = {
        "model": cfg.model,
        "rank": int(rank),
        "num_clients": cfg.num_clients,
        "cut": int(alloc.cuts[0]),
        "rounds_completed": int(sim.rounds_completed),
        "rounds_to_target": record.rounds_to_target,
        "target_ppl": cfg.target_ppl,
        "first_val_ppl": ppl[0] if ppl else None,
        "final_val_ppl": ppl[-1] if ppl else None,
        **{k: final[k] for k in ("test_ppl", "bleu", "rouge_l", "n_mrs") if k in final},
        "sim_total_s": float(sim.total_s),
        "converged": bool(sim.converged),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    curve = [
        {"rank": int(rank), "model": cfg.model, "target_ppl": cfg.target_ppl, **row} for row in record.curve
    ]
    atomic_write_text(folder / "curve.json", json.dumps(curve))
    atomic_write_text(folder / "summary.json", json.dumps(summary))  # marks the rank done
    write_done(folder)  # last: the sha256 of every output, checked on a rerun
    return summary


def write_done(folder: Path) -> None:
    """Mark a finished live run (written last): ``done.json`` holds the sha256 of every output file in
    ``folder`` (its checkpoint carries its own)."""
    files = {
        p.name: _sha256(p)
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name not in (DONE, "checkpoint.pt") and not p.name.startswith(".")
    }
    atomic_write_text(folder / DONE, json.dumps({"sha256": files}, indent=1))


def run_done(folder: Path, store: ResultsStore, what: str = "rank") -> bool:
    """True if the live run in ``folder`` finished and its outputs verify; a damaged one is set aside
    (renamed into ``set-aside/``, one line on stderr) so that the run is trained again."""
    if not (folder / "summary.json").exists():
        return False  # not finished (an interrupted run resumes from its checkpoint, if any)
    why = _damage(folder)
    if why is not None:
        store.set_aside(folder, f"{why}; {what} rerun")
    return why is None


def _damage(folder: Path) -> str | None:
    """What is wrong with a finished run's outputs, or None."""
    if (folder / DONE).exists():
        try:
            listed = json.loads((folder / DONE).read_text())["sha256"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
            return f"{DONE} does not read back (truncated or garbled)"
        for name, digest in listed.items():
            if not (folder / name).is_file():
                return f"{name} is missing"
            if _sha256(folder / name) != digest:
                return f"{name} does not match its sha256 (truncated or damaged)"
        return None
    try:  # killed before done.json, or written by an older fedsim: the JSON outputs must read back
        ok = isinstance(json.loads((folder / "summary.json").read_text()), dict)
        ok = ok and isinstance(json.loads((folder / "curve.json").read_text()), list)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        ok = False
    return None if ok else "outputs of a finished run do not read back (truncated or garbled)"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prepare_live_folder(root: Path, scenario: Scenario) -> None:
    """Create ``root`` (``live/``) for the scenario's live runs. Finished runs are reused only while
    everything a live run depends on is unchanged (kept in ``inputs.json``); otherwise the folder is set aside
    (``set-aside/``, never deleted) and the runs start over. ``live.arms`` and ``live.vary`` do not count: they
    pick which runs exist, and each arm run checks its own training config
    (``fedsim.experiments.live.arms.config_differs``). The saved inputs are read back through today's scenario
    model, so a field added since (at its default) does not count as a change."""
    data = scenario.model_dump(mode="json")
    picked = {k: data.get(k) for k in _INPUT_SECTIONS}
    upload = scenario.training.upload_every_local_iteration
    inputs = json.dumps(
        {**picked, "base_seed": scenario.montecarlo.base_seed, "upload_every_local_iteration": upload},
        sort_keys=True,
    )
    old = root / "inputs.json"
    if old.exists():
        changed = _changed_inputs(old.read_text(encoding="utf-8"), inputs)
        if changed:
            set_aside(root.parent, root, f"the live runs' inputs changed ({changed}); they start over")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "inputs.json", inputs)


_INPUT_SECTIONS = ("live", "system", "engine", "model", "schemes", "radio")


def _changed_inputs(old_text: str, new_text: str) -> str:
    """The top-level inputs that differ between two ``inputs.json`` texts ('' when none), each scenario
    section read through its current model (a field added later reads as its default), ``live.arms`` and
    ``live.vary`` left out; an old text that no longer reads counts as changed."""
    try:
        old, new = _current_reading(json.loads(old_text)), _current_reading(json.loads(new_text))
    except (json.JSONDecodeError, ValidationError, TypeError, AttributeError):
        return "inputs.json no longer reads as today's scenario sections"
    return ", ".join(sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k)))


def _current_reading(data: dict) -> dict:
    out = dict(data)
    for key in _INPUT_SECTIONS:
        if key in out:
            adapter = TypeAdapter(Scenario.model_fields[key].annotation)
            out[key] = adapter.dump_python(adapter.validate_python(out[key]), mode="json")
    if isinstance(out.get("live"), dict):
        out["live"] = {k: v for k, v in out["live"].items() if k not in ("arms", "vary")}
    return out


def run_live(scenario: Scenario, store: ResultsStore, progress: bool = True) -> list[str]:
    """Run (or resume) every rank of the live section; returns summary lines for the report. (A section with
    named arms runs through ``fedsim.experiments.live.arms.run_arms`` instead.)"""
    live = scenario.live
    ranks = live.ranks or (live.training.rank,)
    root = store.root / "live"
    prepare_live_folder(root, scenario)
    for rank in ranks:
        if not run_done(root / f"rank{rank}", store):
            _run_rank(scenario, store, int(rank), progress)
    summaries = [json.loads((root / f"rank{r}" / "summary.json").read_text()) for r in ranks]
    curves = [row for r in ranks for row in json.loads((root / f"rank{r}" / "curve.json").read_text())]
    table = pd.DataFrame(summaries)
    atomic_write_csv(root / "summary.csv", table)
    atomic_write_csv(root / "curve.csv", pd.DataFrame(curves))
    return [
        "## Live co-simulation (real split-LoRA training timed by the engine)",
        "",
        to_markdown(table),
        "",
    ]
