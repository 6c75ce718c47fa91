"""Options and settings shared by the one-drop commands, ``fedsim optimize`` and ``fedsim simulate``.

Settings come from a scenario file when one is given (its [system], [model], [training], [schemes] and
[engine] sections), else from the spec §7 defaults; the generated ``--<system field>`` (and, for
``simulate``, ``--<engine field>``) options override either.
"""

from __future__ import annotations

from fedsim.commands._model_options import add_model_options, add_overrides_option, model_from_args
from fedsim.core.system import SystemParams
from fedsim.errors import InputError
from fedsim.scenario.model import SPEC_PROPOSED_ROUNDS, engine_with_upload_reading

# spec §7 PROPOSED E(r) at I = 10 (the one table: fedsim.scenario.model)
DEFAULT_ROUNDS = SPEC_PROPOSED_ROUNDS


def add_drop_arguments(parser, with_engine: bool = False) -> None:
    """Scenario, seed, scheme, workload, training and system options (and engine ones if asked)."""
    from fedsim.optimize import POWER_SOLVERS

    parser.add_argument("scenario", nargs="?", default=None, help="scenario TOML (optional)")
    add_overrides_option(parser, "system.num_clients=3")
    parser.add_argument(
        "--seed", type=int, default=None, help="plain drop seed, independent of any sweep (default 0)"
    )
    parser.add_argument(
        "--point",
        type=int,
        default=None,
        help="with SCENARIO: sweep point P (default 0); with --drop, shows exactly row (P, D) of `fedsim run`",
    )
    parser.add_argument(
        "--drop",
        type=int,
        default=None,
        help="with SCENARIO: Monte Carlo drop D of the sweep (its seeds), instead of --seed",
    )
    parser.add_argument(
        "--scheme",
        default="proposed",
        help="proposed, baseline a-d, a registered name, 'package.module:Class' or a fedsim.schemes entry "
        "point (default proposed)",
    )
    parser.add_argument(
        "--power-solver",
        choices=POWER_SOLVERS,
        default=None,
        help="exact bisection/Newton (flat channels) or cvxpy/CLARABEL (also fading); default exact",
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
    parser.add_argument("--json", action="store_true", help="print one JSON record instead of tables")
    work = parser.add_argument_group("workload and training (without SCENARIO)")
    work.add_argument("--model", default="gpt2", help="shipped model name, hub alias or config path (gpt2)")
    work.add_argument("--seq-len", type=int, default=512, help="tokens per sample L (512)")
    work.add_argument("--bits", type=int, default=32, help="bits per activation / LoRA value (32)")
    work.add_argument("--workload-mode", default="analytic", help="analytic or table3 (spec §8)")
    work.add_argument("--batch-size", type=int, default=16, help="b, samples per client per iteration (16)")
    work.add_argument("--local-iterations", type=int, default=10, help="I, local iterations per round (10)")
    work.add_argument("--ranks", default="1,2,4,6,8", help="candidate LoRA ranks R (1,2,4,6,8)")
    work.add_argument(
        "--rounds-by-rank",
        default=None,
        help="E(r) per rank in --ranks order, comma-separated (default spec §7: 240,204,180,174,170)",
    )
    add_model_options(
        parser.add_argument_group("system (SystemParams; defaults spec §7)"), SystemParams, "sys"
    )
    if with_engine:
        from fedsim.engine import EngineConfig

        add_model_options(
            parser.add_argument_group("engine (EngineConfig; defaults = paper mode)"), EngineConfig, "eng"
        )


def _int_list(text: str, option: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{option} must be comma-separated integers, got {text!r}") from None


def parse_rounds(ranks_text: str, rounds_text: str | None) -> dict[int, float]:
    """E(r) per rank from the --ranks and --rounds-by-rank options."""
    ranks = _int_list(ranks_text, "--ranks")
    if not ranks:
        raise InputError("--ranks must list at least one rank")
    if rounds_text is None:
        missing = [r for r in ranks if r not in DEFAULT_ROUNDS]
        if missing:
            raise InputError(
                f"--rounds-by-rank: no default E(r) for rank(s) {missing} (defaults exist for "
                f"{sorted(DEFAULT_ROUNDS)}); pass --rounds-by-rank with one value per rank"
            )
        return {r: DEFAULT_ROUNDS[r] for r in ranks}
    try:
        values = [float(v) for v in rounds_text.split(",")]
    except ValueError:
        raise InputError(f"--rounds-by-rank must be comma-separated numbers, got {rounds_text!r}") from None
    if len(values) != len(ranks):
        raise InputError(f"--rounds-by-rank has {len(values)} values but --ranks has {len(ranks)}")
    return dict(zip(ranks, values, strict=True))


def sweep_unit(args) -> tuple | None:
    """(scenario, point, drop) when --point/--drop ask for a drop of SCENARIO's sweep, else None.

    Settings then come from SCENARIO and --set only, as in ``fedsim run``: other setting options are
    errors rather than silently ignored."""
    if args.point is None and args.drop is None:
        return None
    if args.scenario is None:
        raise InputError("--point/--drop need a SCENARIO (the sweep whose drop to show)")
    given = [
        flag
        for flag, value in (
            ("--seed", args.seed),
            ("--power-solver", args.power_solver),
            ("--per-client-cuts", args.per_client_cuts or None),
            ("--upload-every-local-iteration", args.upload_every_local_iteration or None),
        )
        if value is not None
    ]
    given += [
        "--" + name[4:].replace("_", "-")
        for name, value in vars(args).items()
        if name[:4] in ("sys_", "eng_") and value is not None
    ]
    if given:
        raise InputError(
            f"{given[0]}: with --point/--drop the settings come from SCENARIO; use --set instead"
        )
    from fedsim.scenario import load_scenario

    return load_scenario(args.scenario, args.overrides), args.point or 0, args.drop or 0


def drop_settings(args, with_engine: bool = False) -> dict:
    """System, workload, training (and engine) settings from the scenario, if any, and the options."""
    if args.scenario is None:
        from fedsim.core.model_configs import load_model_config
        from fedsim.core.workload import workload_from_config

        if args.overrides:
            raise InputError("--set needs a SCENARIO file")
        try:
            workload = workload_from_config(
                load_model_config(args.model), seq_len=args.seq_len, bits=args.bits, mode=args.workload_mode
            )
        except ValueError as exc:  # InputError is a ValueError too
            raise InputError(str(exc)) from None
        cfg = {
            "system": model_from_args(args, SystemParams, "sys"),
            "workload": workload,
            "batch_size": args.batch_size,
            "local_iterations": args.local_iterations,
            "rounds_by_rank": parse_rounds(args.ranks, args.rounds_by_rank),
            "upload_every_local_iteration": args.upload_every_local_iteration,
            "per_client_cuts": args.per_client_cuts,
            "power_solver": args.power_solver or "exact",
        }
        base_engine = None
    else:
        from fedsim.experiments.montecarlo.tasks import rounds_by_rank_of, workload_of
        from fedsim.scenario import load_scenario

        sc = load_scenario(args.scenario, args.overrides)
        cfg = {
            "system": model_from_args(args, SystemParams, "sys", base=sc.system),
            "workload": workload_of(sc),
            "batch_size": sc.training.batch_size,
            "local_iterations": sc.training.local_iterations,
            "rounds_by_rank": rounds_by_rank_of(sc)[0],
            "upload_every_local_iteration": sc.training.upload_every_local_iteration
            or args.upload_every_local_iteration,
            "per_client_cuts": sc.training.per_client_cuts or args.per_client_cuts,
            "power_solver": args.power_solver or sc.schemes.power_solver,
            "radio": sc.radio,
        }
        base_engine = sc.engine
    if with_engine:
        from fedsim.engine import EngineConfig

        engine = model_from_args(args, EngineConfig, "eng", base=base_engine)
        upload = cfg["upload_every_local_iteration"] or engine.lora_upload_every_iteration
        cfg["upload_every_local_iteration"] = upload
        cfg["engine"] = engine_with_upload_reading(engine, upload)
    return cfg


def optimize_settings(cfg: dict, args):
    """Draw drop ``args.seed`` and optimise it with ``args.scheme`` under the resolved settings."""
    from fedsim.experiments.seeded import optimize_drop

    return optimize_drop(
        cfg["system"],
        cfg["workload"],
        cfg["batch_size"],
        local_iterations=cfg["local_iterations"],
        rounds_by_rank=cfg["rounds_by_rank"],
        seed=0 if args.seed is None else args.seed,
        scheme=args.scheme,
        power_solver=cfg["power_solver"],
        upload_every_local_iteration=cfg["upload_every_local_iteration"],
        per_client_cuts=cfg["per_client_cuts"],
        refine=not args.no_refine,
        radio=cfg.get("radio"),
    )
