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

from dataclasses import dataclass, replace

import numpy as np

from fedsim.optimize.bcd import run_bcd
from fedsim.optimize.problem import Problem, Result
from fedsim.optimize.scheme_spec import SCHEME_SPECS, SchemeSpec


@dataclass(frozen=True)
class BcdScheme:
    """A built-in scheme: the BCD loop (``bcd.run_bcd``) with the blocks ``spec`` leaves free.

    ``power_solver`` ("exact" or "cvxpy") and ``refine`` are solver options, not part of the scheme's
    identity: ``with_options`` returns a copy with them changed.
    """

    name: str
    spec: SchemeSpec
    description: str
    power_solver: str = "exact"
    refine: bool = True

    def with_options(self, power_solver: str = "exact", refine: bool = True) -> BcdScheme:
        return replace(self, power_solver=power_solver, refine=refine)

    def allocate(self, problem: Problem, rng: np.random.Generator | None) -> Result:
        return run_bcd(
            problem, self.spec, self.name, rng=rng, power_solver=self.power_solver, refine=self.refine
        )


_DESCRIPTIONS = {
    "proposed": "FedsLLM's joint optimisation (Alg. 3): greedy subchannels, optimal power, split and rank; "
    "nothing random",
    "a": "baseline (a): random subchannels with uniform power, random split and random rank",
    "b": "baseline (b): random subchannels with uniform power; split and rank optimised",
    "c": "baseline (c): greedy subchannels, optimal power and rank; random split",
    "d": "baseline (d): greedy subchannels, optimal power and split; random rank",
}
BUILTINS = tuple(BcdScheme(name, spec, _DESCRIPTIONS[name]) for name, spec in SCHEME_SPECS.items())
