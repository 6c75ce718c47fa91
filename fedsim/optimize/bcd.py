"""Algorithm 3 (BCD, spec §5.5): greedy subchannels -> power control -> split -> rank, to a fixed point.

One loop serves the proposed scheme and baselines a-d: a ``SchemeSpec`` says which blocks are optimised
and which are drawn at random once. The best allocation seen is returned (the greedy step uses heuristic
powers, so an iteration is not guaranteed to improve T); every reported delay comes from
``fedsim.core.delay.delays``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsim.core.allocation import Allocation
from fedsim.core.delay import delays, link_rates_bps
from fedsim.errors import InputError
from fedsim.optimize.greedy import greedy_assign, random_average_assign, round_robin_assign
from fedsim.optimize.joint import exact_counts
from fedsim.optimize.objective import CostModel, best_client_cuts, best_common_cut, best_rank
from fedsim.optimize.power import client_counts, solve_power_exact, uniform_psd
from fedsim.optimize.problem import Problem, Result
from fedsim.optimize.scheme_spec import SCHEME_SPECS, SchemeSpec

EPSILON = 1e-6
MAX_ITERATIONS = 20


def initial_rank(ranks: tuple[int, ...]) -> int:
    """r0 = 4 when it is a candidate (spec §5.5), else the middle candidate."""
    return 4 if 4 in ranks else ranks[len(ranks) // 2]


def _power_step(problem, link, owner, offset_s, load_bits, previous_psd, power_solver: str):
    """Solve (25) on one link; returns (psd, link time, status). On a solver failure the previous PSDs are
    kept (time inf so any success beats them) and the failure is reported."""
    if getattr(link.rate, "open_loop", None) is not None:  # the radio sets the powers (38.213 open loop)
        from fedsim.core.link import open_loop_psd

        psd, time_s = open_loop_psd(link, owner, problem.drop.p_max_w, offset_s=offset_s, load_bits=load_bits)
        return psd, time_s, "open_loop (38.213)" if np.isfinite(time_s) else "infeasible"
    if power_solver == "exact" and np.asarray(link.gain).ndim == 1:
        sol = solve_power_exact(link, owner, problem.drop.p_max_w, offset_s=offset_s, load_bits=load_bits)
        return sol.psd_w_hz, sol.time_s, sol.status
    if link.rate is not None:
        raise InputError(
            f"power_solver 'cvxpy' solves the Shannon rate only; this drop's rate model is {link.rate.name!r}: "
            "use power_solver = 'exact' (bisection, exact for any monotone rate)"
        )
    from fedsim.optimize.power_cvx import solve_power_cvx

    sol = solve_power_cvx(link, owner, problem.drop.p_max_w, offset_s=offset_s, load_bits=load_bits)
    if sol.status in ("optimal", "optimal_inaccurate"):
        return sol.psd_w_hz, sol.time_s, sol.status
    return previous_psd, float("inf"), f"{sol.status} (kept previous PSDs)"


def _channels_and_power(problem, link, offset_s, load_bits, psd, power_solver, refine: bool):
    """Steps 1-2 of Algorithm 3 on one link: Algorithm 2, then power control (25). With ``refine`` on a flat
    channel, the counts are then re-chosen jointly with the powers (``joint.exact_counts``) and kept if the
    link gets faster."""
    owner = greedy_assign(link, problem.drop.p_max_w, offset_s, load_bits=load_bits)
    psd, time_s, status = _power_step(problem, link, owner, offset_s, load_bits, psd, power_solver)
    if refine and np.asarray(link.gain).ndim == 1:
        counts = exact_counts(link, problem.drop.p_max_w, offset_s, load_bits=load_bits, upper_s=time_s)
        if counts is not None and not np.array_equal(counts, client_counts(owner, problem.drop.num_clients)):
            owner2 = np.repeat(np.arange(counts.shape[0]), counts)
            psd2, time2, status2 = _power_step(problem, link, owner2, offset_s, load_bits, psd, power_solver)
            if time2 < time_s:
                owner, psd, status = owner2, psd2, status2
    return owner, psd, status


_SHARED: dict = {"drop": None, "memo": {}}


def _shared_memo(problem: Problem, power_solver: str, refine: bool) -> dict:
    """The memo of steps 1-2 (``_channels_and_power``) that every run on the same Drop object shares (a sweep
    unit runs all its schemes on one drop): with the exact solver on flat channels a link's result depends
    only on the drop and the link's (offsets, loads), not on the scheme; else a fresh memo for this run."""
    flat = np.asarray(problem.drop.main.gain).ndim == 1 and np.asarray(problem.drop.fed.gain).ndim == 1
    if power_solver != "exact" or not flat:
        return {}
    if _SHARED["drop"] is not problem.drop:
        _SHARED["drop"], _SHARED["memo"] = problem.drop, {}
    return _SHARED["memo"].setdefault(bool(refine), {})


@dataclass
class _Blocks:
    """The BCD iterate: both links' subchannel owners and PSDs, the clients' cuts and the common rank."""

    owner_main: np.ndarray
    owner_fed: np.ndarray
    psd_main: np.ndarray
    psd_fed: np.ndarray
    cuts: np.ndarray
    rank: int

    def allocation(self, problem: Problem) -> Allocation:
        """A copy of the iterate as an Allocation (one rank on every block, or SplitFT's cut-layer ranks)."""
        return Allocation(
            self.owner_main.copy(),
            self.owner_fed.copy(),
            self.psd_main.copy(),
            self.psd_fed.copy(),
            np.array(self.cuts, dtype=int),
            problem.rank_layout(self.cuts, self.rank),
        )


def _initial_blocks(problem: Problem, spec: SchemeSpec, rng: np.random.Generator | None) -> _Blocks:
    """The blocks the scheme draws at random, drawn first and in a fixed order (so a seed fixes a baseline
    whatever else changes), and the fixed start of the others: round-robin subchannels, cut 1, r0 and
    uniform PSDs."""
    drop, ranks = problem.drop, problem.ranks
    k, j = drop.num_clients, problem.workload.num_layers
    m, n = drop.main.num_subchannels, drop.fed.num_subchannels
    if spec.channels == "random":
        owner_main, owner_fed = random_average_assign(m, k, rng), random_average_assign(n, k, rng)
    else:
        owner_main, owner_fed = round_robin_assign(m, k), round_robin_assign(n, k)
    if spec.cut == "random":
        cuts = (
            rng.integers(1, j + 1, size=k) if problem.per_client_cuts else np.full(k, rng.integers(1, j + 1))
        )
    else:
        cuts = np.ones(k, dtype=int)
    rank = int(rng.choice(ranks)) if spec.rank == "random" else initial_rank(ranks)
    psd_main = uniform_psd(drop.main, owner_main, drop.p_max_w)
    psd_fed = uniform_psd(drop.fed, owner_fed, drop.p_max_w)
    return _Blocks(owner_main, owner_fed, psd_main, psd_fed, cuts, rank)


def _solver_labels(problem: Problem, spec: SchemeSpec, power_solver: str, refine: bool) -> dict[str, str]:
    """Which power solver and subchannel assignment the scheme uses, as reported with its result."""
    drop = problem.drop
    solver_status: dict[str, str] = {
        "power_solver": "uniform"
        if spec.power == "uniform"
        else ("cvxpy" if power_solver == "cvxpy" or problem.fading else "exact"),
    }
    if spec.power == "optimal" and problem.fading and power_solver == "exact":
        solver_status["power_solver"] = "cvxpy (fading: the exact solver needs a flat channel)"
    if spec.power == "optimal" and drop.main.rate is not None:
        solver_status["power_solver"] = (
            "open_loop (38.213)"
            if getattr(drop.main.rate, "open_loop", None) is not None
            else f"bisection ({drop.main.rate.name} rate model)"
        )
    if spec.channels == "greedy":
        solver_status["assignment"] = "greedy (Alg. 2)" + (" + exact count refinement" if refine else "")
    return solver_status


def _links_step(
    problem: Problem,
    spec: SchemeSpec,
    model: CostModel,
    blocks: _Blocks,
    *,
    memo: dict,
    solver_status: dict[str, str],
    power_solver: str,
    refine: bool,
) -> None:
    """Steps 1-2 of Algorithm 3 for the current cuts and rank: subchannels, then powers, on both links
    (the blocks the scheme leaves free); updates ``blocks`` and the power statuses."""
    drop, k, b = problem.drop, problem.drop.num_clients, blocks
    offset_main = model.client_fwd_s(b.cuts, b.rank)
    load_main, load_fed = model.main_load_bits(b.cuts), model.fed_load_bits(b.cuts, b.rank)
    if spec.channels == "greedy" and spec.power == "optimal":
        # steps 1-2 depend only on each link's (offsets, loads): reuse them when a cut/rank step changed
        # nothing that link sees (typically the last iteration before the fixed point)
        key = ("main", offset_main.tobytes(), load_main.tobytes())
        if key not in memo:
            memo[key] = _channels_and_power(
                problem, drop.main, offset_main, load_main, b.psd_main, power_solver, refine
            )
        b.owner_main, b.psd_main, solver_status["power_main"] = memo[key]
        key = ("fed", load_fed.tobytes())
        if key not in memo:
            memo[key] = _channels_and_power(
                problem, drop.fed, np.zeros(k), load_fed, b.psd_fed, power_solver, refine
            )
        b.owner_fed, b.psd_fed, solver_status["power_fed"] = memo[key]
    elif spec.power == "optimal":
        b.psd_main, _, solver_status["power_main"] = _power_step(
            problem, drop.main, b.owner_main, offset_main, load_main, b.psd_main, power_solver
        )
        b.psd_fed, _, solver_status["power_fed"] = _power_step(
            problem, drop.fed, b.owner_fed, np.zeros(k), load_fed, b.psd_fed, power_solver
        )
    else:
        if spec.channels == "greedy":
            b.owner_main = greedy_assign(drop.main, drop.p_max_w, offset_main, load_bits=load_main)
            b.owner_fed = greedy_assign(drop.fed, drop.p_max_w, np.zeros(k), load_bits=load_fed)
        b.psd_main = uniform_psd(drop.main, b.owner_main, drop.p_max_w)
        b.psd_fed = uniform_psd(drop.fed, b.owner_fed, drop.p_max_w)


def _split_step(problem: Problem, model: CostModel, blocks: _Blocks, rate_main, rate_fed) -> np.ndarray:
    """Step 3 of Algorithm 3: the best common cut, or per-client cuts, for the current rates and rank."""
    k, cuts, rank = problem.drop.num_clients, blocks.cuts, blocks.rank
    if not problem.per_client_cuts:
        return np.full(k, best_common_cut(model, rank, rate_main, rate_fed=rate_fed)[0])
    # descent on a max-type objective can stall where moving one client alone does not pay (it becomes
    # the straggler); starting from the better of the current and the best common cut guarantees
    # per-client cuts never do worse than a common cut
    common, t_common = best_common_cut(model, rank, rate_main, rate_fed=rate_fed)
    if t_common < float(model.total_s(cuts, rank, rate_main, rate_fed_bps=rate_fed)):
        cuts = np.full(k, common)
    return best_client_cuts(model, cuts, rank, rate_main=rate_main, rate_fed=rate_fed)[0]


def _result(
    problem: Problem,
    scheme: str,
    alloc: Allocation,
    rank: int,
    status: str,
    solver_status,
    iterations,
    history,
):
    """The Result of the best allocation (rank r), its delays from ``fedsim.core.delay.delays`` (eqs. 8-17)."""
    result_delays = delays(
        problem.drop,
        problem.workload,
        alloc,
        batch_size=problem.batch_size,
        local_iterations=problem.local_iterations,
        rounds=problem.rounds_by_rank[rank],
        upload_every_local_iteration=problem.upload_every_local_iteration,
    )
    if not result_delays.feasible:
        failed = any("kept previous" in v for v in solver_status.values())
        status = "solver_failed" if failed else "infeasible"
    return Result(scheme, alloc, result_delays, status, solver_status, iterations, history, problem)


def run_bcd(
    problem: Problem,
    spec: SchemeSpec,
    scheme: str,
    *,
    rng: np.random.Generator | None,
    power_solver: str = "exact",
    max_iterations: int = MAX_ITERATIONS,
    epsilon: float = EPSILON,
    refine: bool = True,
) -> Result:
    """Run the BCD loop with the blocks ``spec`` leaves free; see module docstring.

    ``refine`` adds the exact count refinement after Algorithm 2 on flat channels (``joint.py``);
    ``refine=False`` is the paper's Algorithm 3 as written."""
    drop, model = problem.drop, CostModel.of(problem)
    k = drop.num_clients
    blocks = _initial_blocks(problem, spec, rng)
    solver_status = _solver_labels(problem, spec, power_solver, refine)
    history: list[float] = []
    memo = _shared_memo(problem, power_solver, refine)
    best: tuple[float, Allocation, int] | None = None
    iterations, status = 0, "max_iterations"
    for iteration in range(1, max_iterations + 1):
        iterations = iteration
        _links_step(
            problem,
            spec,
            model,
            blocks,
            memo=memo,
            solver_status=solver_status,
            power_solver=power_solver,
            refine=refine,
        )
        rate_main = link_rates_bps(drop.main, blocks.owner_main, blocks.psd_main, num_clients=k)
        rate_fed = link_rates_bps(drop.fed, blocks.owner_fed, blocks.psd_fed, num_clients=k)
        if spec.cut == "optimal":
            blocks.cuts = _split_step(problem, model, blocks, rate_main, rate_fed)
        if spec.rank == "optimal":
            blocks.rank, total = best_rank(model, blocks.cuts, rate_main, rate_fed=rate_fed)
        else:
            total = float(model.total_s(blocks.cuts, blocks.rank, rate_main, rate_fed_bps=rate_fed))
        history.append(total)
        if best is None or total < best[0]:
            best = (total, blocks.allocation(problem), int(blocks.rank))
        if len(history) > 1 and abs(history[-2] - total) <= epsilon * total:
            status = "converged"
            break
    return _result(problem, scheme, best[1], best[2], status, solver_status, iterations, history)


def allocate_links(
    problem: Problem,
    previous: Allocation,
    *,
    cuts: np.ndarray,
    rank: int,
    spec: SchemeSpec | None = None,
    power_solver: str = "exact",
    refine: bool = True,
) -> Allocation:
    """Subchannels and power for GIVEN per-client ``cuts`` and ``rank``: steps 1-2 of Algorithm 3 (the BCD's
    link step, ``_links_step``) once, the cut and rank steps skipped; what BCD's link step chooses for these
    cuts and rank. ``previous`` supplies what the scheme ``spec`` (default: the proposed scheme's) leaves
    fixed (random subchannels) and the PSDs kept if a power solver fails. Returns the new Allocation with
    ``cuts`` and ``problem.rank_layout(cuts, rank)``; nothing is drawn at random."""
    spec = spec if spec is not None else SCHEME_SPECS["proposed"]
    blocks = _Blocks(
        np.asarray(previous.owner_main).copy(),
        np.asarray(previous.owner_fed).copy(),
        np.asarray(previous.psd_main_w_hz, dtype=float).copy(),
        np.asarray(previous.psd_fed_w_hz, dtype=float).copy(),
        np.asarray(cuts, dtype=int).copy(),
        int(rank),
    )
    _links_step(
        problem,
        spec,
        CostModel.of(problem),
        blocks,
        memo={},
        solver_status=_solver_labels(problem, spec, power_solver, refine),
        power_solver=power_solver,
        refine=refine,
    )
    return blocks.allocation(problem)
