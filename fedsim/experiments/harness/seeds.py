"""Every random stream of a sweep, derived from (base_seed, point, drop) with numpy's SeedSequence.

Common random numbers: at one sweep point and drop, every scheme sees the same placement and the same
engine randomness; only a scheme's own random choices (baselines a-d) get a stream per scheme.
"""

from __future__ import annotations

import hashlib

import numpy as np

from fedsim.scenario.model import SCHEME_NAMES

_DROP, _SCHEME, _ENGINE, _E_DRAWS = 0, 1, 2, 3


def task_entropy(base_seed: int, point: int, drop: int) -> list[int]:
    """The SeedSequence entropy of one (point, drop); written to every row."""
    return [int(base_seed), int(point), int(drop)]


def drop_rng(base_seed: int, point: int, drop: int) -> np.random.Generator:
    """The stream that draws the placement (positions, shadowing, client compute, fading)."""
    return np.random.default_rng(np.random.SeedSequence([*task_entropy(base_seed, point, drop), _DROP]))


def scheme_key(scheme: str) -> list[int]:
    """The stream key of a scheme (by row name): a built-in's fixed position, else a number derived from
    its name (the first 8 bytes of its SHA-256), so a stream never depends on which other schemes run."""
    if scheme in SCHEME_NAMES:
        return [SCHEME_NAMES.index(scheme)]
    digest = hashlib.sha256(scheme.encode("utf-8")).digest()
    return [len(SCHEME_NAMES), int.from_bytes(digest[:8], "little")]


def scheme_rng(base_seed: int, point: int, drop: int, *, scheme: str) -> np.random.Generator:
    """The stream of one scheme's random decisions (``scheme`` is its row name)."""
    return np.random.default_rng(
        np.random.SeedSequence([*task_entropy(base_seed, point, drop), _SCHEME, *scheme_key(scheme)])
    )


def e_draw_rng(base_seed: int, point: int, drop: int, *, scheme: str) -> np.random.Generator:
    """The stream that draws E(r) from its seeds for one scheme's uncertainty columns (``training.e_draws``)."""
    return np.random.default_rng(
        np.random.SeedSequence([*task_entropy(base_seed, point, drop), _E_DRAWS, *scheme_key(scheme)])
    )


def engine_rng(base_seed: int, point: int, drop: int) -> np.random.Generator:
    """The engine's stream (fading per round, failures, stragglers), common to every scheme."""
    return np.random.default_rng(np.random.SeedSequence([*task_entropy(base_seed, point, drop), _ENGINE]))


class OnFirstUse:
    """A ``np.random.Generator`` made by ``make()`` when it is first used, for a stream most tasks never
    touch (the engine's, in paper mode: no fading, failures or stragglers); making a Generator costs tens
    of microseconds, a sizeable part of a Monte Carlo task. It draws exactly what ``make()`` would."""

    __slots__ = ("_make", "_rng")

    def __init__(self, make):
        self._make, self._rng = make, None

    def __getattr__(self, name: str):  # only for names not found on this object: the Generator's
        if self._rng is None:
            self._rng = self._make()
        return getattr(self._rng, name)
