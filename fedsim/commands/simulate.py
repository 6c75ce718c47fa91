"""``fedsim simulate``: optimise one drop, time its training in the discrete-event engine, print it all.

Settings come from a scenario file when one is given (its [system], [model], [training] and [engine]
sections), else from the spec §7 defaults; the generated ``--<system field>`` and ``--<engine field>``
options override either.
"""

from __future__ import annotations

import json

import numpy as np

from fedsim.commands._model_options import add_model_options, model_from_args
from fedsim.engine import EngineConfig, phase_summary, simulate
from fedsim.errors import InputError
from fedsim.system import SystemParams


def add_parser(subparsers) -> None:
    from fedsim.optimize import POWER_SOLVERS, SCHEMES

    parser = subparsers.add_parser(
        "simulate",
        help="optimise one drop and time its training in the event engine",
        description="Draw one drop, optimise it (proposed BCD or a baseline), run the SimPy engine on the "
        "decisions and print the drop, the decisions, per-round and total delay and the trace summary. "
        "Defaults: spec §7, engine in paper mode (its total then equals eq. 17).",
    )
    parser.add_argument("scenario", nargs="?", default=None, help="scenario TOML (optional)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a scenario key (repeatable; needs SCENARIO)",
    )
    parser.add_argument("--seed", type=int, default=0, help="drop seed (default 0); engine stream [seed, 2]")
    parser.add_argument("--scheme", choices=SCHEMES, default="proposed", help="proposed or baseline a-d")
    parser.add_argument("--power-solver", choices=POWER_SOLVERS, default="exact", help="power-control solver")
    parser.add_argument(
        "--rounds",
        type=float,
        default=None,
        help="global rounds to simulate (default E(r) of the optimised rank)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON record instead of tables")
    parser.add_argument("--trace-csv", default=None, metavar="PATH", help="write the event trace as CSV")
    work = parser.add_argument_group("workload and training (without SCENARIO)")
    work.add_argument("--model", default="gpt2", help="shipped model name, hub alias or config path (gpt2)")
    work.add_argument("--seq-len", type=int, default=512, help="tokens per sample L (512)")
    work.add_argument("--batch-size", type=int, default=16, help="b, samples per client per iteration (16)")
    work.add_argument("--local-iterations", type=int, default=10, help="I, local iterations per round (10)")
    work.add_argument("--ranks", default="1,2,4,6,8", help="candidate LoRA ranks R (1,2,4,6,8)")
    work.add_argument(
        "--rounds-by-rank",
        default=None,
        help="E(r) per rank in --ranks order (default spec §7: 240,204,180,174,170)",
    )
    add_model_options(
        parser.add_argument_group("system (SystemParams; defaults spec §7)"), SystemParams, "sys"
    )
    add_model_options(
        parser.add_argument_group("engine (EngineConfig; defaults = paper mode)"), EngineConfig, "eng"
    )
    parser.set_defaults(func=run)


def _settings(args) -> dict:
    """System, engine, workload and training settings from the scenario (if any) and the options."""
    from fedsim.commands.optimize import parse_rounds
    from fedsim.model_configs import load_model_config
    from fedsim.workload import workload_from_config

    if args.scenario is None:
        if args.overrides:
            raise InputError("--set needs a SCENARIO file")
        try:
            workload = workload_from_config(load_model_config(args.model), seq_len=args.seq_len)
        except ValueError as exc:  # InputError is a ValueError too
            raise InputError(str(exc)) from None
        return {
            "system": model_from_args(args, SystemParams, "sys"),
            "engine": model_from_args(args, EngineConfig, "eng"),
            "workload": workload,
            "batch_size": args.batch_size,
            "local_iterations": args.local_iterations,
            "rounds_by_rank": parse_rounds(args.ranks, args.rounds_by_rank),
            "upload_every_local_iteration": bool(args.eng_lora_upload_every_iteration),
            "per_client_cuts": False,
        }
    from fedsim.scenario import load_scenario
    from fedsim.sweep.tasks import rounds_by_rank_of, workload_of

    sc = load_scenario(args.scenario, args.overrides)
    upload = sc.training.upload_every_local_iteration
    engine = model_from_args(args, EngineConfig, "eng", sc.engine)
    return {
        "system": model_from_args(args, SystemParams, "sys", sc.system),
        "engine": engine.model_copy(update={"lora_upload_every_iteration": upload}),
        "workload": workload_of(sc),
        "batch_size": sc.training.batch_size,
        "local_iterations": sc.training.local_iterations,
        "rounds_by_rank": rounds_by_rank_of(sc)[0],
        "upload_every_local_iteration": upload,
        "per_client_cuts": sc.training.per_client_cuts,
    }


def _round_table(rows: list[dict]) -> list[str]:
    lines = [
        f"{'round':>5} {'start s':>10} {'duration s':>11} {'clients':>7} {'failed':>6} {'dropped':>7} "
        f"{'aggregated':>10} {'energy J':>9}"
    ]
    for r in rows:
        lines.append(
            f"{r['round']:>5} {r['start_s']:>10.2f} {r['duration_s']:>11.3f} {r['clients_started']:>7} "
            f"{r['clients_failed']:>6} {r['clients_dropped']:>7} {r['clients_aggregated']:>10} "
            f"{r['energy_j']:>9.3g}"
        )
    return lines


def _phases(sim) -> list[dict]:
    if sim.trace.empty:
        return []
    s = phase_summary(sim.trace).groupby("phase")[["events", "busy_s", "bits", "flops"]].sum().reset_index()
    return s.to_dict("records")


def run(args) -> int:
    from fedsim.commands.optimize import format_result, optimize_drop

    cfg = _settings(args)
    drop, result = optimize_drop(
        cfg["system"],
        cfg["workload"],
        cfg["batch_size"],
        cfg["local_iterations"],
        cfg["rounds_by_rank"],
        args.seed,
        args.scheme,
        args.power_solver,
        cfg["upload_every_local_iteration"],
        cfg["per_client_cuts"],
    )
    rounds = float(result.delays.rounds if args.rounds is None else args.rounds)
    if not rounds > 0:
        raise InputError(f"--rounds must be > 0, got {args.rounds}")
    if not np.isfinite(result.delays.total_s):
        print(
            format_result(drop, result, args.seed)
            if not args.json
            else json.dumps({"seed": args.seed, **result.to_dict(), "engine": None}, indent=1, default=str)
        )
        return 1
    sim = simulate(
        drop,
        cfg["workload"],
        result.allocation,
        cfg["batch_size"],
        cfg["local_iterations"],
        rounds,
        cfg["engine"],
        np.random.default_rng([args.seed, 2]),
    )
    if args.trace_csv:
        sim.trace.to_csv(args.trace_csv, index=False)
    analytic = result.delays.total_s * rounds / result.delays.rounds
    if args.json:
        record = {
            "seed": args.seed,
            "system": cfg["system"].model_dump(),
            "engine_config": cfg["engine"].model_dump(),
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
    lines = [format_result(drop, result, args.seed), "", f"engine: {rounds:g} round(s) simulated"]
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
