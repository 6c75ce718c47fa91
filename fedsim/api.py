"""fedsim's public Python API: everything the command line does, as functions.

::

    from fedsim import api

    scenario = api.load_scenario("scenarios/fig5_bandwidth.toml", ["montecarlo.drops=5"])
    rows, folder = api.run(scenario, executor="serial", out="results/my_fig5")
    rows.pivot_table(index="system.bandwidth_main_hz", columns="scheme", values="total_s")

    result = api.optimize_drop(scenario, point=2, drop=3)      # = row (point 2, drop 3, "proposed")
    result, sim = api.simulate_drop(scenario, point=2, drop=3) # + the event-engine run and its trace

Extension points (same objects the built-ins use): ``register_scheme`` / ``Scheme`` / ``evaluate``
(allocation schemes; a scenario may also name ``"package.module:Class"`` or a ``fedsim.schemes`` entry
point) and ``register_family`` / ``ModelFamily`` (how the split finds a model family's pieces).

The names in ``__all__`` are the stable API; the modules behind them may move.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from fedsim.core.system import Drop
from fedsim.errors import InputError
from fedsim.learn.split.families import ModelFamily, register_family
from fedsim.optimize import Problem, Result, Scheme, evaluate, get_scheme, register_scheme
from fedsim.scenario import Scenario, load_scenario, scenario_from_dict

__all__ = [
    "InputError",
    "ModelFamily",
    "Problem",
    "Result",
    "RunOutput",
    "Scenario",
    "Scheme",
    "at_point",
    "build_workload",
    "draw",
    "evaluate",
    "evaluate_study",
    "get_scheme",
    "load_scenario",
    "optimize_drop",
    "problem",
    "register_family",
    "register_scheme",
    "run",
    "scenario_from_dict",
    "simulate_drop",
    "train",
]


class RunOutput(NamedTuple):
    """What ``run`` returns: the tidy rows (one per point, drop and scheme) and the results folder."""

    rows: pd.DataFrame
    folder: Path


def run(
    scenario: Scenario,
    *,
    executor: str = "process",
    workers: int | None = None,
    ray_address: str | None = None,
    out: str | Path | None = None,
    fresh: bool = False,
    figures: bool = True,
    progress: bool = False,
    meta: dict | None = None,
) -> RunOutput:
    """Run a scenario end to end, as ``fedsim run`` does: live co-simulation (if any), Monte Carlo sweep,
    rows, figures and ``summary.md`` in ``out`` (default ``results/<name>``). A folder holding finished
    units of the same scenario is resumed unless ``fresh``.

    Args:
        executor: "serial", "process" (local cores) or "ray"; ``workers`` processes / Ray CPUs.
        meta: extra entries for ``meta.json`` (the CLI records its command line there).
    Returns:
        ``RunOutput(rows, folder)``; rows is empty when the scenario has no sweep.
    """
    from fedsim.atomic import atomic_write_text
    from fedsim.experiments.harness.executors import EXECUTORS
    from fedsim.experiments.harness.store import ResultsStore
    from fedsim.experiments.kinds import kind_of, live_enabled, run_live
    from fedsim.experiments.montecarlo.tasks import preflight
    from fedsim.experiments.runner import default_out_dir, run_sweep, sweep_tables

    if executor not in EXECUTORS:
        raise InputError(f"executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    if ray_address and executor != "ray":
        raise InputError("ray_address needs executor 'ray'")
    preflight(scenario)  # everything that can fail on input fails before anything is written
    store = ResultsStore(Path(out) if out else default_out_dir(scenario))
    kind = kind_of(scenario)
    # one writer per folder; interim tables of a running study only read its finished records
    interim = scenario.study is not None and scenario.study.existing_only
    with nullcontext() if interim else store.lock(str((meta or {}).get("command", "fedsim.api.run"))):
        store.prepare(
            scenario, fresh=fresh, meta={"executor": executor, **(meta or {"command": "fedsim.api.run"})}
        )
        if scenario.training.records:
            store.write_record_curves(scenario.training.records)
        started = time.perf_counter()
        report: list[str] = [f"# {scenario.name}", "", scenario.description.strip(), ""]
        if live_enabled(scenario):
            report += run_live(scenario, store, progress=progress)
        rows = pd.DataFrame()
        if kind is not None:  # a Monte Carlo sweep, or a study: a sweep of training runs
            rows = run_sweep(
                scenario, store, executor, workers=workers, ray_address=ray_address, progress=progress
            )
            report += sweep_tables(kind, rows, scenario, store=store)
        if figures:
            from fedsim.plots import make_figures

            drawn = make_figures(store.root)
            report += ["## Figures", ""] + [f"- {p.relative_to(store.root)}" for p in drawn] + [""]
        report.append(f"Done in {time.perf_counter() - started:.1f} s; results in {store.root}/")
        atomic_write_text(store.root / "summary.md", "\n".join(report) + "\n")
    return RunOutput(rows, store.root)


def _check_unit(scenario: Scenario, point: int, drop: int) -> None:
    from fedsim.scenario.points import sweep_points

    points = len(sweep_points(scenario.sweep.axes, scenario.sweep.mode))
    if isinstance(point, bool) or not isinstance(point, (int, np.integer)) or not 0 <= point < points:
        raise InputError(
            f"point must be an integer in 0..{points - 1} (the scenario's sweep points), got {point!r}"
        )
    if isinstance(drop, bool) or not isinstance(drop, (int, np.integer)) or drop < 0:
        raise InputError(f"drop must be an integer >= 0, got {drop!r}")


def at_point(scenario: Scenario, point: int) -> Scenario:
    """The scenario with sweep point ``point``'s values set (what every task of that point runs)."""
    from fedsim.experiments.montecarlo.tasks import _point_scenario

    _check_unit(scenario, point, 0)
    return _point_scenario(scenario, int(point))


def problem(scenario: Scenario, *, point: int = 0, drop: int = 0) -> Problem:
    """Problem (18) of sweep point ``point``, Monte Carlo drop ``drop``: exactly what the sweep solves."""
    from fedsim.experiments.montecarlo.tasks import problem_at

    _check_unit(scenario, point, drop)
    return problem_at(scenario, int(point), int(drop))


def draw(scenario: Scenario, *, point: int = 0, drop: int = 0) -> Drop:
    """The placement (positions, gains, power caps, compute) of one (point, drop) of the scenario."""
    return problem(scenario, point=point, drop=drop).drop


def optimize_drop(
    scenario: Scenario,
    *,
    point: int = 0,
    drop: int = 0,
    scheme: str | Scheme = "proposed",
    refine: bool = True,
) -> Result:
    """Optimise one (point, drop) with ``scheme`` (any reference ``[schemes] names`` accepts, or a scheme
    object): the same draw, random stream and solver settings as that row of ``run``."""
    from fedsim.experiments.montecarlo.tasks import optimize_at

    _check_unit(scenario, point, drop)
    return optimize_at(scenario, int(point), int(drop), scheme=scheme, refine=refine)


def simulate_drop(
    scenario: Scenario,
    *,
    point: int = 0,
    drop: int = 0,
    scheme: str | Scheme = "proposed",
    rounds: float | None = None,
    trace: bool = False,
    refine: bool = True,
):
    """Optimise one (point, drop) and time it in the event engine as the sweep does (its engine switches
    and engine stream), for ``rounds`` global rounds (default E(r) of the chosen rank).

    Returns ``(result, sim)``: the ``Result`` and the engine's ``SimResult`` (``sim.total_s``,
    ``sim.round_rows``, and with ``trace`` one ``sim.trace`` row per event). Without a trace the engine
    fuses back-to-back holds exactly as the sweep does, so ``sim.total_s`` equals the row's ``total_s``
    bit for bit; a traced run agrees to rounding (~1e-12 relative). An infeasible allocation is not
    simulated (``sim`` is None; ``result.status`` says why).
    """
    from fedsim.engine import simulate
    from fedsim.experiments.harness import seeds
    from fedsim.experiments.montecarlo.tasks import _point_scenario, engine_config, seed_point

    result = optimize_drop(scenario, point=point, drop=drop, scheme=scheme, refine=refine)
    if not np.isfinite(result.delays.total_s):
        return result, None
    rounds = float(result.delays.rounds if rounds is None else rounds)
    if not rounds > 0:
        raise InputError(f"rounds must be > 0, got {rounds}")
    at = _point_scenario(scenario, int(point))
    config = engine_config(at).model_copy(update={"trace": bool(trace)})
    p = result.problem
    rng = seeds.engine_rng(at.montecarlo.base_seed, seed_point(at, int(point)), int(drop))
    sim = simulate(
        p.drop,
        p.workload,
        result.allocation,
        batch_size=p.batch_size,
        local_iterations=p.local_iterations,
        rounds=rounds,
        config=config,
        rng=rng,
    )
    return result, sim


def build_workload(
    model: str = "gpt2",
    *,
    seq_len: int = 512,
    bits: int = 32,
    mode: str = "analytic",
    lora_targets: tuple[str, ...] = ("q", "v"),
    bwd_factor: float = 2.0,
):
    """Per-block FLOPs and bits of ``model`` (shipped name, hub alias or config path) from its config
    alone (no weights): the ``Workload`` the optimiser and engine use."""
    from fedsim.experiments.montecarlo.tasks import _workload
    from fedsim.scenario.model import ModelSection

    try:
        section = ModelSection(
            id=model, seq_len=seq_len, bits=bits, workload_mode=mode, lora_targets=tuple(lora_targets),
            bwd_factor=bwd_factor,
        )  # fmt: skip
    except ValueError as exc:
        raise InputError(str(exc).replace("\n", " ")) from None
    return _workload(section)


def train(config, *, progress: bool = False, source: str = "fedsim.api.train"):
    """Real split-federated (or centralized) LoRA fine-tuning on E2E, as ``fedsim train`` does for one
    scheme and rank: ``config`` is a ``fedsim.learn.config.TrainConfig`` or a dict of its fields.
    Returns the ``ConvergenceRecord`` (val PPL curve, E(r) to the target, final test metrics)."""
    from fedsim.learn.config import TrainConfig
    from fedsim.learn.setup import load
    from fedsim.learn.train import train as train_loop

    cfg = config if isinstance(config, TrainConfig) else TrainConfig.parse(dict(config))
    model, _, data = load(cfg, progress=progress)
    return train_loop(cfg, model, data, progress=progress, source=source)


def evaluate_study(
    folder,
    *,
    samples: int | None = None,
    threads: int | None = None,
    device: str | None = None,
    progress: bool = False,
):
    """A convergence study's finished runs (final checkpoints in ``folder/checkpoints/``) on the whole
    validation split (or the first ``samples`` examples), per example, with the split-fed - centralized gap
    and each rank against the lowest paired on the same examples (``fedsim.experiments.study.precise_eval``). Returns the
    report lines; tables land in ``folder/tables/precise_eval.{csv,md}``, ``precise_gap.csv`` and
    ``precise_rank.csv``. ``device``: where to run the models (default: each run's own ``device``)."""
    import torch

    from fedsim.experiments.study.precise_eval import evaluate_study as evaluate_runs

    if samples is not None and samples < 2:
        raise InputError(f"samples: at least 2 validation examples (two halves), got {samples}")
    if device is not None:
        from fedsim.learn.federated.systems import resolve_device

        resolve_device(device)  # an unknown or absent device: one InputError naming it
    if threads is not None:
        if threads < 1:
            raise InputError(f"threads: a positive number of torch threads, got {threads}")
        torch.set_num_threads(threads)
    return evaluate_runs(Path(folder), samples, progress=progress, device=device)
