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

import importlib
import importlib.metadata
import re
from typing import Protocol, runtime_checkable

import numpy as np

from fedsim.allocation import Allocation
from fedsim.errors import InputError
from fedsim.optimize.problem import Problem, Result

ENTRY_POINT_GROUP = "fedsim.schemes"
BUILTIN_SCHEMES = ("proposed", "a", "b", "c", "d")
_NAME = re.compile(r"^[A-Za-z0-9_.+-]{1,40}$")


@runtime_checkable
class Scheme(Protocol):
    """What a resource-allocation scheme provides (see module docstring)."""

    name: str
    description: str

    def allocate(self, problem: Problem, rng: np.random.Generator) -> Result:
        """Decide the allocation of one drop; return it with its delays (``evaluate`` builds that)."""
        ...


_REGISTRY: dict[str, Scheme] = {}
_RESOLVED: dict[str, Scheme] = {}  # import paths and entry points already loaded


def _checked(scheme: object, where: str) -> Scheme:
    """``scheme`` (instantiated if a class) once it has a valid name, a description and ``allocate``."""
    if isinstance(scheme, type):
        try:
            scheme = scheme()
        except TypeError as exc:
            raise InputError(
                f"{where}: cannot instantiate the scheme class without arguments: {exc}"
            ) from None
    missing = [a for a in ("name", "description", "allocate") if not hasattr(scheme, a)]
    if missing or not callable(scheme.allocate):
        raise InputError(
            f"{where}: not a scheme (needs name, description and allocate(problem, rng); missing "
            f"{', '.join(missing) or 'a callable allocate'})"
        )
    if not isinstance(scheme.name, str) or not _NAME.match(scheme.name):
        raise InputError(f"{where}: scheme name must match [A-Za-z0-9_.+-]{{1,40}}, got {scheme.name!r}")
    if not isinstance(scheme.description, str) or not scheme.description.strip():
        raise InputError(
            f"{where}: scheme {scheme.name!r} needs a description (what it optimises/randomises)"
        )
    return scheme


def register_scheme(scheme, *, replace: bool = False):
    """Register a scheme object (or a class, instantiated without arguments) under its ``name``.

    Usable as a class decorator; returns its argument. Re-registering a name raises unless ``replace``;
    the built-in names can never be replaced (their results are the reference).
    """
    obj = _checked(scheme, f"register_scheme({scheme!r})")
    if obj.name in _REGISTRY and (not replace or obj.name in BUILTIN_SCHEMES):
        raise InputError(f"scheme {obj.name!r} is already registered")
    _REGISTRY[obj.name] = obj
    return scheme


def unregister_scheme(name: str) -> None:
    """Remove a registered (non-built-in) scheme."""
    if name in BUILTIN_SCHEMES:
        raise InputError(f"the built-in scheme {name!r} cannot be removed")
    _REGISTRY.pop(name, None)
    for ref in [ref for ref, s in _RESOLVED.items() if s.name == name]:
        del _RESOLVED[ref]


def _ensure_builtins() -> None:
    if "proposed" not in _REGISTRY:
        from fedsim.optimize.baselines import BUILTINS

        for scheme in BUILTINS:
            _REGISTRY[scheme.name] = scheme
        from fedsim.optimize.splitft import SPLITFT  # SplitFT's own choices (spec §10), no optimiser

        _REGISTRY[SPLITFT.name] = SPLITFT


def registered_schemes() -> dict[str, Scheme]:
    """Every registered scheme by name, built-ins first."""
    _ensure_builtins()
    return dict(_REGISTRY)


def _from_import_path(ref: str) -> Scheme:
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"scheme {ref!r}: cannot import module {module_name!r}: {exc}") from None
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise InputError(f"scheme {ref!r}: module {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    return _checked(target, f"scheme {ref!r}")


def _from_entry_point(ref: str) -> Scheme | None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == ref:
            try:
                target = ep.load()
            except Exception as exc:  # a broken plug-in must name itself, whatever it raised
                raise InputError(f"scheme {ref!r}: entry point {ep.value!r} failed to load: {exc}") from None
            return _checked(target, f"scheme {ref!r} (entry point {ep.value!r})")
    return None


def get_scheme(ref) -> Scheme:
    """The scheme named by ``ref``: a scheme object, a registered name, ``"pkg.mod:attr"`` or an entry point.

    Raises InputError naming the reference and what is allowed.
    """
    if not isinstance(ref, str):
        return _checked(ref, f"scheme {ref!r}")
    _ensure_builtins()
    if ref in _REGISTRY:
        return _REGISTRY[ref]
    if ref not in _RESOLVED:
        found = _from_import_path(ref) if ":" in ref else _from_entry_point(ref)
        if found is None:
            raise InputError(
                f"unknown scheme {ref!r}: give a registered name ({', '.join(_REGISTRY)}), an import path "
                f"'package.module:Class', or an entry point in the group {ENTRY_POINT_GROUP!r}"
            )
        if found.name in _REGISTRY and _REGISTRY[found.name] is not found:
            raise InputError(f"scheme {ref!r} is called {found.name!r}, the name of a registered scheme")
        _RESOLVED[ref] = found
    return _RESOLVED[ref]


def scheme_name(ref) -> str:
    """The row name of the scheme ``ref`` refers to."""
    return get_scheme(ref).name


def describe(name: str) -> str:
    """The description of a scheme by row name or reference ('' when it cannot be found, e.g. a user
    scheme's rows read on a machine without its code)."""
    known = registered_schemes()
    if name in known:
        return known[name].description
    for scheme in _RESOLVED.values():
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
    """A ``Result`` for ``allocation`` with every delay of eqs. (8)-(17) (``fedsim.delay.delays``).

    E(r) is the problem's entry for the allocation's rank (first client's first block); an infeasible
    allocation (some rate zero, a delay infinite) gets status "infeasible" whatever ``status`` says.
    """
    from fedsim.delay import delays

    rank = int(np.asarray(allocation.ranks).flat[0])
    if rank not in problem.rounds_by_rank:
        raise InputError(
            f"scheme {name!r} chose rank {rank}, which has no E(r) (candidates {list(problem.ranks)})"
        )
    d = delays(
        problem.drop,
        problem.workload,
        allocation,
        problem.batch_size,
        problem.local_iterations,
        problem.rounds_by_rank[rank],
        problem.upload_every_local_iteration,
    )
    final = status if d.feasible else "infeasible"
    return Result(
        name, allocation, d, final, dict(solver_status or {}), iterations, [float(d.total_s)], problem
    )
