"""Client partitions: true partitions of range(n), seeded, IID-like for large alpha, skewed for small alpha."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsim.errors import InputError
from fedsim.learn.data.partition import (
    dirichlet_by_attribute,
    dirichlet_split,
    iid,
    length_classes,
    length_dirichlet,
    mean_tv_distance,
    parse_mr,
)


def _assert_partition(parts, n, k):
    assert len(parts) == k
    assert all(len(p) > 0 and p.dtype == np.int64 for p in parts)
    joined = np.concatenate(parts)
    assert len(joined) == n and np.array_equal(np.sort(joined), np.arange(n))


def _splitters(n, k, alpha, seed):
    rng_lengths = np.random.default_rng(1000 + seed)
    lengths = rng_lengths.integers(5, 80, size=n)
    labels = rng_lengths.integers(0, 4, size=n)
    return {
        "iid": lambda rng: iid(n, k, rng),
        "dirichlet": lambda rng: dirichlet_split(labels, k, alpha, rng=rng),
        "length": lambda rng: length_dirichlet(lengths, k, alpha, rng=rng),
        "length_equal": lambda rng: length_dirichlet(lengths, k, alpha, rng=rng, equal_size=True),
    }


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 300),
    k=st.integers(1, 12),
    alpha=st.floats(0.01, 100.0),
    seed=st.integers(0, 2**31 - 1),
    kind=st.sampled_from(["iid", "dirichlet", "length", "length_equal"]),
)
def test_every_splitter_is_a_reproducible_partition(n, k, alpha, seed, kind):
    if n < k:
        with pytest.raises(InputError, match="num_clients"):
            _splitters(n, k, alpha, seed)[kind](np.random.default_rng(seed))
        return
    split = _splitters(n, k, alpha, seed)[kind]
    a = split(np.random.default_rng(seed))
    b = split(np.random.default_rng(seed))
    _assert_partition(a, n, k)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    if kind in ("iid", "length_equal"):
        sizes = [len(p) for p in a]
        assert max(sizes) - min(sizes) <= 1


def test_large_alpha_approaches_iid_small_alpha_is_skewed():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=20000)
    tv = {
        a: mean_tv_distance(labels, dirichlet_split(labels, 5, a, rng=np.random.default_rng(1)))
        for a in (0.1, 1e4)
    }
    tv_iid = mean_tv_distance(labels, iid(len(labels), 5, np.random.default_rng(1)))
    assert tv_iid < 0.02 and tv[1e4] < 0.03
    assert tv[0.1] > 0.5


@pytest.mark.parametrize("equal_size", [False, True])
def test_length_dirichlet_skews_lengths_only_for_small_alpha(equal_size):
    lengths = np.random.default_rng(2).integers(10, 200, size=12000)
    classes = length_classes(lengths, 10)
    mean_len = {}
    for alpha in (0.1, 1e4):
        parts = length_dirichlet(lengths, 5, alpha, rng=np.random.default_rng(3), equal_size=equal_size)
        mean_len[alpha] = np.array([lengths[p].mean() for p in parts])
        if equal_size:
            assert [len(p) for p in parts] == [2400] * 5
    assert mean_tv_distance(classes, parts) < 0.05  # the last one: alpha = 1e4
    assert np.ptp(mean_len[1e4]) < 5  # clients' mean lengths agree
    assert np.ptp(mean_len[0.1]) > 40  # short-text and long-text clients


def test_length_classes_are_quantile_bins():
    lengths = np.arange(1000)
    classes = length_classes(lengths, 10)
    assert np.array_equal(np.bincount(classes), [100] * 10)
    assert np.all(np.diff(classes) >= 0)  # monotone in length


def test_parse_mr_and_attribute_split():
    mr = "name[The Vaults], eatType[pub], priceRange[more than £30], customer rating[5 out of 5], near[Café Adriatic]"
    assert parse_mr(mr) == {
        "name": "The Vaults", "eatType": "pub", "priceRange": "more than £30",
        "customer rating": "5 out of 5", "near": "Café Adriatic",
    }  # fmt: skip
    mrs = [f"name[X], eatType[{t}]" for t in ("pub", "restaurant", "coffee shop") for _ in range(200)] + [
        "name[Y]"
    ] * 100
    parts = dirichlet_by_attribute(mrs, "eatType", 4, alpha=0.1, rng=np.random.default_rng(0))
    _assert_partition(parts, len(mrs), 4)
    types = [parse_mr(m).get("eatType", "<none>") for m in mrs]
    assert mean_tv_distance(types, parts) > 0.3
    with pytest.raises(InputError, match="no MR mentions 'colour'"):
        dirichlet_by_attribute(mrs, "colour", 4, alpha=1.0, rng=np.random.default_rng(0))
    with pytest.raises(InputError, match="alpha"):
        dirichlet_by_attribute(mrs, "eatType", 4, alpha=0.0, rng=np.random.default_rng(0))


def test_fixed_seed_golden_partitions():
    # numpy's Generator streams are stable across versions, so these pin the algorithms
    assert [p.tolist() for p in iid(10, 3, np.random.default_rng(42))] == [[0, 5, 6, 7], [2, 3, 4], [1, 8, 9]]
    parts = length_dirichlet(np.arange(12), 3, 0.5, rng=np.random.default_rng(7), num_classes=3)
    assert [p.tolist() for p in parts] == [[0, 1, 2, 3, 5, 7, 8, 9, 10, 11], [6], [4]]
