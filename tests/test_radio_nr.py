"""The "nr" radio (Sionna): 38.901 path loss and LoS probability against the formulas, the NR link against
Shannon and the MCS table, optimiser and engine under NR, and the missing-Sionna error."""

from __future__ import annotations

import numpy as np
import pytest

sionna = pytest.importorskip("sionna", reason="the nr radio needs the optional extra fedsim[nr]")

import torch  # noqa: E402
from optimize_helpers import ROUNDS, gpt2_workload  # noqa: E402

from fedsim.core.delay import delays  # noqa: E402
from fedsim.core.system import SystemParams  # noqa: E402
from fedsim.engine import EngineConfig, simulate  # noqa: E402
from fedsim.errors import InputError  # noqa: E402
from fedsim.optimize import Problem, brute_force, optimize  # noqa: E402
from fedsim.radio import RadioSection, draw_radio_drop  # noqa: E402
from fedsim.radio.nr_curves import spectral_efficiency_table  # noqa: E402
from fedsim.radio.nr_propagation import large_scale  # noqa: E402

FC = 3.5e9
C = 299_792_458.0


# --- 38.901 by hand (TR 38.901 Table 7.4.1-1 and Table 7.4.2-1; h_UT = 1.5 m, so h_E = 1 m) --------------


def _pl_uma(d2, h_bs, h_ut, los):
    d3 = np.hypot(d2, h_bs - h_ut)
    f = FC / 1e9
    d_bp = 4 * (h_bs - 1) * (h_ut - 1) * FC / C
    pl1 = 28 + 22 * np.log10(d3) + 20 * np.log10(f)
    pl2 = 28 + 40 * np.log10(d3) + 20 * np.log10(f) - 9 * np.log10(d_bp**2 + (h_bs - h_ut) ** 2)
    pl_los = np.where(d2 <= d_bp, pl1, pl2)
    if los:
        return pl_los
    return np.maximum(pl_los, 13.54 + 39.08 * np.log10(d3) + 20 * np.log10(f) - 0.6 * (h_ut - 1.5))


def _pl_umi(d2, h_bs, h_ut, los):
    d3 = np.hypot(d2, h_bs - h_ut)
    f = FC / 1e9
    d_bp = 4 * (h_bs - 1) * (h_ut - 1) * FC / C
    pl1 = 32.4 + 21 * np.log10(d3) + 20 * np.log10(f)
    pl2 = 32.4 + 40 * np.log10(d3) + 20 * np.log10(f) - 9.5 * np.log10(d_bp**2 + (h_bs - h_ut) ** 2)
    pl_los = np.where(d2 <= d_bp, pl1, pl2)
    if los:
        return pl_los
    return np.maximum(pl_los, 22.4 + 35.3 * np.log10(d3) + 21.3 * np.log10(f) - 0.3 * (h_ut - 1.5))


def _plos_uma(d2):
    return np.where(d2 <= 18, 1.0, 18 / d2 + np.exp(-d2 / 63) * (1 - 18 / d2))


def _plos_umi(d2):
    return np.where(d2 <= 18, 1.0, 18 / d2 + np.exp(-d2 / 36) * (1 - 18 / d2))


DISTANCES_M = np.array([12.0, 35.0, 80.0, 150.0, 300.0, 600.0, 1200.0])


@pytest.mark.parametrize(
    "scenario, h_bs, pl, plos",
    [("uma", 25.0, _pl_uma, _plos_uma), ("umi", 10.0, _pl_umi, _plos_umi)],
)
@pytest.mark.parametrize("los", [True, False])
def test_38901_pathloss_and_los_probability_match_the_formulas(scenario, h_bs, pl, plos, los):
    positions = np.stack([DISTANCES_M, np.zeros_like(DISTANCES_M)], axis=1)
    ls = large_scale(
        scenario,
        FC,
        positions,
        servers_xy_m=[(0.0, 0.0)],
        bs_height_m=h_bs,
        ut_height_m=1.5,
        indoor=np.zeros(7, bool),
        los="los" if los else "nlos",
        shadow_fading=False,
        seed=3,
    )
    np.testing.assert_allclose(ls.pathloss_db[0], pl(DISTANCES_M, h_bs, 1.5, los), atol=0.01)
    np.testing.assert_allclose(ls.los_probability[0], plos(DISTANCES_M), atol=1e-9)
    assert np.all(ls.los[0] == los) and np.all(ls.shadow_db == 0)


def test_38901_drop_is_reproducible_and_leaves_torch_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    radio = RadioSection(model="nr", indoor_probability=0.5)
    a = draw_radio_drop(SystemParams(num_clients=8), radio, np.random.default_rng(9))
    b = draw_radio_drop(SystemParams(num_clients=8), radio, np.random.default_rng(9))
    c = draw_radio_drop(SystemParams(num_clients=8), radio, np.random.default_rng(10))
    assert torch.rand(1) == before and torch.get_num_threads() == threads  # global torch state untouched
    np.testing.assert_array_equal(a.main.gain, b.main.gain)
    np.testing.assert_array_equal(a.fed.gain, b.fed.gain)
    assert not np.array_equal(a.main.gain, c.main.gain)
    assert np.all(a.distance_main_m >= radio.min_distance_m - 1e-9)


# --- the NR link -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mcs_table, top_qm_r", [(1, 6 * 948 / 1024), (2, 8 * 948 / 1024)])
def test_nr_spectral_efficiency_below_shannon_and_the_top_mcs(mcs_table, top_qm_r):
    table = spectral_efficiency_table(np.arange(-10.0, 40.01, 0.5), mcs_table=mcs_table, num_prbs=52)
    shannon = np.log2(1 + 10 ** (table["snr_db"] / 10))
    assert np.all(table["se_bits_per_re"] <= shannon + 1e-12)
    assert np.all(table["se_bits_per_re"] <= top_qm_r + 1e-12)
    assert np.all(np.diff(table["se_bits_per_re"]) >= 0)
    assert table["se_bits_per_re"][table["snr_db"] <= -5].max() == 0  # outage below the lowest MCS
    assert table["se_bits_per_re"][-1] > 0.9 * top_qm_r  # the ceiling is reached
    gap = table["gap_db"][np.isfinite(table["gap_db"])]
    assert gap.min() > 0.5  # a real code needs more SNR than Shannon at 10 % BLER


def _nr_problem(seed, k=5, **radio):
    radio = RadioSection(model="nr", **radio)
    drop = draw_radio_drop(SystemParams(num_clients=k), radio, np.random.default_rng(seed))
    return Problem(drop, gpt2_workload(), 16, 10, dict(ROUNDS))


def test_nr_rate_is_monotone_and_its_inverse_is_tight():
    link = _nr_problem(1).drop.main
    rate, g = link.rate, float(link.gain[0])
    p = np.logspace(-5, 0, 400)
    for n in (1, 4, 16):
        r = rate.rate_bps(p, n, g)
        assert np.all(np.diff(r) >= 0) and np.all(rate.rate_bps(p, n + 1, g) >= r)
        pos = r > 0
        p_min = rate.min_power_w(r[pos], n, g)
        assert np.all(p_min <= p[pos] * (1 + 1e-12))  # the least power never exceeds one that works
        np.testing.assert_array_equal(rate.rate_bps(p_min, n, g), r[pos])  # and reaches the same rate


def test_power_limited_client_sends_on_fewer_prbs_instead_of_outage():
    radio = RadioSection(model="nr", prbs_per_subchannel=6)
    link = draw_radio_drop(
        SystemParams(bandwidth_main_hz=30e6, bandwidth_fed_hz=30e6), radio, np.random.default_rng(0)
    ).main
    rate, p_w = link.rate, 0.2
    gain = 10 ** (0.0 / 10) * link.rate.noise_psd_w_hz * 180e3 / p_w  # 0 dB on one PRB, -7.8 dB on six
    r = rate.rate_bps(p_w, 1, gain)
    tb, _ = rate.blocks(p_w, 1, gain)
    one_prb = rate.table.bits_per_slot[0, np.searchsorted(rate.table.snr_db, 0.0)] / rate.slot_s
    assert r == pytest.approx(one_prb) and 0 < tb < 200  # a one-PRB TB at MCS ~5
    assert rate.rate_bps(p_w, 3, gain) >= r


@pytest.mark.parametrize("seed", range(3))
def test_nr_optimiser_respects_budgets_and_brute_force_bounds_it(seed):
    problem = _nr_problem(seed, k=2)
    small = SystemParams(num_clients=2, num_subchannels_main=6, num_subchannels_fed=6)
    problem = Problem(
        draw_radio_drop(small, RadioSection(model="nr"), np.random.default_rng(seed)),
        gpt2_workload(),
        16,
        10,
        dict(ROUNDS),
    )
    res = optimize(problem)
    assert res.status == "converged" and res.solver_status["power_solver"] == "bisection (nr rate model)"
    for link, psd in (
        (problem.drop.main, res.allocation.psd_main_w_hz),
        (problem.drop.fed, res.allocation.psd_fed_w_hz),
    ):
        assert psd.sum() * link.subchannel_hz <= link.p_th_w * (1 + 1e-12)
    best = brute_force(problem)
    assert best.delays.total_s <= res.delays.total_s * (1 + 1e-9)


# --- engine under NR ----------------------------------------------------------------------------------------


def test_engine_expected_goodput_equals_analytical_model():
    problem = _nr_problem(4, harq="expected")
    res = optimize(problem)
    d = delays(problem.drop, problem.workload, res.allocation, batch_size=16, local_iterations=10, rounds=3.5)
    sim = simulate(
        problem.drop,
        problem.workload,
        res.allocation,
        batch_size=16,
        local_iterations=10,
        rounds=3.5,
        config=EngineConfig(),
        rng=np.random.default_rng(1),
    )
    assert sim.total_s == pytest.approx(d.total_s, rel=1e-9)


def test_engine_sampled_harq_mean_converges_to_the_analytical_model():
    # one client (no max over clients, so E[T] is linear in the transfer times) and a tiny workload, so each
    # transfer is a few TBs and retransmissions are frequent
    from fedsim.core.workload import Workload

    small = SystemParams(
        num_clients=1,
        num_subchannels_main=1,
        num_subchannels_fed=1,
        p_max_w=0.01,
        p_th_main_w=0.01,
        p_th_fed_w=0.01,
    )
    radio = RadioSection(model="nr", harq="sampled", los="nlos", shadow_fading=False)
    drop = draw_radio_drop(small, radio, np.random.default_rng(2))
    w = gpt2_workload()
    tiny = Workload(
        **{**w.__dict__, "act_bits": w.act_bits * 1e-5, "lora_bits_per_rank": w.lora_bits_per_rank * 1e-3}
    )
    problem = Problem(drop, tiny, 1, 2, dict(ROUNDS))
    res = optimize(problem)
    tb, tbler = drop.main.rate.blocks(drop.p_max_w, 1, drop.main.gain)
    assert tbler[0] > 0.001  # errors actually happen
    d = delays(drop, tiny, res.allocation, batch_size=1, local_iterations=2, rounds=40.0)
    totals = np.array(
        [
            simulate(
                drop,
                tiny,
                res.allocation,
                batch_size=1,
                local_iterations=2,
                rounds=40.0,
                config=EngineConfig(trace=False),
                rng=np.random.default_rng(s),
            ).total_s
            for s in range(40)
        ]
    )
    assert totals.std() > 0
    assert abs(totals.mean() - d.total_s) < 4 * totals.std(ddof=1) / np.sqrt(totals.size)


def test_nr_scenario_rules():
    from fedsim.scenario.model import Scenario

    with pytest.raises(ValueError, match="cvxpy"):
        Scenario(name="x", radio={"model": "nr"}, schemes={"power_solver": "cvxpy"})
    with pytest.raises(ValueError, match="system.fading"):
        Scenario(name="x", radio={"model": "nr"}, system={"fading": True})
    with pytest.raises(ValueError, match="engine_round"):
        Scenario(name="x", radio={"model": "nr"}, montecarlo={"timing": "engine_round"})
    Scenario(name="x", radio={"model": "nr", "harq": "expected"}, montecarlo={"timing": "engine_round"})
    with pytest.raises(InputError, match="narrower|cannot hold"):
        draw_radio_drop(
            SystemParams(bandwidth_main_hz=5e6, num_subchannels_main=20),
            RadioSection(model="nr", subcarrier_spacing_hz=30000),
            np.random.default_rng(0),
        )


def test_missing_sionna_gives_the_install_command(monkeypatch):
    from fedsim.radio import sionna_env

    monkeypatch.setattr(sionna_env, "sionna_available", lambda: False)
    with pytest.raises(ValueError, match=r"pip install 'fedsim\[nr\]'"):
        RadioSection(model="nr")


def test_open_loop_power_control_follows_38213():
    problem = _nr_problem(5, power_control="open_loop", p0_dbm=-90.0, alpha=0.8)
    res = optimize(problem)
    assert res.solver_status["power_main"] == "open_loop (38.213)"
    link, owner, psd = problem.drop.main, res.allocation.owner_main, res.allocation.psd_main_w_hz
    counts = np.bincount(owner, minlength=5)
    power_w = np.bincount(owner, weights=psd * link.subchannel_hz, minlength=5)
    pl_db = -10 * np.log10(link.gain)
    m_rb = counts * link.rate.prbs_per_subchannel
    expect_dbm = np.minimum(10 * np.log10(0.2e3), -90.0 + 0.8 * pl_db + 10 * np.log10(m_rb))
    np.testing.assert_allclose(10 * np.log10(power_w * 1e3), expect_dbm, atol=1e-4)
