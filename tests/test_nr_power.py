"""38.213 open-loop power control of the "nr" radio within the link's total budget p_th: the common P0 shift
(``budget_scale``) against a bisection, and the open-loop powers the optimiser reports against the formula."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsim.radio.nr import budget_scale


def _total(s, u, cap):
    return np.minimum(cap, s * u).sum()


@settings(max_examples=200, deadline=None)
@given(
    u=st.lists(st.floats(1e-6, 10.0), min_size=1, max_size=8),
    cap_frac=st.lists(st.floats(0.01, 2.0), min_size=8, max_size=8),
    budget_frac=st.floats(0.01, 1.5),
)
def test_budget_scale_is_the_largest_shift_that_fits(u, cap_frac, budget_frac):
    u = np.array(u)
    cap = u * np.array(cap_frac[: u.size])  # some clients capped by p_max at s = 1, some not
    p_th = budget_frac * _total(1.0, u, cap)
    s = budget_scale(u, cap, p_th)
    assert 0 < s <= 1
    assert _total(s, u, cap) <= p_th * (1 + 1e-12)
    if s < 1:  # tight: the budget is used up (the total is continuous and increasing in s below the knees)
        assert _total(s, u, cap) == pytest.approx(p_th, rel=1e-10)
    # an independent bisection of the same monotone total finds the same s
    lo, hi = 0.0, 1.0
    if _total(1.0, u, cap) > p_th:
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if _total(mid, u, cap) <= p_th else (lo, mid)
        assert s == pytest.approx(lo, rel=1e-9) or _total(lo, u, cap) == pytest.approx(_total(s, u, cap))
    else:
        assert s == 1.0


def test_budget_scale_leaves_a_loose_budget_alone_and_skips_idle_clients():
    u, cap = np.array([0.1, 0.0, 0.3]), np.array([0.2, 0.2, 0.2])
    assert budget_scale(u, cap, 0.35) == 1.0  # 0.1 + 0 + 0.2 fits
    s = budget_scale(u, cap, 0.2)
    assert _total(s, u, cap) == pytest.approx(0.2)


sionna = pytest.importorskip("sionna", reason="the nr radio needs the optional extra fedsim[nr]")

from optimize_helpers import ROUNDS, gpt2_workload  # noqa: E402

from fedsim.core.system import SystemParams  # noqa: E402
from fedsim.optimize import Problem, optimize  # noqa: E402
from fedsim.radio import RadioSection, draw_radio_drop  # noqa: E402


@pytest.mark.parametrize("p_th_w", [0.3, 0.6])
def test_open_loop_powers_fit_the_budget_with_one_common_p0(p_th_w):
    # P0 = -60 dBm with full path-loss compensation asks for more than p_max = 0.2 W from most clients:
    # unclipped, the five clients would send about 1 W on a link whose budget is p_th
    system = SystemParams(num_clients=5, p_th_main_w=p_th_w, p_th_fed_w=p_th_w)
    radio = RadioSection(model="nr", power_control="open_loop", p0_dbm=-60.0, alpha=1.0)
    drop = draw_radio_drop(system, radio, np.random.default_rng(7))
    res = optimize(Problem(drop, gpt2_workload(), 16, 10, dict(ROUNDS)))
    assert res.solver_status["power_main"] == "open_loop (38.213)"
    for link, owner, psd in (
        (drop.main, res.allocation.owner_main, res.allocation.psd_main_w_hz),
        (drop.fed, res.allocation.owner_fed, res.allocation.psd_fed_w_hz),
    ):
        counts = np.bincount(owner[owner >= 0], minlength=5)
        power_w = np.bincount(owner[owner >= 0], weights=psd[owner >= 0] * link.subchannel_hz, minlength=5)
        m_rb = counts * link.rate.prbs_per_subchannel
        formula_dbm = -60.0 + 10 * np.log10(1 / link.gain) + 10 * np.log10(np.maximum(m_rb, 1))
        unclipped_w = np.where(counts > 0, np.minimum(0.2, 10 ** (formula_dbm / 10) / 1e3), 0.0)
        assert unclipped_w.sum() > p_th_w  # the budget binds
        assert power_w.sum() == pytest.approx(p_th_w, rel=1e-9)  # and is used up
        # every client below p_max sits the same number of dB under its open-loop power: one common P0 shift
        below = (counts > 0) & (power_w < 0.2 * (1 - 1e-9))
        shift_db = formula_dbm[below] - 10 * np.log10(power_w[below] * 1e3)
        assert below.any() and np.all(shift_db > 0)
        np.testing.assert_allclose(shift_db, shift_db[0], atol=1e-6)
        # and a client still at p_max would be above it after that shift
        at_max = (counts > 0) & ~below
        assert np.all(formula_dbm[at_max] - shift_db[0] >= 10 * np.log10(0.2e3) - 1e-6)
