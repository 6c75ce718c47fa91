"""Every random stream of a sweep, derived from (base_seed, point, drop) with numpy's SeedSequence.

Common random numbers: at one sweep point and drop, every scheme sees the same placement and the same
engine randomness; only a scheme's own random choices (baselines a-d) get a stream per scheme.
"""

from __future__ import annotations

import numpy as np

from fedsim.scenario.model import SCHEME_NAMES

_DROP, _SCHEME, _ENGINE = 0, 1, 2


def task_entropy(base_seed: int, point: int, drop: int) -> list[int]:
    """The SeedSequence entropy of one (point, drop); written to every row."""
    return [int(base_seed), int(point), int(drop)]


def drop_rng(base_seed: int, point: int, drop: int) -> np.random.Generator:
    """The stream that draws the placement (positions, shadowing, client compute, fading)."""
    return np.random.default_rng(np.random.SeedSequence([*task_entropy(base_seed, point, drop), _DROP]))


def scheme_rng(base_seed: int, point: int, drop: int, scheme: str) -> np.random.Generator:
    """The stream of one scheme's random decisions; indexed by the scheme's global position, so it does
    not depend on which other schemes a scenario selects."""
    index = SCHEME_NAMES.index(scheme)
    return np.random.default_rng(
        np.random.SeedSequence([*task_entropy(base_seed, point, drop), _SCHEME, index])
    )


def engine_rng(base_seed: int, point: int, drop: int) -> np.random.Generator:
    """The engine's stream (fading per round, failures, stragglers), common to every scheme."""
    return np.random.default_rng(np.random.SeedSequence([*task_entropy(base_seed, point, drop), _ENGINE]))
