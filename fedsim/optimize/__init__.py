"""Resource optimiser for problem (18): subchannels, power, split and rank (spec §4-§6, §10).

Public API::

    optimize(problem, scheme="proposed", rng=None, power_solver="exact") -> Result
    brute_force(problem) -> Result
"""

from __future__ import annotations

import numpy as np

from fedsim.errors import InputError
from fedsim.optimize.baselines import SCHEME_SPECS, SCHEMES, SchemeSpec
from fedsim.optimize.bcd import run_bcd
from fedsim.optimize.bruteforce import brute_force
from fedsim.optimize.problem import Problem, Result, validate_problem

POWER_SOLVERS = ("exact", "cvxpy")

__all__ = ["POWER_SOLVERS", "Problem", "Result", "SCHEMES", "SchemeSpec", "brute_force", "optimize"]


def optimize(
    problem: Problem,
    scheme: str = "proposed",
    rng: np.random.Generator | None = None,
    power_solver: str = "exact",
    refine: bool = True,
) -> Result:
    """Optimise one drop with the proposed BCD (Algorithm 3) or a baseline a-d (spec §6).

    Args:
        problem: the drop, workload, schedule and E(r).
        scheme: one of SCHEMES.
        rng: required for the baselines, which draw random choices.
        power_solver: "exact" (bisection, flat channels) or "cvxpy" (CLARABEL; also handles fading).
        refine: after Algorithm 2, re-choose the subchannel counts jointly with the powers (flat channels;
            see ``fedsim.optimize.joint``). False runs the paper's Algorithm 3 as written.
    """
    if scheme not in SCHEME_SPECS:
        raise InputError(f"scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    if power_solver not in POWER_SOLVERS:
        raise InputError(f"power_solver must be one of {', '.join(POWER_SOLVERS)}, got {power_solver!r}")
    spec = SCHEME_SPECS[scheme]
    if spec.needs_rng and rng is None:
        raise InputError(f"scheme {scheme!r} draws random choices: pass rng=np.random.Generator")
    validate_problem(problem)
    return run_bcd(problem, spec, scheme, rng, power_solver, refine=refine)
