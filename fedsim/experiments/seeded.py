"""One drop drawn from a plain seed and optimised: ``fedsim optimize/simulate --seed N`` without a sweep.

A sweep's drops come from ``SeedSequence([base_seed, point, drop])`` instead (``fedsim.experiments.harness.seeds``);
``fedsim.api.optimize_drop(scenario, point=P, drop=D)`` reproduces one of those.
"""

from __future__ import annotations

import numpy as np

from fedsim.core.system import Drop, SystemParams
from fedsim.core.workload import Workload
from fedsim.optimize import Problem, Result, optimize
from fedsim.radio import draw_radio_drop


def optimize_drop(
    system: SystemParams,
    workload: Workload,
    batch_size: int,
    *,
    local_iterations: int,
    rounds_by_rank: dict[int, float],
    seed: int,
    scheme: str = "proposed",
    power_solver: str = "exact",
    upload_every_local_iteration: bool = False,
    per_client_cuts: bool = False,
    refine: bool = True,
    radio=None,
) -> tuple[Drop, Result]:
    """Draw drop ``seed`` of ``system`` and optimise it with ``scheme``.

    The drop comes from ``default_rng(seed)`` (the same drop for every scheme); a baseline's random choices
    come from the independent stream ``default_rng([seed, 1])``. ``radio`` is the scenario's ``[radio]``
    section (None: the paper's radio).
    """
    drop = draw_radio_drop(system, radio, np.random.default_rng(seed))
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
