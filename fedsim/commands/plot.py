"""``fedsim plot RESULTS_DIR``: redraw the figures and tables of a results folder from its saved rows."""

from __future__ import annotations

import argparse
from pathlib import Path

from fedsim.errors import InputError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="draw figures and tables from a results folder's saved rows",
        description="Draw the figures (PNG/PDF) and tables of results/<scenario>/ from its saved rows.",
    )
    parser.add_argument(
        "results_dir", help="a results folder written by fedsim run, e.g. results/fig5_bandwidth"
    )
    parser.add_argument(
        "--format",
        dest="formats",
        action="append",
        choices=["png", "pdf", "svg"],
        help="file type (repeatable; default: the scenario's outputs.formats)",
    )
    parser.add_argument(
        "--stat",
        choices=["mean", "median"],
        help="delay curves: mean with 95 %% t-CI bands or median with IQR bands (default: outputs.stat)",
    )
    parser.add_argument(
        "--y-scale",
        choices=["log", "linear"],
        help="delay axis scale (default: log, outputs.y_log)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Draw while holding the folder's one-writer lock (a running ``fedsim run`` or ``plot`` refuses us)."""
    from fedsim.atomic import remove_stale_temps
    from fedsim.experiments.harness.lock import folder_lock
    from fedsim.plots import make_figures

    overrides = {}
    if args.stat:
        overrides["stat"] = args.stat
    if args.y_scale:
        overrides["y_log"] = args.y_scale == "log"
    root = Path(args.results_dir)
    if not (root / "scenario.json").is_file():  # checked before the lock, which would create the folder
        raise InputError(f"{root}: not a results folder (no scenario.json); run `fedsim run` first")
    with folder_lock(root, "fedsim plot"):
        remove_stale_temps(root / "figures")  # figure writes cut short by a kill
        made = make_figures(root, args.formats, overrides)
    if not made:
        raise InputError(f"{args.results_dir}: no rows to draw (run the scenario first)")
    for path in made:
        print(path)
    return 0
