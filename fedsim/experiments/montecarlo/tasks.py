"""One task of a sweep: (sweep point, Monte Carlo drop, scheme) -> tidy result rows.

A task draws the drop of its (point, drop) seed, optimises the allocation with the scheme, then times
training in the event engine in replay mode (E(r) rounds from the scenario's convergence data).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from typing import Any

import numpy as np

from fedsim.errors import InputError
from fedsim.experiments.harness import seeds
from fedsim.experiments.montecarlo.columns import decision_columns
from fedsim.radio import draw_radio_drop
from fedsim.scenario.load import scenario_at
from fedsim.scenario.model import ModelSection, Scenario, TrainingSection, engine_with_upload_reading
from fedsim.scenario.points import sweep_points

_WORKLOADS: dict[str, Any] = {}


class SchemeFailed(Exception):
    """A scheme's own code raised while optimising one (point, drop).

    Carries where (scheme, point, drop), the error's one line and its traceback as text, all plain strings
    and ints: it survives pickling (process pool, Ray) and re-creation from its arguments (SimPy), so the
    sweep's process can show the user's traceback and name the one command that reproduces it alone.
    """

    def __init__(self, scheme: str, point: int, drop: int, error: str, traceback_text: str = ""):
        super().__init__(scheme, int(point), int(drop), error, traceback_text)
        self.scheme, self.point, self.drop = scheme, int(point), int(drop)
        self.error, self.traceback_text = error, traceback_text

    def __str__(self) -> str:
        return f"scheme {self.scheme!r} failed at sweep point {self.point}, drop {self.drop}: {self.error}"


def _workload(model: ModelSection):
    from fedsim.core.model_configs import load_model_config
    from fedsim.core.workload import workload_from_config

    config = load_model_config(model.id)
    return workload_from_config(
        config,
        seq_len=model.seq_len,
        bits=model.bits,
        mode=model.workload_mode,
        lora_targets=tuple(model.lora_targets),
        bwd_factor=model.bwd_factor,
        name=model.id,
    )


def workload_of(scenario: Scenario):
    """The scenario's Workload, cached per process by the [model] section (every task of a point shares it)."""
    key = scenario.model.model_dump_json()
    if key not in _WORKLOADS:
        _WORKLOADS[key] = _workload(scenario.model)
    return _WORKLOADS[key]


def prime_workloads(scenario: Scenario) -> dict[str, Any]:
    """Compute the Workload of every sweep point here, once; the result seeds workers' caches
    (``seed_workloads``) so no worker imports transformers to read a model config."""
    for i in range(len(sweep_points(scenario.sweep.axes, scenario.sweep.mode))):
        workload_of(_point_scenario(scenario, i))
    return dict(_WORKLOADS)


def seed_workloads(workloads: dict[str, Any]) -> None:
    """Fill this process's workload cache (worker initialisers call this)."""
    _WORKLOADS.update(workloads)


@functools.lru_cache(maxsize=16)
def _rounds(training_json: str) -> tuple[tuple[tuple[int, float], ...], str]:
    training = TrainingSection.model_validate_json(training_json)
    if not training.records:
        return tuple(training.inline_rounds().items()), training.rounds_source
    from fedsim.learn.records import ConvergenceRecord, rounds_by_rank

    try:
        records = [ConvergenceRecord.load(path) for path in training.records]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"training.records: cannot read a convergence record: {exc}") from None
    target, target_text = _records_target(training, records)
    table = rounds_by_rank(records, target, training.records_aggregate, interpolate=training.records_interpolate)
    if training.ranks is not None:
        table = {r: e for r, e in table.items() if r in training.ranks}
    if not table:
        raise InputError("training.records: no record reached its target, so E(r) is unknown for every rank")
    source = ",".join(sorted({f"{rec.model}:{rec.scheme}" for rec in records}))
    if target is not None:
        source += f"@ppl{target_text}" + (" interpolated" if training.records_interpolate else "")
    counts = {rank: sum(rec.rank == rank for rec in records) for rank in sorted({rec.rank for rec in records})}
    if len(set(counts.values())) > 1:  # say how many seeds each rank has
        per_rank = ", ".join(f"r{rank}: {n}" for rank, n in counts.items())
        source += f" ({training.records_aggregate} over seeds, {per_rank})"
    elif max(counts.values()) > 1:
        source += f" ({training.records_aggregate} of {max(counts.values())} seeds)"
    return tuple(sorted(table.items())), source


def _records_target(training: TrainingSection, records) -> tuple[float | None, str]:
    """The PPL target E(r) is read at, and how the source label names it: ``training.target_ppl``, or
    ``target_within_pct`` above the records' best plateau (:func:`fedsim.learn.records.plateau_target`)."""
    if training.target_within_pct is None:
        target = training.target_ppl
        return target, "" if target is None else f"{target:g}"
    from fedsim.learn.records import plateau_target

    target, best = plateau_target(records, training.target_within_pct)
    return target, f"{target:.4g} ({training.target_within_pct:g} % above the best plateau {best:.4g})"


@functools.lru_cache(maxsize=16)
def _rounds_per_seed(training_json: str) -> tuple[tuple[int, tuple[float, ...]], ...]:
    """E(r) of every seed per rank from ``training.records`` (``training.e_draws``)."""
    from fedsim.learn.records import ConvergenceRecord, rounds_by_rank_per_seed

    training = TrainingSection.model_validate_json(training_json)
    if not training.records:
        raise InputError(
            "training.e_draws: needs training.records (E(r) measured with several seeds per rank)"
        )
    records = [ConvergenceRecord.load(path) for path in training.records]
    target, _ = _records_target(training, records)
    table = rounds_by_rank_per_seed(records, target, interpolate=training.records_interpolate)
    if training.ranks is not None:
        table = {r: v for r, v in table.items() if r in training.ranks}
    return tuple(sorted((rank, tuple(values)) for rank, values in table.items()))


def uncertainty_columns(
    scenario: Scenario, point_index: int, drop_index: int, *, scheme: str, result
) -> dict:
    """How sure the optimiser's answer is, given how sure E(r) is: the task re-optimised ``training.e_draws``
    times with each rank's E(r) drawn from its seeds (independently per rank, a seeded stream per task and
    scheme); the share of draws whose chosen rank differs from the row's, and the 5 % and 95 % quantiles of
    the predicted delay (eq. 17). Empty with ``e_draws = 0``."""
    from fedsim.optimize import get_scheme, optimize

    at = _point_scenario(scenario, point_index)
    draws = at.training.e_draws
    if draws == 0:
        return {}
    per_seed = dict(_rounds_per_seed(at.training.model_dump_json()))
    chosen = get_scheme(scheme)
    base, seed_at = at.montecarlo.base_seed, seed_point(at, point_index)
    rng = seeds.e_draw_rng(base, seed_at, drop_index, scheme=chosen.name)
    ranks, totals = [], []
    for _ in range(draws):
        table = {rank: float(rng.choice(values)) for rank, values in sorted(per_seed.items())}
        problem = dataclasses.replace(result.problem, rounds_by_rank=table)
        again = optimize(problem, chosen, rng=seeds.scheme_rng(base, seed_at, drop_index, scheme=chosen.name),
                         power_solver=at.schemes.power_solver)  # fmt: skip
        ranks.append(int(again.rank))
        totals.append(float(again.delays.total_s))
    return {
        "e_draws": draws,
        "rank_flip_share": float(np.mean(np.asarray(ranks) != int(result.rank))),
        "analytic_total_p05_s": float(np.quantile(totals, 0.05)),
        "analytic_total_p95_s": float(np.quantile(totals, 0.95)),
    }


def rounds_by_rank_of(scenario: Scenario) -> tuple[dict[int, float], str]:
    """E(r) per candidate rank and a label of where it came from (inline label or the records' schemes)."""
    table, source = _rounds(scenario.training.model_dump_json())
    return dict(table), source


_POINTS: dict[tuple[str, int], Scenario] = {}


def _point_scenario(scenario: Scenario, point_index: int) -> Scenario:
    """The scenario at one point, cached per process (keyed by the scenario's JSON)."""
    key = (scenario.model_dump_json(), int(point_index))
    if key not in _POINTS:
        if len(_POINTS) > 256:
            _POINTS.clear()
        _POINTS[key] = scenario_at(scenario, point_values(scenario, point_index))
    return _POINTS[key]


def point_values(scenario: Scenario, point_index: int) -> dict[str, Any]:
    """{dotted axis key: value} of one sweep point."""
    return sweep_points(scenario.sweep.axes, scenario.sweep.mode)[point_index]


def preflight(scenario: Scenario) -> None:
    """Raise InputError for what only shows once a point is built (model id, records, K > M, ...), before
    anything is written: workload, E(r) and a drop of every point go through the optimiser's checks."""
    from fedsim.optimize.problem import Problem, validate_problem

    if scenario.study is not None or scenario.montecarlo.drops == 0 or not scenario.schemes.names:
        return
    for i in range(len(sweep_points(scenario.sweep.axes, scenario.sweep.mode))):
        at = _point_scenario(scenario, i)
        where = f"sweep point {i} ({', '.join(f'{k}={v!r}' for k, v in point_values(scenario, i).items())})"
        try:
            drop = draw_radio_drop(at.system, at.radio, seeds.drop_rng(at.montecarlo.base_seed, i, 0))
            validate_problem(
                Problem(
                    drop=drop,
                    workload=workload_of(at),
                    batch_size=at.training.batch_size,
                    local_iterations=at.training.local_iterations,
                    rounds_by_rank=rounds_by_rank_of(at)[0],
                )
            )
        except InputError as exc:
            raise InputError(f"{where}: {exc}" if scenario.sweep.axes else str(exc)) from None


def _scalar(value: Any) -> Any:
    return value if isinstance(value, (bool, int, float, str)) else json.dumps(value)


def seed_point(scenario: Scenario, point_index: int) -> int:
    """The point index the seeds use: 0 for every point with ``same_drops_across_points``."""
    return 0 if scenario.montecarlo.same_drops_across_points else int(point_index)


@dataclasses.dataclass(frozen=True)
class _Unit:
    """What every scheme of one (point, drop) shares, worked out once per unit: the point's scenario and
    seeds, Problem (18) with the drop drawn from its seed (the schemes read it, none changes it), and the
    scheme-free columns of its rows."""

    scenario: Scenario
    point: int
    drop: int
    at: Scenario
    base_seed: int
    seed_at: int
    problem: Any  # fedsim.optimize.Problem
    rounds_source: str
    point_columns: dict[str, Any]
    seed_json: str  # the rows' "seed": the unit's SeedSequence entropy


_LAST_UNIT: list[_Unit] = []  # the unit worked out last (its schemes run one after another)


def _unit(scenario: Scenario, point_index: int, drop_index: int) -> _Unit:
    """The ``_Unit`` of (point, drop), reused while the same (frozen) scenario object asks for the same unit."""
    if _LAST_UNIT:
        last = _LAST_UNIT[0]
        if last.scenario is scenario and (last.point, last.drop) == (int(point_index), int(drop_index)):
            return last
    from fedsim.optimize import Problem

    at = _point_scenario(scenario, point_index)
    base, seed_at = at.montecarlo.base_seed, seed_point(at, point_index)
    drop = draw_radio_drop(at.system, at.radio, seeds.drop_rng(base, seed_at, drop_index))
    rounds, source = rounds_by_rank_of(at)
    problem = Problem(
        drop=drop,
        workload=workload_of(at),
        batch_size=at.training.batch_size,
        local_iterations=at.training.local_iterations,
        rounds_by_rank=rounds,
        upload_every_local_iteration=at.training.upload_every_local_iteration,
        per_client_cuts=at.training.per_client_cuts or at.schemes.per_client_cuts,
        rank_cut=at.schemes.rank_cut,
    )
    columns = {key: _scalar(value) for key, value in point_values(scenario, point_index).items()}
    seed_json = json.dumps(seeds.task_entropy(base, seed_at, drop_index))
    unit = _Unit(
        scenario, int(point_index), int(drop_index), at, base, seed_at, problem, source, columns, seed_json
    )
    _LAST_UNIT[:] = [unit]
    return unit


def problem_at(scenario: Scenario, point_index: int, drop_index: int):
    """Problem (18) of one (point, drop): the drop drawn from its seed, the point's workload and E(r)."""
    return _unit(scenario, point_index, drop_index).problem


def optimize_at(scenario: Scenario, point_index: int, drop_index: int, *, scheme: str, refine: bool = True):
    """The ``Result`` of ``scheme`` on one (point, drop), with the scheme's own stream of that unit."""
    return _optimize(_unit(scenario, point_index, drop_index), scheme, refine=refine)


def _optimize(unit: _Unit, scheme: str, *, refine: bool = True):
    from fedsim.optimize import get_scheme, optimize
    from fedsim.optimize.baselines import BcdScheme

    at, problem = unit.at, unit.problem
    chosen = get_scheme(scheme)

    def make_rng():
        return seeds.scheme_rng(unit.base_seed, unit.seed_at, unit.drop, scheme=chosen.name)

    # a built-in scheme draws only what its spec leaves random (the proposed scheme nothing); a user's
    # scheme gets a Generator proper
    rng = seeds.OnFirstUse(make_rng) if isinstance(chosen, BcdScheme) else make_rng()
    result = optimize(problem, chosen, rng=rng, power_solver=at.schemes.power_solver, refine=refine)
    ranks = np.asarray(result.allocation.ranks)
    if problem.rank_cut is not None and chosen.name != "splitft" and (ranks != problem.rank_cut).all():
        # a scheme that does not model SplitFT's cut-layer rank (spec §10c; BCD and brute force do): the
        # rank is applied to its chosen cuts afterwards
        from fedsim.optimize.splitft import with_cut_layer_rank

        result = with_cut_layer_rank(problem, result, at.schemes.rank_cut)
    return result


def _optimize_reporting_where(unit: _Unit, scheme: str):
    """``optimize_at``, with a failure of the scheme's code turned into ``SchemeFailed`` (or an InputError
    that names the scheme, point and drop); an interruption passes as it is."""
    point_index, drop_index = unit.point, unit.drop
    try:
        return _optimize(unit, scheme)
    except InputError as exc:
        raise type(exc)(f"scheme {scheme!r} at sweep point {point_index}, drop {drop_index}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any error of a scheme's code: say where, keep its traceback
        import traceback

        text = "".join(traceback.format_exception(exc))
        error = f"{type(exc).__name__}: {exc}".strip().splitlines()[0] if str(exc) else type(exc).__name__
        raise SchemeFailed(scheme, point_index, drop_index, error, text) from None


def run_task(scenario: Scenario, point_index: int, drop_index: int, *, scheme: str) -> list[dict]:
    """Optimise and time one (point, drop, scheme); returns one tidy row (a list, for uniformity).

    ``scheme`` is any reference ``[schemes] names`` accepts; the row carries the scheme's name. The drop
    comes from SeedSequence([base_seed, point, drop]), so every scheme at a point -- built-in or not --
    sees the same placement and engine randomness (common random numbers); the scheme's own random
    choices use a per-scheme stream.
    """
    return _task(_unit(scenario, point_index, drop_index), scheme)


def _task(unit: _Unit, scheme: str) -> list[dict]:
    """``run_task`` of one scheme on a unit worked out already."""
    scheme_ref = scheme  # as [schemes] names it (the row carries the scheme's own name)
    scenario, point_index, drop_index, at = unit.scenario, unit.point, unit.drop, unit.at
    seed_at = unit.seed_at
    result = _optimize_reporting_where(unit, scheme)
    drop, workload, scheme = result.problem.drop, result.problem.workload, result.scheme
    source = unit.rounds_source
    d = result.delays
    row: dict[str, Any] = {
        "scenario": scenario.name,
        "point": int(point_index),
        "drop": int(drop_index),
        "scheme": scheme,
        **unit.point_columns,
        "seed": unit.seed_json,
        "status": result.status,
        "rank": int(result.rank),
        "cut_mean": float(np.asarray(result.allocation.cuts).mean()),
        "cuts": json.dumps([int(c) for c in result.allocation.cuts]),
        "rounds": float(d.rounds),
        "rounds_source": source,
        "iteration_s": float(d.iteration_s),
        "T1_s": float(d.T1_s),
        "T2_s": float(d.T2_s),
        "T3_s": float(d.T3_s),
        "analytic_total_s": float(d.total_s),
        "optimizer_iterations": int(result.iterations),
        "solver_status": json.dumps(result.solver_status, sort_keys=True),
    }
    if at.montecarlo.timing in ("engine", "engine_round"):
        row.update(_engine_columns(at, drop, workload, result, seed_at, drop_index))
    else:
        row.update(
            {
                "total_s": float(d.total_s),
                "rounds_completed": int(math.ceil(d.rounds)),
                "energy_j": math.nan,
                "engine_status": "analytic",
            }
        )
    row.update(
        decision_columns(
            drop, result.allocation, d, rounds_from="records" if at.training.records else "inline"
        )
    )
    if at.training.e_draws:
        row.update(uncertainty_columns(scenario, point_index, drop_index, scheme=scheme_ref, result=result))
    return [row]


def engine_config(at: Scenario, trace: bool = False):
    """The scenario's EngineConfig with the LoRA-upload reading of eq. (17) taken from [training], so the
    optimiser and engine agree (``engine_with_upload_reading``). Replay tasks keep no event trace (rows keep
    only totals); the live run passes its own ``trace``."""
    return engine_with_upload_reading(at.engine, at.training.upload_every_local_iteration, trace=bool(trace))


def _engine_columns(at: Scenario, drop, workload, result, point_index: int, drop_index: int) -> dict:
    """Time the optimised allocation in the event engine (replay); infeasible allocations are not run."""
    from fedsim.engine import simulate

    if not math.isfinite(result.delays.total_s):
        return {"total_s": math.inf, "rounds_completed": 0, "energy_j": math.nan, "engine_status": "not_run"}
    rounds = float(result.delays.rounds)
    # engine_round: rounds of a deterministic engine are identical (validated on load), so one timed
    # round, repeated E(r) times, is the full run's clock (~E(r) times fewer events).
    one_round = at.montecarlo.timing == "engine_round"
    sim = simulate(
        drop,
        workload,
        result.allocation,
        batch_size=at.training.batch_size,
        local_iterations=at.training.local_iterations,
        rounds=1.0 if one_round else rounds,
        config=engine_config(at),
        rng=seeds.OnFirstUse(lambda: seeds.engine_rng(at.montecarlo.base_seed, point_index, drop_index)),
    )
    energy = [r.get("energy_j") for r in sim.round_rows if r.get("energy_j") is not None]
    energy_j = float(np.asarray(energy).sum()) if energy else math.nan
    if one_round:
        return {
            "total_s": float(sim.total_s) * rounds,
            "rounds_completed": int(math.ceil(rounds)),
            "energy_j": energy_j * rounds,
            "engine_status": "one_round_x_rounds",
        }
    return {
        "total_s": float(sim.total_s),
        "rounds_completed": int(sim.rounds_completed),
        "energy_j": energy_j,
        "engine_status": "converged" if sim.converged else "completed",
    }


def run_unit(scenario: Scenario, point_index: int, drop_index: int) -> list[dict]:
    """Every selected scheme at one (point, drop): the unit an executor runs and the store saves at once."""
    rows: list[dict] = []
    for scheme in scenario.schemes.names:
        rows.extend(run_task(scenario, point_index, drop_index, scheme=scheme))
    return rows
