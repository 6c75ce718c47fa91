"""Sweep points of a scenario: the dotted-field values of each point (``scenario_at`` in ``load.py`` builds
the scenario at one)."""

from __future__ import annotations

import itertools
from typing import Any

from fedsim.errors import InputError


def sweep_points(axes: dict[str, list[Any]], mode: str) -> list[dict[str, Any]]:
    """Every sweep point as {dotted key: value}; one empty point when nothing is swept.

    ``product`` varies the last axis fastest; ``zip`` pairs the i-th values of every axis.
    """
    if not axes:
        return [{}]
    keys = list(axes)
    if mode == "zip":
        return [dict(zip(keys, values, strict=True)) for values in zip(*axes.values(), strict=True)]
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*axes.values())]


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``data[a][b][c] = value`` for key ``a.b.c``, creating tables on the way.

    Raises InputError when a part of the path is a value instead of a table.
    """
    parts = key.split(".")
    if any(not part for part in parts):
        raise InputError(f"{key!r}: empty part in dotted key")
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise InputError(f"{'.'.join(parts[: depth + 1])}: is a value, not a table; cannot set {key!r}")
        node = child
    node[parts[-1]] = value
