"""``fedsim validate SCENARIO [--set k=v ...]``: check a scenario and print it fully resolved."""

from __future__ import annotations

import argparse

from fedsim.commands._model_options import add_overrides_option
from fedsim.scenario import load_scenario
from fedsim.scenario.dump import to_toml
from fedsim.scenario.points import sweep_points


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check a scenario file and print it resolved (defaults filled in)",
        description="Validate a scenario TOML (and every sweep point) and print the resolved scenario.",
    )
    parser.add_argument("scenario", nargs="?", default=None, help="scenario TOML file")
    parser.add_argument(
        "--keys", action="store_true", help="list every scenario key with its help text and exit"
    )
    add_overrides_option(parser, "system.p_max_w=0.1")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.keys:
        from fedsim.scenario.describe import describe_text

        print(describe_text())
        return 0
    if args.scenario is None:
        from fedsim.errors import InputError

        raise InputError("give a SCENARIO file (or --keys to list every scenario key)")
    scenario = load_scenario(args.scenario, args.overrides)
    from fedsim.experiments.montecarlo.tasks import preflight

    preflight(scenario)  # the same checks `fedsim run` makes before it writes anything (validation = run)
    points = len(sweep_points(scenario.sweep.axes, scenario.sweep.mode))
    drops, schemes = scenario.montecarlo.drops, len(scenario.schemes.names)
    live = scenario.live is not None and scenario.live.enabled
    print(to_toml(scenario.model_dump(mode="json")))
    if scenario.study is not None:
        print(f"\n# OK: a convergence study of {points} training run(s), one per sweep point")
        return 0
    print(
        f"\n# OK: {points} sweep point(s) x {drops} drop(s) x {schemes} scheme(s) = {points * drops * schemes} "
        f"tasks{'; plus a live co-simulation' if live else ''}"
    )
    return 0
