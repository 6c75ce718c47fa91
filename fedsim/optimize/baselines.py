"""The proposed scheme and baselines a-d (spec §6) as settings of ONE code path (``bcd.run_bcd``).

| scheme   | subchannels        | power          | cut      | rank     |
|----------|--------------------|----------------|----------|----------|
| proposed | greedy (Alg. 2)    | optimal (25)   | optimal  | optimal  |
| a        | random average     | uniform PSD    | random   | random   |
| b        | random average     | uniform PSD    | optimal  | optimal  |
| c        | greedy             | optimal        | random   | optimal  |
| d        | greedy             | optimal        | optimal  | random   |

Random choices are drawn once per drop and then held fixed while the free blocks iterate.
"""

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
