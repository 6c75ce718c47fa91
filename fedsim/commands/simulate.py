"""``fedsim simulate``: optimise one drop, time its training in the discrete-event engine, print it all.

Options and settings are shared with ``fedsim optimize`` (``fedsim/commands/_drop.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fedsim.commands._drop import add_drop_arguments, drop_settings, optimize_settings, sweep_unit
from fedsim.engine import phase_summary, simulate
from fedsim.errors import InputError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="optimise one drop and time its training in the event engine",
        description="Draw one drop, optimise it (proposed BCD or a baseline), run the SimPy engine on the "
        "decisions and print the drop, the decisions, per-round and total delay and the trace summary. "
        "Defaults: spec §7, engine in paper mode (its total then equals eq. 17).",
    )
    add_drop_arguments(parser, with_engine=True)
    parser.add_argument(
        "--rounds",
        type=float,
        default=None,
        help="global rounds to simulate (default E(r) of the optimised rank)",
    )
    parser.add_argument(
        "--trace-csv",
        default=None,
        metavar="PATH",
        help="write the event trace as CSV (with --point/--drop the run is traced only then; the phase table "
        "needs a trace)",
    )
    parser.set_defaults(func=run)


def _round_table(rows: list[dict]) -> list[str]:
    lines = [
        f"{'round':>5} {'start s':>10} {'duration s':>11} {'clients':>7} {'failed':>6} {'excluded':>8} "
        f"{'aggregated':>10} {'energy J':>9}"
    ]
    for r in rows:
        lines.append(
            f"{r['round']:>5} {r['start_s']:>10.2f} {r['duration_s']:>11.3f} {r['clients_started']:>7} "
            f"{r['clients_failed']:>6} {r['clients_excluded']:>8} {r['clients_aggregated']:>10} "
            f"{r['energy_j']:>9.3g}"
        )
    return lines


def _phases(sim) -> list[dict]:
    if sim.trace.empty:
        return []
    s = phase_summary(sim.trace).groupby("phase")[["events", "busy_s", "bits", "flops"]].sum().reset_index()
    return s.to_dict("records")


def _simulate(args):
    """(drop, result, sim or None, JSON head, label, rounds) of the drop the options ask for."""
    unit = sweep_unit(args)
    if unit is not None:
        from fedsim import api
        from fedsim.experiments.montecarlo.tasks import engine_config

        scenario, point, drop = unit
        result, sim = api.simulate_drop(
            scenario,
            point=point,
            drop=drop,
            scheme=args.scheme,
            rounds=args.rounds,
            trace=bool(args.trace_csv),
            refine=not args.no_refine,
        )
        at = api.at_point(scenario, point)
        engine = engine_config(at).model_copy(update={"trace": bool(args.trace_csv)})
        head = {
            "point": point,
            "drop": drop,
            "system": at.system.model_dump(),
            "engine_config": engine.model_dump(),
        }
        rounds = float(result.delays.rounds if args.rounds is None else args.rounds)
        return result.problem.drop, result, sim, head, f"point {point} drop {drop}", rounds
    cfg = drop_settings(args, with_engine=True)
    drop, result = optimize_settings(cfg, args)
    seed = 0 if args.seed is None else args.seed
    head = {"seed": seed, "system": cfg["system"].model_dump(), "engine_config": cfg["engine"].model_dump()}
    rounds = float(result.delays.rounds if args.rounds is None else args.rounds)
    if not rounds > 0:
        raise InputError(f"--rounds must be > 0, got {args.rounds}")
    if not np.isfinite(result.delays.total_s):
        return drop, result, None, head, seed, rounds
    sim = simulate(
        drop,
        cfg["workload"],
        result.allocation,
        batch_size=cfg["batch_size"],
        local_iterations=cfg["local_iterations"],
        rounds=rounds,
        config=cfg["engine"],
        rng=np.random.default_rng([seed, 2]),
    )
    return drop, result, sim, head, seed, rounds


def _check_trace_path(path: str | None) -> None:
    """--trace-csv names a file to write: refuse a folder, or a path under a file, before simulating."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise InputError(f"--trace-csv {path}: is a folder; name a CSV file")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"--trace-csv {path}: {parent} is a file, not a folder")
            break


def run(args) -> int:
    from fedsim.commands.optimize import format_result

    _check_trace_path(args.trace_csv)
    drop, result, sim, head, label, rounds = _simulate(args)
    if sim is None:
        print(
            format_result(drop, result, label)
            if not args.json
            else json.dumps({**head, **result.to_dict(), "engine": None}, indent=1, default=str)
        )
        return 1
    if args.trace_csv:  # whole or not at all (an interruption leaves the old file, if any)
        from fedsim.atomic import atomic_write_csv

        atomic_write_csv(args.trace_csv, sim.trace)
    analytic = result.delays.total_s * rounds / result.delays.rounds
    if args.json:
        record = {
            **head,
            **result.to_dict(),
            "engine": {
                "total_s": sim.total_s,
                "analytic_total_s": analytic,
                "rounds": rounds,
                "rounds_completed": sim.rounds_completed,
                "round_rows": sim.round_rows,
                "phases": _phases(sim),
            },
        }
        print(json.dumps(record, indent=1, default=float))
        return 0
    lines = [format_result(drop, result, label), "", f"engine: {rounds:g} round(s) simulated"]
    rows = sim.round_rows
    lines += _round_table(rows if len(rows) <= 12 else rows[:5] + rows[-5:])
    if len(rows) > 12:
        lines.insert(len(lines) - 5, f"{'...':>5}")
    lines += ["", f"{'phase':<18} {'events':>7} {'busy s':>11} {'Mbit':>10} {'GFLOP':>10}"]
    for p in _phases(sim):
        lines.append(
            f"{p['phase']:<18} {p['events']:>7} {p['busy_s']:>11.3f} {p['bits'] / 1e6:>10.2f} "
            f"{p['flops'] / 1e9:>10.1f}"
        )
    lines += [
        "",
        f"engine total {sim.total_s:.3f} s ({sim.total_s / 3600:.3f} h); analytical eq. (17) "
        f"{analytic:.3f} s; ratio {sim.total_s / analytic:.6f}",
    ]
    print("\n".join(lines))
    return 0
