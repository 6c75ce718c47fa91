"""Splitting a training set across K clients: IID, Dirichlet over an MR attribute, and SplitFT's length-based
Dirichlet (spec §10a). Every function returns a true partition of ``range(n)``: a list of K sorted int64 index
arrays, disjoint, covering every index, each non-empty. Randomness comes only from the ``rng`` passed in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from fedsim.errors import InputError

MISSING = "<none>"  # attribute value of an MR that does not mention the attribute
_SLOT = re.compile(r"\s*([^\[\],]+?)\s*\[([^\]]*)\]")


def parse_mr(mr: str) -> dict[str, str]:
    """``"name[The Eagle], eatType[pub]"`` -> ``{"name": "The Eagle", "eatType": "pub"}``."""
    return {key: value.strip() for key, value in _SLOT.findall(mr)}


def _check(n: int, num_clients: int, alpha: float | None = None) -> None:
    if num_clients < 1:
        raise InputError(f"num_clients: must be >= 1, got {num_clients}")
    if n < num_clients:
        raise InputError(f"num_clients: {num_clients} clients need at least as many samples, got {n}")
    if alpha is not None and not alpha > 0:
        raise InputError(f"alpha: the Dirichlet concentration must be > 0, got {alpha}")


def _finish(owner: np.ndarray, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Index arrays from an owner vector (n,), after giving every empty client one sample from the largest
    one (a very skewed Dirichlet draw can leave a client with nothing, and a client needs data to train)."""
    counts = np.bincount(owner, minlength=num_clients)
    for empty in np.flatnonzero(counts == 0):
        donor = int(np.argmax(counts))
        moved = rng.choice(np.flatnonzero(owner == donor))
        owner[moved] = empty
        counts[donor] -= 1
        counts[empty] += 1
    return [np.flatnonzero(owner == k).astype(np.int64) for k in range(num_clients)]


def iid(n: int, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A uniformly random split into sizes differing by at most one."""
    _check(n, num_clients)
    chunks = np.array_split(rng.permutation(n), num_clients)
    return [np.sort(c).astype(np.int64) for c in chunks]


def dirichlet_split(
    labels: Sequence, num_clients: int, alpha: float, *, rng: np.random.Generator
) -> list[np.ndarray]:
    """Label-skewed split: for each class c, client shares q_c ~ Dir(alpha·1_K); the class's shuffled samples
    are cut into K consecutive chunks of sizes round(q_c·|c|) (largest-remainder rounding, so sizes sum up)."""
    labels = np.asarray(labels)
    n = len(labels)
    _check(n, num_clients, alpha)
    owner = np.empty(n, dtype=np.int64)
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        shares = rng.dirichlet(np.full(num_clients, float(alpha)))
        sizes = _round_preserving_sum(shares * len(members))
        owner[members] = np.repeat(np.arange(num_clients), sizes)
    return _finish(owner, num_clients, rng)


def _round_preserving_sum(x: np.ndarray) -> np.ndarray:
    """Integers near ``x`` with the same (integral) sum: floor, then +1 to the largest remainders."""
    base = np.floor(x).astype(np.int64)
    short = int(round(x.sum())) - int(base.sum())
    base[np.argsort(-(x - base), kind="stable")[:short]] += 1
    return base


def dirichlet_by_attribute(
    mrs: Sequence[str], attribute: str, num_clients: int, *, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Dirichlet split whose classes are the values of one MR attribute (e.g. ``eatType``, ``food``,
    ``area``); MRs without that attribute form their own class."""
    values = [parse_mr(mr).get(attribute, MISSING) for mr in mrs]
    if values and all(v == MISSING for v in values):
        raise InputError(f"attribute: no MR mentions {attribute!r}; E2E has name, eatType, food, priceRange, "
                         "customer rating, area, familyFriendly, near")  # fmt: skip
    return dirichlet_split(values, num_clients, alpha, rng=rng)


def length_classes(lengths: Sequence[int], num_classes: int = 10) -> np.ndarray:
    """Class of each sample (n,) in 0..num_classes-1: the bin of its length between length quantiles.

    Ties at a quantile edge go to one bin, so with few distinct lengths some classes are empty.
    """
    lengths = np.asarray(lengths, dtype=float)
    if num_classes < 1:
        raise InputError(f"num_classes: must be >= 1, got {num_classes}")
    edges = np.quantile(lengths, np.linspace(0.0, 1.0, num_classes + 1))
    return np.clip(np.searchsorted(edges, lengths, side="right") - 1, 0, num_classes - 1)


def length_dirichlet(
    lengths: Sequence[int],
    num_clients: int,
    alpha: float,
    *,
    rng: np.random.Generator,
    num_classes: int = 10,
    equal_size: bool = False,
) -> list[np.ndarray]:
    """SplitFT's length-based Dirichlet split (spec §10a): classes = length-quantile bins.

    equal_size=False: per class, shares ~ Dir(alpha·1_K) (client sizes then vary).
    equal_size=True: every client gets n // K samples (the first n mod K get one more); client i draws a
    class mix pi_i ~ Dir(alpha·1_C) and fills its quota by sampling classes ∝ pi_i without replacement,
    renormalising over the classes that still have samples.
    """
    classes = length_classes(lengths, num_classes)
    if not equal_size:
        return dirichlet_split(classes, num_clients, alpha, rng=rng)
    n = len(classes)
    _check(n, num_clients, alpha)
    pools = [rng.permutation(np.flatnonzero(classes == c)) for c in range(num_classes)]
    quotas = [n // num_clients + (1 if k < n % num_clients else 0) for k in range(num_clients)]
    owner = np.empty(n, dtype=np.int64)
    for k, quota in enumerate(quotas):
        mix = rng.dirichlet(np.full(num_classes, float(alpha)))
        while quota > 0:
            avail = np.array([len(p) for p in pools])
            weights = mix * (avail > 0)
            if weights.sum() <= 0:  # every class it likes is used up: take from what is left, uniformly
                weights = (avail > 0).astype(float)
            take = np.minimum(rng.multinomial(quota, weights / weights.sum()), avail)
            for c in np.flatnonzero(take):
                owner[pools[c][: take[c]]] = k
                pools[c] = pools[c][take[c] :]
            quota -= int(take.sum())
    return _finish(owner, num_clients, rng)


def label_distribution(labels: Sequence, parts: list[np.ndarray]) -> np.ndarray:
    """(K, C) matrix: row k = client k's empirical class distribution (rows sum to 1)."""
    labels = np.asarray(labels)
    classes = {c: i for i, c in enumerate(np.unique(labels))}
    out = np.zeros((len(parts), len(classes)))
    for k, idx in enumerate(parts):
        for value, count in zip(*np.unique(labels[idx], return_counts=True), strict=True):
            out[k, classes[value]] = count
    return out / out.sum(axis=1, keepdims=True)


def mean_tv_distance(labels: Sequence, parts: list[np.ndarray]) -> float:
    """Mean over clients of the total-variation distance between the client's and the global class
    distribution: 0 = perfectly IID, near 1 = every client holds classes the others lack."""
    dist = label_distribution(labels, parts)
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    overall = counts / counts.sum()
    return float(0.5 * np.abs(dist - overall).sum(axis=1).mean())
