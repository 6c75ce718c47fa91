"""Resource optimiser for problem (18): subchannels, power, split and rank (spec §4-§6, §10).

Public API::

    optimize(problem, scheme="proposed", rng=None, power_solver="exact") -> Result
    brute_force(problem) -> Result
    allocate_links(problem, previous, cuts=..., rank=...) -> Allocation  (BCD's link step for given cuts)
    register_scheme(scheme), get_scheme(ref), evaluate(problem, allocation, name)  (``schemes.py``)
"""

from __future__ import annotations

import numpy as np

from fedsim.errors import InputError
from fedsim.optimize.baselines import BcdScheme
from fedsim.optimize.bcd import allocate_links
from fedsim.optimize.bruteforce import brute_force
from fedsim.optimize.problem import Problem, Result, validate_problem
from fedsim.optimize.scheme_spec import SCHEMES, SchemeSpec
from fedsim.optimize.schemes import Scheme, evaluate, get_scheme, register_scheme

POWER_SOLVERS = ("exact", "cvxpy")

__all__ = [
    "POWER_SOLVERS",
    "Problem",
    "Result",
    "SCHEMES",
    "Scheme",
    "SchemeSpec",
    "allocate_links",
    "brute_force",
    "evaluate",
    "get_scheme",
    "optimize",
    "register_scheme",
]


_VALIDATED: list[Problem] = []  # the Problem validated last (a sweep unit runs every scheme on one Problem)


def _validate_once(problem: Problem) -> None:
    """``validate_problem``, skipped when this (frozen) Problem object was the last one validated."""
    if not (_VALIDATED and _VALIDATED[0] is problem):
        validate_problem(problem)
        _VALIDATED[:] = [problem]


def optimize(
    problem: Problem,
    scheme: str | Scheme = "proposed",
    rng: np.random.Generator | None = None,
    *,
    power_solver: str = "exact",
    refine: bool = True,
) -> Result:
    """Optimise one drop with the proposed BCD (Algorithm 3) or a baseline a-d (spec §6).

    Args:
        problem: the drop, workload, schedule and E(r).
        scheme: a scheme object, or a reference ``get_scheme`` resolves: a registered name (built-ins:
            SCHEMES), ``"package.module:Class"`` or an entry point of the group ``fedsim.schemes``.
        rng: the scheme's own random stream; required for the baselines, which draw random choices.
        power_solver: "exact" (Newton + bisection fallback, flat channels) or "cvxpy" (CLARABEL; also handles fading).
            Built-in schemes use it; a user scheme decides its own power.
        refine: after Algorithm 2, re-choose the subchannel counts jointly with the powers (flat channels;
            see ``fedsim.optimize.joint``). False runs the paper's Algorithm 3 as written.
    """
    chosen = scheme if isinstance(scheme, BcdScheme) else get_scheme(scheme)  # a built-in needs no check
    if power_solver not in POWER_SOLVERS:
        raise InputError(f"power_solver must be one of {', '.join(POWER_SOLVERS)}, got {power_solver!r}")
    _validate_once(problem)
    if isinstance(chosen, BcdScheme):
        if chosen.spec.needs_rng and rng is None:
            raise InputError(f"scheme {chosen.name!r} draws random choices: pass rng=np.random.Generator")
        return chosen.with_options(power_solver, refine).allocate(problem, rng)
    result = chosen.allocate(problem, rng)
    if not isinstance(result, Result):
        raise InputError(
            f"scheme {chosen.name!r}: allocate must return a fedsim.optimize.Result (see "
            f"fedsim.optimize.evaluate), got {type(result).__name__}"
        )
    result.scheme = chosen.name  # rows are keyed by the scheme's name
    if result.problem is None:
        result.problem = problem
    return result
