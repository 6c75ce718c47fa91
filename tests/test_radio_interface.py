"""The radio-model interface: registry, the paper radio unchanged, and the generic solvers on a Shannon rate.

The generic path (any monotone ``LinkRate``: bisection power control, rate-table greedy) is checked against
the paper's closed forms by running it on ``ShannonRate``, the paper's rate through the interface.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from optimize_helpers import ROUNDS, gpt2_workload, power_cases, small_instance

import channel
from fedsim.core.delay import delays, link_rates_bps
from fedsim.core.system import SystemParams, draw_drop
from fedsim.engine import EngineConfig, simulate
from fedsim.errors import InputError
from fedsim.optimize import Problem, brute_force, optimize
from fedsim.optimize.power import solve_power_exact
from fedsim.radio import (
    RadioSection,
    ShannonRate,
    draw_radio_drop,
    get_radio,
    register_radio,
    registered_radios,
    unregister_radio,
)
from fedsim.radio.nr_harq import harq_duration_s


def _shannon(link):
    return dataclasses.replace(link, rate=ShannonRate(link.subchannel_hz, link.noise_psd_w_hz))


def _shannon_problem(problem: Problem) -> Problem:
    drop = dataclasses.replace(problem.drop, main=_shannon(problem.drop.main), fed=_shannon(problem.drop.fed))
    return dataclasses.replace(problem, drop=drop)


# --- registry -------------------------------------------------------------------------------------------


def test_builtin_radios_are_registered():
    radios = registered_radios()
    assert list(radios)[:2] == ["paper", "nr"]
    assert get_radio("paper") is radios["paper"]
    assert get_radio("fedsim.radio.paper:PaperRadio").name == "paper"


def test_unknown_radio_names_what_is_allowed():
    with pytest.raises(InputError, match="unknown radio model 'lte'.*paper.*package.module:Class"):
        get_radio("lte")
    with pytest.raises(InputError, match="cannot import module 'nosuch.mod'"):
        get_radio("nosuch.mod:Radio")
    with pytest.raises(InputError, match="not a radio model"):
        get_radio("fedsim.core.link:LN2")


def test_register_user_radio_and_builtins_are_fixed():
    class Mine:
        name = "mine"
        description = "the paper's drop with a 3 dB weaker main link"

        def draw_drop(self, system, radio, rng):
            drop = draw_drop(system, rng)
            return dataclasses.replace(drop, main=dataclasses.replace(drop.main, gain=drop.main.gain / 2))

    register_radio(Mine)
    try:
        radio = RadioSection(model="mine")
        a = draw_radio_drop(SystemParams(), radio, np.random.default_rng(1))
        b = draw_drop(SystemParams(), np.random.default_rng(1))
        np.testing.assert_array_equal(a.main.gain, b.main.gain / 2)
        with pytest.raises(InputError, match="already registered"):
            register_radio(Mine)
    finally:
        unregister_radio("mine")
    with pytest.raises(InputError, match="cannot be removed"):
        unregister_radio("paper")


# --- the paper radio is today's code --------------------------------------------------------------------


@pytest.mark.parametrize("radio", [None, RadioSection()])
def test_paper_radio_is_draw_drop_bit_for_bit(radio):
    params = SystemParams(num_clients=7, fading=True)
    a = draw_radio_drop(params, radio, np.random.default_rng(42))
    b = draw_drop(params, np.random.default_rng(42))
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if field.name in ("main", "fed"):
            assert x.rate is None and y.rate is None
            np.testing.assert_array_equal(x.gain, y.gain)
        elif isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
        else:
            assert x == y


def test_scenario_without_radio_section_dumps_radio_none():
    from fedsim.scenario.model import Scenario

    sc = Scenario(name="x")
    assert sc.radio is None and sc.model_dump()["radio"] is None


# --- the generic (any monotone rate) path on the Shannon rate equals the closed forms --------------------


def test_shannon_rate_matches_channel_formula_and_inverts():
    rng = np.random.default_rng(0)
    rate = ShannonRate(500e3, 4e-21)
    p, n, g = rng.uniform(1e-4, 0.2, 50), rng.integers(1, 9, 50), 10 ** rng.uniform(-14, -9, 50)
    expect = channel.shannon_rate_bps(n * 500e3, p / (n * 500e3), g, noise_psd_w_hz=4e-21)
    np.testing.assert_allclose(rate.rate_bps(p, n, g), expect, rtol=1e-12)
    np.testing.assert_allclose(rate.min_power_w(expect, n, g), p, rtol=1e-9)
    assert rate.min_power_w(1e6, 0, 1e-10) == np.inf and rate.rate_bps(1.0, 0, 1e-10) == 0


@pytest.mark.parametrize("seed", range(8))
def test_bisection_power_solver_equals_newton_on_shannon(seed):
    for link, owner, p_max, off, load in power_cases(seed):
        ref = solve_power_exact(link, owner, p_max, offset_s=off, load_bits=load)
        gen = solve_power_exact(_shannon(link), owner, p_max, offset_s=off, load_bits=load)
        assert gen.status == ref.status == "optimal"
        assert gen.time_s == pytest.approx(ref.time_s, rel=1e-9)
        np.testing.assert_allclose(gen.psd_w_hz, ref.psd_w_hz, rtol=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_generic_optimiser_and_brute_force_equal_paper_on_shannon(seed):
    problem = small_instance(seed)
    generic = _shannon_problem(problem)
    for scheme in ("proposed", "b", "d"):
        rng = lambda: np.random.default_rng(seed)  # noqa: E731
        ref, gen = optimize(problem, scheme, rng=rng()), optimize(generic, scheme, rng=rng())
        assert gen.delays.total_s == pytest.approx(ref.delays.total_s, rel=1e-7)
        np.testing.assert_array_equal(gen.allocation.owner_main, ref.allocation.owner_main)
    assert brute_force(generic).delays.total_s == pytest.approx(brute_force(problem).delays.total_s, rel=1e-7)


def test_delay_and_engine_use_the_link_rate():
    drop = draw_drop(SystemParams(), np.random.default_rng(3))
    problem = Problem(drop, gpt2_workload(), 16, 10, dict(ROUNDS))
    alloc = optimize(problem).allocation
    generic = _shannon_problem(problem).drop
    for a, b in ((drop.main, generic.main), (drop.fed, generic.fed)):
        owner, psd = (
            (alloc.owner_main, alloc.psd_main_w_hz)
            if a is drop.main
            else (alloc.owner_fed, alloc.psd_fed_w_hz)
        )
        np.testing.assert_allclose(
            link_rates_bps(b, owner, psd, num_clients=5),
            link_rates_bps(a, owner, psd, num_clients=5),
            rtol=1e-12,
        )
    d = delays(generic, problem.workload, alloc, batch_size=16, local_iterations=10, rounds=2.0)
    sim = simulate(
        generic,
        problem.workload,
        alloc,
        batch_size=16,
        local_iterations=10,
        rounds=2.0,
        config=EngineConfig(),
        rng=np.random.default_rng(0),
    )
    assert sim.total_s == pytest.approx(d.total_s, rel=1e-12)


def test_cvxpy_refuses_a_rate_model():
    generic = _shannon_problem(small_instance(0))
    with pytest.raises(InputError, match="cvxpy.*Shannon rate only.*shannon"):
        optimize(generic, power_solver="cvxpy")


# --- HARQ sampling --------------------------------------------------------------------------------------


def test_harq_duration_mean_is_the_expected_goodput_time():
    rng = np.random.default_rng(7)
    bits, rate, tb, p = 10_000.0, 1e6, 1_000.0, 0.1
    draws = np.array([harq_duration_s(bits, rate, tb, tbler=p, rng=rng) for _ in range(20_000)])
    expected = bits / rate
    # (N + F) / N with N = 10 TBs: variance of F is N p / (1 - p)^2
    sd = expected * (1 - p) * np.sqrt(10 * p) / (1 - p) / 10
    assert abs(draws.mean() - expected) < 4 * sd / np.sqrt(draws.size)
    assert draws.min() >= bits * (1 - p) / rate * (1 - 1e-12)  # never faster than error-free
    assert harq_duration_s(bits, rate, tb, tbler=0.0, rng=rng) == pytest.approx(expected, rel=1e-15)
    assert harq_duration_s(0.0, rate, tb, tbler=p, rng=rng) == 0.0
    assert harq_duration_s(bits, 0.0, tb, tbler=p, rng=rng) == np.inf
