"""Run a scenario's sweep: plan its kind's units, skip the finished ones, run the rest on an executor, save
each unit's rows as it finishes, consolidate."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from fedsim.errors import InputError
from fedsim.experiments.harness.executors import run_units
from fedsim.experiments.harness.store import ResultsStore
from fedsim.experiments.kinds import Kind, kind_of
from fedsim.scenario.model import Scenario


def plan_units(scenario: Scenario) -> list[tuple[int, int]]:
    """Every unit of the scenario's sweep kind: (point, drop) point-major for Monte Carlo (each unit runs all
    selected schemes); one unit (point, 0) per point, a training run, in a convergence study."""
    kind = kind_of(scenario)
    return [] if kind is None else kind.plan(scenario)


def run_sweep(
    scenario: Scenario,
    store: ResultsStore,
    executor: str = "process",
    *,
    workers: int | None = None,
    ray_address: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run every unfinished unit, saving each unit's rows as it finishes; returns all rows of the plan.

    The store must be prepared (``store.prepare``) so resume/fresh has been decided.
    """
    kind = kind_of(scenario)
    if kind is None:
        raise InputError(f"{scenario.name}: no sweep to run (montecarlo.drops = 0 or no schemes, no [study])")
    scenario = _with_out(scenario, store)
    plan = kind.plan(scenario)
    done = kind.kept(scenario, store.verified())  # parts (or records) that do not verify are rerun
    todo = [unit for unit in plan if unit not in done]
    per_unit = kind.tasks_per_unit(scenario)
    bar = tqdm(
        total=len(plan) * per_unit,
        initial=(len(plan) - len(todo)) * per_unit,
        desc=f"{scenario.name} sweep",
        unit="task",
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        if todo:
            # closing(): on an interruption the executor stops its workers at once
            with closing(
                run_units(scenario, todo, executor, workers=workers, ray_address=ray_address, kind=kind)
            ) as finished:
                for point, drop, rows in finished:
                    store.write_part(point, drop, rows)
                    bar.update(per_unit)
    finally:
        bar.close()
    return store.consolidate(set(plan))


def sweep_tables(kind: Kind, rows: pd.DataFrame, scenario: Scenario, *, store: ResultsStore) -> list[str]:
    """The kind's tables of a finished sweep, written under the results folder; the summary's lines."""
    return kind.tables(rows, _with_out(scenario, store), store.root)


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
