"""The kinds of experiment the harness runs, in one registry: what each plans, runs per unit, keeps on a
rerun, and writes as tables. ``kind_of`` picks a scenario's sweep kind; ``live`` runs before it when the
scenario has an enabled ``[live]`` section.

| kind        | unit (point, drop)                          | rows per unit                    | tables        |
|-------------|---------------------------------------------|----------------------------------|---------------|
| montecarlo  | every (sweep point, Monte Carlo drop)       | one per scheme (optimised, timed)| summary       |
| study       | (sweep point, 0): one real training run     | one per run (E(r) per target)    | E(r), Table IV|
| live        | a rank or an arm: real training in the engine | (written under ``live/``)      | arms, curves  |

The harness (``harness.executors``) takes a kind and calls only ``run_unit``, ``prime`` and ``seed_worker``
(module-level functions, so they travel to spawned and Ray workers by reference).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fedsim.experiments.live import arms as live_arms
from fedsim.experiments.live import runs as live_runs
from fedsim.experiments.montecarlo import summary as mc_summary
from fedsim.experiments.montecarlo import tasks as mc_tasks
from fedsim.experiments.study import runs as study_runs
from fedsim.experiments.study import tables as study_tables
from fedsim.scenario.model import Scenario
from fedsim.scenario.points import sweep_points

Unit = tuple[int, int]


@dataclass(frozen=True)
class Kind:
    """One kind of unit-based experiment.

    Attributes:
        name: the kind's name.
        plan: every unit of the scenario, in order.
        run_unit: (scenario, point, drop) -> rows; runs in a worker.
        kept: (scenario, finished units) -> the finished units whose outputs still verify (the others rerun).
        tasks_per_unit: progress-bar tasks one unit counts for.
        tables: (rows, scenario, results folder) -> the summary's lines (writing any table files).
        prime: (scenario) -> state computed once here and sent to every worker; seed_worker installs it.
    """

    name: str
    plan: Callable[[Scenario], list[Unit]]
    run_unit: Callable[[Scenario, int, int], list[dict]]
    kept: Callable[[Scenario, set[Unit]], set[Unit]]
    tasks_per_unit: Callable[[Scenario], int]
    tables: Callable[[pd.DataFrame, Scenario, Path], list[str]]
    prime: Callable[[Scenario], dict[str, Any]]
    seed_worker: Callable[[dict[str, Any]], None]


def _points(scenario: Scenario) -> int:
    return len(sweep_points(scenario.sweep.axes, scenario.sweep.mode))


def _mc_plan(scenario: Scenario) -> list[Unit]:
    return [(p, d) for p in range(_points(scenario)) for d in range(scenario.montecarlo.drops)]


def _mc_tables(rows: pd.DataFrame, scenario: Scenario, root: Path) -> list[str]:
    return mc_summary.sweep_report(rows, scenario.montecarlo.timing) if not rows.empty else []


def _study_plan(scenario: Scenario) -> list[Unit]:
    plan = [(p, 0) for p in range(_points(scenario))]
    if scenario.study.existing_only:  # interim tables: only the runs whose record is finished
        plan = study_runs.finished_units(scenario, plan)
    return plan


def _study_kept(scenario: Scenario, done: set[Unit]) -> set[Unit]:
    return done if scenario.study.existing_only else study_runs.kept_units(scenario, done)


def _study_unit(scenario: Scenario, point: int, drop: int) -> list[dict]:
    return study_runs.run_study_unit(scenario, point)


def _study_tables(rows: pd.DataFrame, scenario: Scenario, root: Path) -> list[str]:
    study = scenario.study
    return study_tables.write_study_tables(
        rows, study.targets, root / "tables", relative_pcts=study.relative_targets_pct
    )


def _nothing(scenario: Scenario) -> dict[str, Any]:
    return {}


def _ignore(state: dict[str, Any]) -> None:
    return None


MONTECARLO = Kind(
    name="montecarlo",
    plan=_mc_plan,
    run_unit=mc_tasks.run_unit,
    kept=lambda scenario, done: done,
    tasks_per_unit=lambda scenario: len(scenario.schemes.names),
    tables=_mc_tables,
    prime=mc_tasks.prime_workloads,
    seed_worker=mc_tasks.seed_workloads,
)
STUDY = Kind(
    name="study",
    plan=_study_plan,
    run_unit=_study_unit,
    kept=_study_kept,
    tasks_per_unit=lambda scenario: 1,
    tables=_study_tables,
    prime=_nothing,  # training runs derive nothing from [model]
    seed_worker=_ignore,
)
KINDS = {kind.name: kind for kind in (MONTECARLO, STUDY)}


def kind_of(scenario: Scenario) -> Kind | None:
    """The sweep kind of ``scenario``: a convergence study, a Monte Carlo sweep, or None (no sweep)."""
    if scenario.study is not None:
        return STUDY
    if scenario.montecarlo.drops > 0 and scenario.schemes.names:
        return MONTECARLO
    return None


def live_enabled(scenario: Scenario) -> bool:
    """Whether the scenario runs live co-simulation (before its sweep)."""
    return scenario.live is not None and scenario.live.enabled


def run_live(scenario: Scenario, store, progress: bool = True) -> list[str]:
    """Run (or resume) the live co-simulation: every named arm (SplitFT-style studies), else every rank;
    returns the summary's lines."""
    if scenario.live.arms:
        return live_arms.run_arms(scenario, store, progress)
    return live_runs.run_live(scenario, store, progress)
