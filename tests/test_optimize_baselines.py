"""Baselines a-d (spec §6): one code path; on average over 100 drops at the §7 defaults the proposed
scheme beats b, c and d, which all beat a."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optimize_helpers import make_problem

from fedsim.errors import InputError
from fedsim.optimize import SCHEMES, optimize
from fedsim.optimize.power import client_counts
from fedsim.optimize.scheme_spec import SCHEME_SPECS


def test_scheme_table():
    assert SCHEMES == ("proposed", "a", "b", "c", "d")
    assert SCHEME_SPECS["a"].channels == "random" and SCHEME_SPECS["a"].cut == "random"
    assert SCHEME_SPECS["c"].cut == "random" and SCHEME_SPECS["c"].rank == "optimal"
    assert SCHEME_SPECS["d"].rank == "random" and SCHEME_SPECS["d"].cut == "optimal"
    assert not SCHEME_SPECS["proposed"].needs_rng


def test_mean_delay_ordering_over_100_drops():
    totals = {s: [] for s in SCHEMES}
    for seed in range(100):
        problem = make_problem(seed)
        rng = np.random.default_rng([seed, 1])
        for scheme in SCHEMES:
            result = optimize(problem, scheme, rng=rng)
            assert np.isfinite(result.delays.total_s)
            totals[scheme].append(result.delays.total_s)
    mean = {s: float(np.mean(v)) for s, v in totals.items()}
    assert mean["proposed"] < min(mean["b"], mean["c"], mean["d"])
    assert max(mean["b"], mean["c"], mean["d"]) < mean["a"]
    # the paper reports ~60 % below baseline a; the reconstructed model gives the same order
    assert 0.4 < 1 - mean["proposed"] / mean["a"] < 0.85
    # the proposed scheme never loses to the fully random baseline on a single drop
    assert np.all(np.array(totals["proposed"]) <= np.array(totals["a"]) * (1 + 1e-9))


def test_baselines_hold_their_random_parts_fixed():
    problem = make_problem(7)
    a = optimize(problem, "a", rng=np.random.default_rng(3))
    counts = client_counts(a.allocation.owner_main, 5)
    assert counts.max() - counts.min() <= 1  # random average allocation
    # uniform PSD: min(p_max, p_th/K) per client, spread evenly
    power = np.bincount(
        a.allocation.owner_main, weights=a.allocation.psd_main_w_hz * problem.drop.main.subchannel_hz
    )
    np.testing.assert_allclose(power, min(0.2, 0.6 / 5), rtol=1e-12)
    # same seed, same baseline; c keeps its random cut, d its random rank
    again = optimize(problem, "a", rng=np.random.default_rng(3))
    assert again.delays.total_s == a.delays.total_s
    c1 = optimize(problem, "c", rng=np.random.default_rng(9))
    c2 = optimize(problem, "c", rng=np.random.default_rng(9))
    assert np.array_equal(c1.allocation.cuts, c2.allocation.cuts)
    d = optimize(problem, "d", rng=np.random.default_rng(9))
    assert d.rank == np.random.default_rng(9).choice((1, 2, 4, 6, 8))  # its only draw, held fixed


def test_baselines_need_an_rng():
    with pytest.raises(InputError, match="rng"):
        optimize(make_problem(0), "a")
    with pytest.raises(InputError, match="unknown scheme .z.: give a registered name"):
        optimize(make_problem(0), "z")


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    k=st.integers(1, 6),
    extra=st.integers(0, 12),
    p_max=st.floats(0.01, 1.0),
    p_th=st.floats(0.01, 2.0),
    scheme=st.sampled_from(SCHEMES),
    per_client=st.booleans(),
)
def test_every_scheme_respects_budgets_and_assigns_everything(
    seed, k, extra, p_max, p_th, scheme, per_client
):
    problem = make_problem(
        seed,
        num_clients=k,
        num_subchannels_main=k + extra,
        num_subchannels_fed=k + extra,
        p_max_w=p_max,
        p_th_main_w=p_th,
        p_th_fed_w=p_th,
    )
    problem = dataclasses.replace(problem, per_client_cuts=per_client)
    result = optimize(problem, scheme, rng=np.random.default_rng(seed))
    a = result.allocation
    assert result.status in ("converged", "max_iterations") and np.isfinite(result.delays.total_s)
    for owner, psd, link in (
        (a.owner_main, a.psd_main_w_hz, problem.drop.main),
        (a.owner_fed, a.psd_fed_w_hz, problem.drop.fed),
    ):
        assert np.all(owner >= 0) and np.all(client_counts(owner, k) >= 1)
        power = np.bincount(owner, weights=psd * link.subchannel_hz, minlength=k)
        assert np.all(psd >= 0)
        assert np.all(power <= p_max * (1 + 1e-12)) and power.sum() <= p_th * (1 + 1e-12)
    assert np.all((a.cuts >= 1) & (a.cuts <= 12))
    assert per_client or np.all(a.cuts == a.cuts[0])
