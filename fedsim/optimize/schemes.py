"""Allocation schemes: the protocol every scheme follows, and the registry that names them.

A scheme is any object with

- ``name``: a short identifier, the ``scheme`` column of result rows (``[A-Za-z0-9_.+-]``, 1-40 chars);
- ``description``: one or two sentences saying what it optimises and what it randomises (figure legends
  and docs read it);
- ``allocate(problem, rng) -> Result``: decide subchannels, power, cut(s) and rank(s) for one drop.
  ``rng`` is the scheme's own ``np.random.Generator`` (a sweep derives it from (point, drop, scheme name),
  so a scheme's random choices do not depend on which other schemes run beside it).

The five built-in schemes (proposed, a-d; ``fedsim.optimize.baselines``) register here like any other.
A scenario names a scheme in one of three ways, tried in this order:

1. a registered name (``register_scheme``): ``"proposed"``;
2. an import path ``"package.module:attribute"`` (a class, instantiated without arguments, or an object);
3. the name of a package entry point in the group ``fedsim.schemes`` (pyproject:
   ``[project.entry-points."fedsim.schemes"] myscheme = "mypkg.alloc:MyScheme"``).

``evaluate(problem, allocation, name)`` turns a user's decisions into a ``Result`` with every delay term
of eqs. (8)-(17), so a user scheme only has to decide.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from fedsim.core.allocation import Allocation
from fedsim.errors import InputError
from fedsim.optimize.problem import Problem, Result
from fedsim.optimize.scheme_spec import SCHEMES
from fedsim.registry import Registry, protocol_check

ENTRY_POINT_GROUP = "fedsim.schemes"
BUILTIN_SCHEMES = SCHEMES


@runtime_checkable
class Scheme(Protocol):
    """What a resource-allocation scheme provides (see module docstring)."""

    name: str
    description: str

    def allocate(self, problem: Problem, rng: np.random.Generator) -> Result:
        """Decide the allocation of one drop; return it with its delays (``evaluate`` builds that)."""
        ...


def _builtins() -> tuple[Scheme, ...]:
    from fedsim.optimize.baselines import BUILTINS
    from fedsim.optimize.splitft import SPLITFT  # SplitFT's own choices (spec §10), no optimiser

    return (*BUILTINS, SPLITFT)


SCHEME_REGISTRY = Registry(
    "scheme",
    check=protocol_check("scheme", "allocate", "allocate(problem, rng)"),
    home=__name__,
    builtins=_builtins,
    protected=BUILTIN_SCHEMES,
    entry_point_group=ENTRY_POINT_GROUP,
)


def register_scheme(scheme, *, replace: bool = False):
    """Register a scheme object (or a class, instantiated without arguments) under its ``name``.

    Usable as a class decorator; returns its argument. Re-registering a name raises unless ``replace``;
    the built-in names can never be replaced (their results are the reference).
    """
    return SCHEME_REGISTRY.register(scheme, replace=replace)


def unregister_scheme(name: str) -> None:
    """Remove a registered (non-built-in) scheme."""
    SCHEME_REGISTRY.unregister(name)


def registered_schemes() -> dict[str, Scheme]:
    """Every registered scheme by name, built-ins first."""
    return SCHEME_REGISTRY.registered()


def get_scheme(ref) -> Scheme:
    """The scheme named by ``ref``: a scheme object, a registered name, ``"pkg.mod:attr"`` or an entry point.

    Raises InputError naming the reference and what is allowed.
    """
    return SCHEME_REGISTRY.get(ref)


def scheme_name(ref) -> str:
    """The row name of the scheme ``ref`` refers to."""
    return get_scheme(ref).name


def describe(name: str) -> str:
    """The description of a scheme by row name or reference ('' when it cannot be found, e.g. a user
    scheme's rows read on a machine without its code)."""
    for scheme in SCHEME_REGISTRY.loaded():
        if scheme.name == name:
            return scheme.description
    try:
        return get_scheme(name).description
    except InputError:
        return ""


def ordered(names) -> list[str]:
    """Distinct scheme names in display order: built-ins in their fixed order, then others as first seen."""
    seen = list(dict.fromkeys(names))
    return [n for n in BUILTIN_SCHEMES if n in seen] + [n for n in seen if n not in BUILTIN_SCHEMES]


def evaluate(
    problem: Problem,
    allocation: Allocation,
    name: str,
    *,
    status: str = "optimal",
    solver_status: dict[str, str] | None = None,
    iterations: int = 1,
) -> Result:
    """A ``Result`` for ``allocation`` with every delay of eqs. (8)-(17) (``fedsim.core.delay.delays``).

    E(r) is the problem's entry for the allocation's rank (first client's first block); an infeasible
    allocation (some rate zero, a delay infinite) gets status "infeasible" whatever ``status`` says.
    """
    from fedsim.core.delay import delays

    rank = int(np.asarray(allocation.ranks).flat[0])
    if rank not in problem.rounds_by_rank:
        raise InputError(
            f"scheme {name!r} chose rank {rank}, which has no E(r) (candidates {list(problem.ranks)})"
        )
    d = delays(
        problem.drop,
        problem.workload,
        allocation,
        batch_size=problem.batch_size,
        local_iterations=problem.local_iterations,
        rounds=problem.rounds_by_rank[rank],
        upload_every_local_iteration=problem.upload_every_local_iteration,
    )
    final = status if d.feasible else "infeasible"
    return Result(
        name, allocation, d, final, dict(solver_status or {}), iterations, [float(d.total_s)], problem
    )
