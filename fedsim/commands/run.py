"""``fedsim run SCENARIO``: the main job. Live co-simulation (if the scenario has one), the Monte Carlo
sweep, the rows in results/<name>/, figures and a summary table."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fedsim.commands._model_options import add_overrides_option
from fedsim.scenario import load_scenario
from fedsim.sweep.executors import EXECUTORS
from fedsim.sweep.runner import default_out_dir, run_sweep
from fedsim.sweep.store import ResultsStore, atomic_write_text
from fedsim.sweep.summary import sweep_report


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a scenario: live co-simulation and/or Monte Carlo sweep, rows, figures, summary",
        description="Run a scenario file end to end. Finished tasks are kept: rerunning resumes a killed run.",
    )
    parser.add_argument("scenario", help="scenario TOML file, e.g. scenarios/quickstart.toml")
    add_overrides_option(parser, "montecarlo.drops=10")
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="process",
        help="where sweep tasks run (default: process, every local core)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes / Ray CPUs (default: cores)"
    )
    parser.add_argument(
        "--ray-address", default=None, help="address of a running Ray cluster (--executor ray)"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="delete earlier rows of this scenario and start over"
    )
    parser.add_argument("--out", default=None, help="results folder (default: results/<scenario name>)")
    parser.add_argument("--no-figures", action="store_true", help="skip the figures")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fedsim.errors import InputError

    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be >= 1, got {args.workers}")
    if args.ray_address and args.executor != "ray":
        raise InputError("--ray-address needs --executor ray")
    scenario = load_scenario(args.scenario, args.overrides)  # validates everything before anything is written
    from fedsim.sweep.tasks import preflight

    preflight(scenario)
    store = ResultsStore(Path(args.out) if args.out else default_out_dir(scenario))
    store.prepare(
        scenario,
        fresh=args.fresh,
        meta={
            "command": "fedsim run",
            "scenario_file": str(args.scenario),
            "overrides": list(args.overrides),
            "executor": args.executor,
        },
    )
    if scenario.training.records:
        store.write_record_curves(scenario.training.records)
    started = time.perf_counter()
    progress = not args.no_progress
    report: list[str] = [f"# {scenario.name}", "", scenario.description.strip(), ""]
    if scenario.live is not None and scenario.live.enabled:
        from fedsim.sweep.live import run_live

        report += run_live(scenario, store, progress=progress)
    if scenario.study is not None:
        from fedsim.sweep.study import write_study_tables

        rows = run_sweep(scenario, store, args.executor, args.workers, args.ray_address, progress)
        report += write_study_tables(rows, scenario.study.targets, store.root / "tables")
    elif scenario.montecarlo.drops > 0 and scenario.schemes.names:
        rows = run_sweep(scenario, store, args.executor, args.workers, args.ray_address, progress)
        if not rows.empty:
            report += sweep_report(rows, scenario.montecarlo.timing)
    if not args.no_figures:
        from fedsim.plots import make_figures

        figures = make_figures(store.root)
        report += ["## Figures", ""] + [f"- {p.relative_to(store.root)}" for p in figures] + [""]
    report.append(f"Done in {time.perf_counter() - started:.1f} s; results in {store.root}/")
    text = "\n".join(report)
    atomic_write_text(store.root / "summary.md", text + "\n")
    print(text)
    return 0
