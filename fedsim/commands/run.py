"""``fedsim run SCENARIO``: the main job. Live co-simulation (if the scenario has one), the Monte Carlo
sweep, the rows in results/<name>/, figures and a summary table -- all done by ``fedsim.api.run``."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from fedsim.commands._model_options import add_overrides_option
from fedsim.experiments.harness.executors import EXECUTORS
from fedsim.interrupt import Interrupted, interruptible
from fedsim.scenario import load_scenario


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
    from fedsim import api

    scenario = load_scenario(args.scenario, args.overrides)  # validates everything before anything is written
    with interruptible():  # SIGINT / SIGTERM: workers stop, finished parts stay, exit 130 / 143
        try:
            return _run(args, scenario, api)
        except Interrupted as stop:
            from fedsim.experiments.runner import default_out_dir

            out = Path(args.out) if args.out else default_out_dir(scenario)
            saved = len(list((out / "parts").glob("p*_d*.json")))
            print(
                f"fedsim run: interrupted by {stop.name}; {saved} finished unit(s) kept in {out / 'parts'}; "
                f"rerun `fedsim run {shlex.quote(str(args.scenario))} --out {shlex.quote(str(out))}` "
                "(same options) to resume",
                file=sys.stderr,
            )
            return stop.exit_code


def _run(args: argparse.Namespace, scenario, api) -> int:
    _, folder = api.run(
        scenario,
        executor=args.executor,
        workers=args.workers,
        ray_address=args.ray_address,
        out=args.out,
        fresh=args.fresh,
        figures=not args.no_figures,
        progress=not args.no_progress,
        meta={
            "command": "fedsim run",
            "scenario_file": str(args.scenario),
            "overrides": list(args.overrides),
        },
    )
    print((folder / "summary.md").read_text(encoding="utf-8"), end="")
    return 0
