"""``fedsim optimize``: draw one drop, optimise it with the proposed scheme or a baseline, print it all.

The SystemParams options are generated from ``SystemParams.model_fields`` so their help and validation
come from one place. ``optimize_drop`` is the reusable core (the scenario runner calls it too).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from pydantic import ValidationError

from fedsim.errors import InputError
from fedsim.optimize import POWER_SOLVERS, SCHEMES, Problem, Result, optimize
from fedsim.optimize.power import client_counts
from fedsim.system import Drop, SystemParams, draw_drop
from fedsim.workload import Workload

# spec §7 PROPOSED E(r) at I = 10
DEFAULT_ROUNDS = {1: 240.0, 2: 204.0, 4: 180.0, 6: 174.0, 8: 170.0}


def optimize_drop(
    system: SystemParams,
    workload: Workload,
    batch_size: int,
    local_iterations: int,
    rounds_by_rank: dict[int, float],
    seed: int,
    scheme: str = "proposed",
    power_solver: str = "exact",
    upload_every_local_iteration: bool = False,
    per_client_cuts: bool = False,
    refine: bool = True,
) -> tuple[Drop, Result]:
    """Draw drop ``seed`` of ``system`` and optimise it with ``scheme``.

    The drop comes from ``default_rng(seed)`` (the same drop for every scheme); a baseline's random choices
    come from the independent stream ``default_rng([seed, 1])``.
    """
    drop = draw_drop(system, np.random.default_rng(seed))
    problem = Problem(
        drop,
        workload,
        batch_size,
        local_iterations,
        dict(rounds_by_rank),
        upload_every_local_iteration,
        per_client_cuts,
    )
    result = optimize(
        problem, scheme, rng=np.random.default_rng([seed, 1]), power_solver=power_solver, refine=refine
    )
    return drop, result


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "optimize",
        help="optimise subchannels, power, split and rank for one random drop",
        description="Draw one drop of the system, run the proposed BCD (Algorithm 3) or a baseline a-d, and "
        "print the drop, the decisions and every delay term. Defaults: spec §7.",
    )
    parser.add_argument("--seed", type=int, default=0, help="drop seed (default 0)")
    parser.add_argument("--scheme", choices=SCHEMES, default="proposed", help="proposed or baseline a-d")
    parser.add_argument(
        "--power-solver",
        choices=POWER_SOLVERS,
        default="exact",
        help="exact bisection/Newton (flat channels) or cvxpy/CLARABEL (also fading)",
    )
    parser.add_argument(
        "--no-refine",
        action="store_true",
        help="run Algorithm 2 as written, without the exact subchannel-count refinement",
    )
    parser.add_argument("--per-client-cuts", action="store_true", help="one cut per client (spec §10)")
    parser.add_argument(
        "--upload-every-local-iteration",
        action="store_true",
        help="reading D2 of eq. (17): LoRA upload in every local iteration",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON record (enough to recompute T)")
    work = parser.add_argument_group("workload and training")
    work.add_argument("--model", default="gpt2", help="shipped model name, hub alias or config path (gpt2)")
    work.add_argument("--seq-len", type=int, default=512, help="tokens per sample L (512)")
    work.add_argument("--bits", type=int, default=32, help="bits per activation / LoRA value (32)")
    work.add_argument("--workload-mode", default="analytic", help="analytic or table3 (spec §8)")
    work.add_argument("--batch-size", type=int, default=16, help="b, samples per client per iteration (16)")
    work.add_argument("--local-iterations", type=int, default=10, help="I, local iterations per round (10)")
    work.add_argument("--ranks", default="1,2,4,6,8", help="candidate LoRA ranks R (1,2,4,6,8)")
    work.add_argument(
        "--rounds",
        default=None,
        help="E(r) per rank in --ranks order, comma-separated (default spec §7: 240,204,180,174,170)",
    )
    system = parser.add_argument_group("system (SystemParams; defaults spec §7)")
    for name, field in SystemParams.model_fields.items():
        if field.annotation is bool or field.annotation == "bool":
            system.add_argument(
                _flag(name),
                dest=f"sys_{name}",
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{field.description} (default {field.default})",
            )
        else:
            kind = int if field.annotation in (int, "int") else float
            system.add_argument(
                _flag(name),
                dest=f"sys_{name}",
                type=kind,
                default=None,
                metavar="VALUE",
                help=f"{field.description} (default {field.default:g})",
            )
    parser.set_defaults(func=run)


def _int_list(text: str, option: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{option} must be comma-separated integers, got {text!r}") from None


def parse_rounds(ranks_text: str, rounds_text: str | None) -> dict[int, float]:
    """E(r) per rank from the --ranks and --rounds options."""
    ranks = _int_list(ranks_text, "--ranks")
    if not ranks:
        raise InputError("--ranks must list at least one rank")
    if rounds_text is None:
        missing = [r for r in ranks if r not in DEFAULT_ROUNDS]
        if missing:
            raise InputError(
                f"--rounds: no default E(r) for rank(s) {missing} (defaults exist for "
                f"{sorted(DEFAULT_ROUNDS)}); pass --rounds with one value per rank"
            )
        return {r: DEFAULT_ROUNDS[r] for r in ranks}
    try:
        values = [float(v) for v in rounds_text.split(",")]
    except ValueError:
        raise InputError(f"--rounds must be comma-separated numbers, got {rounds_text!r}") from None
    if len(values) != len(ranks):
        raise InputError(f"--rounds has {len(values)} values but --ranks has {len(ranks)}")
    return dict(zip(ranks, values, strict=True))


def system_from_args(args) -> SystemParams:
    """SystemParams from the generated options; a validation error names the option."""
    values = {
        n: getattr(args, f"sys_{n}")
        for n in SystemParams.model_fields
        if getattr(args, f"sys_{n}") is not None
    }
    try:
        return SystemParams(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = _flag(str(err["loc"][0])) if err["loc"] else "system"
        raise InputError(f"{where}: {err['msg']}") from None


def _db(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 10 * np.log10(x)


def format_result(drop: Drop, result: Result, seed: int) -> str:
    """Human-readable drop, decisions and delays."""
    a, d = result.allocation, result.delays
    k = drop.num_clients
    lines = [
        f"drop seed {seed}: K={k}, federated server at (0, 0) m, main server at "
        f"({drop.main_xy_m[0]:g}, {drop.main_xy_m[1]:g}) m",
        f"{'client':>6} {'x m':>8} {'y m':>8} {'d_main m':>9} {'d_fed m':>8} {'g_main dB':>10} "
        f"{'g_fed dB':>9} {'GFLOP/s':>8}",
    ]
    g_main = drop.main.gain if drop.main.gain.ndim == 1 else drop.main.gain.mean(axis=1)
    g_fed = drop.fed.gain if drop.fed.gain.ndim == 1 else drop.fed.gain.mean(axis=1)
    for c in range(k):
        lines.append(
            f"{c:>6} {drop.positions_m[c, 0]:>8.1f} {drop.positions_m[c, 1]:>8.1f} "
            f"{drop.distance_main_m[c]:>9.1f} {drop.distance_fed_m[c]:>8.1f} {_db(g_main[c]):>10.1f} "
            f"{_db(g_fed[c]):>9.1f} {drop.client_flops_per_s[c] / 1e9:>8.1f}"
        )
    lines += [
        "",
        f"scheme {result.scheme}: status {result.status}, {result.iterations} iteration(s), "
        f"solvers {result.solver_status}",
        f"{'client':>6} {'n_main':>6} {'P_main W':>9} {'n_fed':>5} {'P_fed W':>8} {'cut':>4} {'rank':>4} "
        f"{'t_F s':>8} {'t_A s':>8} {'t_B s':>8} {'t_U s':>8}",
    ]
    n_main, n_fed = client_counts(a.owner_main, k), client_counts(a.owner_fed, k)
    p_main = np.bincount(a.owner_main, weights=a.psd_main_w_hz * drop.main.subchannel_hz, minlength=k)
    p_fed = np.bincount(a.owner_fed, weights=a.psd_fed_w_hz * drop.fed.subchannel_hz, minlength=k)
    for c in range(k):
        lines.append(
            f"{c:>6} {n_main[c]:>6} {p_main[c]:>9.4f} {n_fed[c]:>5} {p_fed[c]:>8.4f} {a.cuts[c]:>4} "
            f"{a.ranks[c, 0]:>4} {d.t_client_fwd_s[c]:>8.3f} {d.t_upload_act_s[c]:>8.3f} "
            f"{d.t_client_bwd_s[c]:>8.3f} {d.t_upload_lora_s[c]:>8.4f}"
        )
    for name, owner, psd, link in (
        ("main", a.owner_main, a.psd_main_w_hz, drop.main),
        ("fed", a.owner_fed, a.psd_fed_w_hz, drop.fed),
    ):
        lines.append(f"{name} subchannel owners: {' '.join(str(o) for o in owner)}")
        lines.append(
            f"{name} power per subchannel mW: {' '.join(f'{1e3 * p * link.subchannel_hz:.3g}' for p in psd)}"
        )
    lines += [
        "",
        f"T1 {d.T1_s:.4f} s   t_s^F {d.t_server_fwd_s:.4f} s   t_s^B {d.t_server_bwd_s:.4f} s   "
        f"T2 {d.T2_s:.4f} s   T3 {d.T3_s:.4f} s",
        f"iteration t {d.iteration_s:.4f} s   E(r) {d.rounds:g}   I {d.local_iterations}   "
        f"total T {d.total_s:.1f} s ({d.total_s / 3600:.2f} h)",
    ]
    return "\n".join(lines)


def run(args) -> int:
    from fedsim.model_configs import load_model_config
    from fedsim.workload import workload_from_config

    system = system_from_args(args)
    rounds = parse_rounds(args.ranks, args.rounds)
    try:
        workload = workload_from_config(
            load_model_config(args.model), seq_len=args.seq_len, bits=args.bits, mode=args.workload_mode
        )
    except ValueError as exc:  # InputError is a ValueError too
        raise InputError(str(exc)) from None
    drop, result = optimize_drop(
        system,
        workload,
        args.batch_size,
        args.local_iterations,
        rounds,
        args.seed,
        args.scheme,
        args.power_solver,
        args.upload_every_local_iteration,
        args.per_client_cuts,
        refine=not args.no_refine,
    )
    if args.json:
        record = {"seed": args.seed, "system": system.model_dump(), "model": args.model, **result.to_dict()}
        print(json.dumps(record, indent=1, allow_nan=False))
    else:
        print(format_result(drop, result, args.seed))
    return 0 if result.status in ("optimal", "converged", "max_iterations") else 1
