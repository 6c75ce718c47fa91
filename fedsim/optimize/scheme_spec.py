"""Which blocks of problem (18) each built-in scheme optimises and which it draws (spec §6); the built-in
scheme names, in display order, are this table's keys (``SCHEMES``): the one place they are written."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class SchemeSpec:
    """Which blocks of problem (18) a scheme optimises and which it draws at random."""

    channels: Literal["greedy", "random"]
    power: Literal["optimal", "uniform"]
    cut: Literal["optimal", "random"]
    rank: Literal["optimal", "random"]

    @property
    def needs_rng(self) -> bool:
        return "random" in (self.channels, self.cut, self.rank)


SCHEME_SPECS: dict[str, SchemeSpec] = {
    "proposed": SchemeSpec("greedy", "optimal", "optimal", "optimal"),
    "a": SchemeSpec("random", "uniform", "random", "random"),
    "b": SchemeSpec("random", "uniform", "optimal", "optimal"),
    "c": SchemeSpec("greedy", "optimal", "random", "optimal"),
    "d": SchemeSpec("greedy", "optimal", "optimal", "random"),
}
SCHEMES = tuple(SCHEME_SPECS)
