"""The Monte Carlo sweep: plan the units (sweep point x drop), skip finished ones, run, save, consolidate."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from fedsim.scenario.model import Scenario
from fedsim.scenario.points import sweep_points
from fedsim.sweep.executors import run_units
from fedsim.sweep.store import ResultsStore


def plan_units(scenario: Scenario) -> list[tuple[int, int]]:
    """Every (point, drop) of the scenario, point-major (each unit runs all selected schemes); in a
    convergence study one unit (point, 0) per point, a training run."""
    points = len(sweep_points(scenario.sweep.axes, scenario.sweep.mode))
    if scenario.study is not None:
        return [(p, 0) for p in range(points)]
    return [(p, d) for p in range(points) for d in range(scenario.montecarlo.drops)]


def run_sweep(
    scenario: Scenario,
    store: ResultsStore,
    executor: str = "process",
    workers: int | None = None,
    ray_address: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run every unfinished unit, saving each unit's rows as it finishes; returns all rows of the plan.

    The store must be prepared (``store.prepare``) so resume/fresh has been decided.
    """
    plan = plan_units(scenario)
    if scenario.study is not None and scenario.study.existing_only:
        from fedsim.sweep.study import finished_units

        plan = finished_units(_with_out(scenario, store), plan)
    done = store.verified()  # parts that do not verify are set aside and their units rerun
    if scenario.study is not None and not scenario.study.existing_only:
        from fedsim.sweep.study import kept_units

        done = kept_units(_with_out(scenario, store), done)  # so are runs whose record went bad
    todo = [unit for unit in plan if unit not in done]
    tasks_per_unit = 1 if scenario.study is not None else len(scenario.schemes.names)
    bar = tqdm(
        total=len(plan) * tasks_per_unit,
        initial=(len(plan) - len(todo)) * tasks_per_unit,
        desc=f"{scenario.name} sweep",
        unit="task",
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        if todo:
            # closing(): on an interruption the executor stops its workers at once
            with closing(
                run_units(_with_out(scenario, store), todo, executor, workers, ray_address)
            ) as finished:
                for point, drop, rows in finished:
                    store.write_part(point, drop, rows)
                    bar.update(tasks_per_unit)
    finally:
        bar.close()
    return store.consolidate(set(plan))


def default_out_dir(scenario: Scenario, results_root: str | Path = "results") -> Path:
    """results/<scenario name>/"""
    return Path(results_root) / scenario.name


def _with_out(scenario: Scenario, store: ResultsStore) -> Scenario:
    """A study's units write records and checkpoints into the results folder: tell them where (not part of
    the stored scenario, so moving a results folder keeps it resumable)."""
    if scenario.study is None:
        return scenario
    return scenario.model_copy(
        update={"study": scenario.study.model_copy(update={"out_dir": str(store.root)})}
    )
