"""``fedsim optimize``: draw one drop, optimise it with the proposed scheme or a baseline, print it all.

Options and settings are shared with ``fedsim simulate`` (``fedsim/commands/_drop.py``); the work is
done by the library (``fedsim.experiments.seeded.optimize_drop`` for ``--seed``, ``fedsim.api`` for
``--point/--drop``).
"""

from __future__ import annotations

import json

import numpy as np

from fedsim.commands._drop import (
    DEFAULT_ROUNDS,
    add_drop_arguments,
    drop_settings,
    optimize_settings,
    parse_rounds,
    sweep_unit,
)
from fedsim.core.allocation import client_power_w
from fedsim.core.system import Drop
from fedsim.experiments.seeded import optimize_drop
from fedsim.optimize import Result
from fedsim.optimize.power import client_counts

__all__ = ["DEFAULT_ROUNDS", "format_result", "optimize_drop", "parse_rounds"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "optimize",
        help="optimise subchannels, power, split and rank for one random drop",
        description="Draw one drop of the system, run the proposed BCD (Algorithm 3) or a baseline a-d, and "
        "print the drop, the decisions and every delay term. Settings come from SCENARIO if given, else "
        "from the spec §7 defaults; the options override either.",
    )
    add_drop_arguments(parser)
    parser.set_defaults(func=run)


def _db(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 10 * np.log10(x)


def format_result(drop: Drop, result: Result, label) -> str:
    """Human-readable drop, decisions and delays; ``label`` names the drop (an int: its plain seed)."""
    a, d = result.allocation, result.delays
    k = drop.num_clients
    lines = [
        f"drop {f'seed {label}' if isinstance(label, int) else label}: K={k}, federated server at (0, 0) m, main server at "
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
    p_main = client_power_w(a.owner_main, a.psd_main_w_hz, drop.main.subchannel_hz, num_clients=k)
    p_fed = client_power_w(a.owner_fed, a.psd_fed_w_hz, drop.fed.subchannel_hz, num_clients=k)
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


def solve(args) -> tuple[Drop, Result, dict, object]:
    """(drop, result, JSON head, label) of the drop the options ask for: a sweep's (point, drop) of
    SCENARIO through ``fedsim.api``, or a plain seed under the resolved settings."""
    unit = sweep_unit(args)
    if unit is not None:
        from fedsim import api

        scenario, point, drop = unit
        result = api.optimize_drop(
            scenario, point=point, drop=drop, scheme=args.scheme, refine=not args.no_refine
        )
        at = api.at_point(scenario, point)
        head = {
            "point": point,
            "drop": drop,
            "system": at.system.model_dump(),
            "model": result.problem.workload.name,
        }
        return result.problem.drop, result, head, f"point {point} drop {drop}"
    cfg = drop_settings(args)
    drop, result = optimize_settings(cfg, args)
    seed = 0 if args.seed is None else args.seed
    return (
        drop,
        result,
        {"seed": seed, "system": cfg["system"].model_dump(), "model": cfg["workload"].name},
        seed,
    )


def run(args) -> int:
    drop, result, head, label = solve(args)
    if args.json:
        print(json.dumps({**head, **result.to_dict()}, indent=1, allow_nan=False))
    else:
        print(format_result(drop, result, label))
    return 0 if result.status in ("optimal", "converged", "max_iterations") else 1
