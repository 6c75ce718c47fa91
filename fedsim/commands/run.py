"""``fedsim run SCENARIO``: the main job. Live co-simulation (if the scenario has one), the Monte Carlo
sweep, the rows in results/<name>/, figures and a summary table -- all done by ``fedsim.api.run``."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from fedsim.commands._model_options import add_overrides_option
from fedsim.errors import InputError
from fedsim.experiments.harness.executors import EXECUTORS, RAY_CONNECT_TIMEOUT_S
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
        "--ray-timeout",
        type=float,
        default=RAY_CONNECT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"give up connecting to the Ray cluster after this long (default {RAY_CONNECT_TIMEOUT_S:g})",
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
    from fedsim.experiments.montecarlo.tasks import SchemeFailed

    scenario = load_scenario(args.scenario, args.overrides)  # validates everything before anything is written
    with interruptible():  # SIGINT / SIGTERM: workers stop, finished parts stay, exit 130 / 143
        try:
            _check_limits(scenario, Path(args.out) if args.out else None)
            _connect(args)
            return _run(args, scenario, api)
        except Interrupted as stop:
            from fedsim.experiments.runner import default_out_dir

            out = Path(args.out) if args.out else default_out_dir(scenario)
            parts = out / "parts"
            saved = len(list(parts.glob("p*_d*.json"))) if parts.is_dir() else 0
            print(
                f"fedsim run: interrupted by {stop.name}; {saved} finished unit(s) kept in {parts}; "
                f"rerun `{_again(args, out)}` to resume",
                file=sys.stderr,
            )
            return stop.exit_code
        except SchemeFailed as failed:  # the user's own code: its traceback, then where and how to rerun it
            print(failed.traceback_text.rstrip(), file=sys.stderr)
            print(
                f"fedsim run: error: scheme {failed.scheme!r} raised {failed.error} at sweep point "
                f"{failed.point}, drop {failed.drop}; reproduce it alone with `{_reproduce(args, failed)}`",
                file=sys.stderr,
            )
            return 1


def _training_configs(scenario) -> tuple[list, list]:
    """(live TrainConfigs, study TrainConfigs) of the scenario: every live rank or arm, every study point."""
    from fedsim.experiments.kinds import live_enabled

    live, study = [], []
    if live_enabled(scenario):
        if scenario.live.arms:
            from fedsim.scenario.arms import arm_configs

            live = [cfg for _, _, cfg in arm_configs(scenario.live)]
        else:
            base = scenario.live.training
            live = [base.model_copy(update={"rank": int(r)}) for r in (scenario.live.ranks or (base.rank,))]
    if scenario.study is not None:
        from fedsim.experiments.study.runs import run_config
        from fedsim.scenario.points import sweep_points

        points = len(sweep_points(scenario.sweep.axes, scenario.sweep.mode))
        study = [run_config(scenario, p) for p in range(points)]
    return live, study


def _check_limits(scenario, out: Path | None) -> None:
    """Before any work: every training run's sequence length and memory against the model and this
    machine, and the study's checkpoints against the free disk (one line each, with the numbers)."""
    from fedsim.experiments.harness.lock import check_folder
    from fedsim.experiments.runner import default_out_dir
    from fedsim.learn.limits import check_checkpoint_disk, check_run

    out = out if out is not None else default_out_dir(scenario)
    check_folder(out)
    live, study = _training_configs(scenario)
    seen = set()
    for cfg in live + study:
        key = (cfg.model, cfg.seq_len, cfg.batch_size, cfg.num_clients, cfg.rank, cfg.scheme, cfg.device)
        if key not in seen:
            seen.add(key)
            check_run(cfg)
    check_checkpoint_disk(study, out)


def _connect(args: argparse.Namespace) -> None:
    """--executor ray: connect before any work starts, within --ray-timeout seconds (one line if not)."""
    if args.executor != "ray":
        return
    if not args.ray_timeout > 0:
        raise InputError(f"--ray-timeout: a positive number of seconds, got {args.ray_timeout:g}")
    from fedsim.experiments.harness.executors import connect_ray

    connect_ray(args.ray_address, args.workers, timeout_s=args.ray_timeout)


def _argv(args: argparse.Namespace) -> list[str]:
    """The command line this run was started with (after ``fedsim``)."""
    argv = getattr(args, "_argv", None)
    return list(argv) if argv is not None else ["run", str(args.scenario)]


def _again(args: argparse.Namespace, out: Path) -> str:
    """The command that resumes this run: the same command line, --out made explicit, without --fresh."""
    argv = [a for a in _argv(args) if a != "--fresh"]
    if args.out is None:
        argv += ["--out", str(out)]
    return "fedsim " + shlex.join(argv)


def _reproduce(args: argparse.Namespace, failed) -> str:
    """``fedsim optimize SCENARIO [--set ...] --point P --drop D --scheme NAME``: the failing task alone."""
    argv = ["optimize", str(args.scenario)]
    for override in args.overrides:
        argv += ["--set", override]
    argv += ["--point", str(failed.point), "--drop", str(failed.drop), "--scheme", failed.scheme]
    return "fedsim " + shlex.join(argv)


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
