"""What the figures say about each scheme: its order, short label and what it optimises and randomises.

Descriptions come from the scheme registry (``fedsim.optimize.schemes.describe``: each scheme's own
``description``), never from prose written in a plot; a user scheme gets its own."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable

from fedsim.optimize.schemes import BUILTIN_SCHEMES, describe, ordered


def scheme_order(names: Iterable[str]) -> list[str]:
    """Built-in schemes in their fixed order, then the others as first seen."""
    return ordered(names)


def scheme_label(name: str) -> str:
    """'Proposed', '(a)', ... for built-ins; the name itself otherwise."""
    if name == "proposed":
        return "Proposed"
    return f"({name})" if name in BUILTIN_SCHEMES else name


def scheme_description(name: str) -> str:
    """The registered scheme's description ('' when its code is not importable here)."""
    return describe(name).strip()


def legend_label(name: str, width: int = 52) -> str:
    """Legend entry: the scheme's description (prefixed by its label unless it names the scheme already),
    wrapped to ``width`` characters."""
    label, description = scheme_label(name), scheme_description(name)
    if not description:
        return label
    text = description if label.lower() in description.lower() else f"{label}: {description}"
    return "\n".join(textwrap.wrap(text, width))
