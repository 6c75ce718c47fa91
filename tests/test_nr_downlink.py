"""The "nr" radio's downlink: 5G NR PDSCH (Sionna's PDSCH BLER tables) for the engine's gradient downloads and
broadcasts, against Shannon, the MCS table and an independent evaluation of its goodput table."""

from __future__ import annotations

import numpy as np
import pytest

sionna = pytest.importorskip("sionna", reason="the nr radio needs the optional extra fedsim[nr]")

from optimize_helpers import ROUNDS, gpt2_workload  # noqa: E402

import channel  # noqa: E402
from fedsim.core.system import SystemParams  # noqa: E402
from fedsim.engine import EngineConfig, simulate  # noqa: E402
from fedsim.engine.channel_state import ChannelState  # noqa: E402
from fedsim.optimize import Problem, optimize  # noqa: E402
from fedsim.radio import RadioSection, draw_radio_drop  # noqa: E402
from fedsim.radio.nr_link import SNR_DB_MIN, SNR_DB_STEP, goodput_table, usable_prb_counts  # noqa: E402

SNR_DB = np.arange(-10.0, 40.0, 2.5)


@pytest.mark.parametrize(("mcs_table", "top_qm_r"), [(1, 6 * 948 / 1024), (2, 8 * 948 / 1024)])
def test_pdsch_goodput_is_below_shannon_and_the_top_mcs(mcs_table, top_qm_r):
    re_per_prb = 12 * (14 - 2 - 1)
    table = goodput_table((52,), re_per_prb, mcs_table, bler_target=0.1, downlink=True)
    idx = np.rint((SNR_DB - SNR_DB_MIN) / SNR_DB_STEP).astype(int)
    se = table.bits_per_slot[0, idx] / (52 * re_per_prb)  # bits per data RE
    assert np.all(se < np.log2(1 + 10 ** (SNR_DB / 10)))
    assert se.max() <= top_qm_r and se[-1] > 0.9 * top_qm_r  # the ceiling is the table's top MCS
    assert np.all(np.diff(table.bits_per_slot[0]) >= 0)  # non-decreasing in SNR
    assert se[SNR_DB <= -7.5].max() == 0 and se[SNR_DB >= 0].min() > 0  # outage below the cut-off
    assert np.all(table.tbler[0][table.mcs[0] >= 0] <= 0.1)


def _setup(**radio):
    drop = draw_radio_drop(
        SystemParams(num_clients=4), RadioSection(model="nr", **radio), np.random.default_rng(8)
    )
    problem = Problem(drop, gpt2_workload(), 16, 10, dict(ROUNDS))
    return drop, optimize(problem).allocation


def test_engine_downlink_is_pdsch_and_matches_an_independent_evaluation():
    drop, alloc = _setup(harq="expected")
    cfg = EngineConfig(download=True, downlink_slots=2)
    rate = ChannelState(drop, alloc, cfg, np.random.default_rng(0)).rate_down_bps
    # by hand: a 5 MHz slot holds 27 PRBs of 180 kHz; 1 W / 2 on m of them; the best goodput over m
    prbs, power_w, n0 = 27, 0.5, drop.main.noise_psd_w_hz
    table = goodput_table(usable_prb_counts(1, prbs), 12 * (14 - 2 - 1), 1, bler_target=0.1, downlink=True)
    m = np.arange(1, prbs + 1)
    snr_db = 10 * np.log10(power_w * drop.main.gain[:, None] / (n0 * m * 180e3))
    col = np.floor((snr_db - SNR_DB_MIN) / SNR_DB_STEP + 1e-6).astype(int)
    ok = col >= 0
    bits = np.where(ok, table.bits_per_slot[m - 1, np.clip(col, 0, table.snr_db.size - 1)], 0.0)  # top: held
    np.testing.assert_allclose(rate, bits.max(axis=1) / 1e-3, rtol=1e-12)
    shannon = channel.shannon_rate_bps(5e6, 1.0 / 10e6, drop.main.gain, noise_psd_w_hz=n0)
    assert np.all(rate < shannon) and np.all(rate > 0)
    # and the switch back to Shannon gives the engine's Shannon downlink exactly
    drop_s, alloc_s = _setup(harq="expected", downlink="shannon")
    np.testing.assert_array_equal(
        ChannelState(drop_s, alloc_s, cfg, np.random.default_rng(0)).rate_down_bps, shannon
    )


def test_engine_charges_the_pdsch_download():
    drop, alloc = _setup(harq="expected")
    work = gpt2_workload()

    def total(**cfg):
        return simulate(
            drop,
            work,
            alloc,
            batch_size=16,
            local_iterations=10,
            rounds=1.0,
            config=EngineConfig(**cfg),
            rng=np.random.default_rng(0),
        ).total_s

    drop_s, _ = _setup(harq="expected", downlink="shannon")
    base, pdsch = total(), total(download=True)
    shannon = simulate(
        drop_s,
        work,
        alloc,
        batch_size=16,
        local_iterations=10,
        rounds=1.0,
        config=EngineConfig(download=True),
        rng=np.random.default_rng(0),
    ).total_s
    assert base < shannon < pdsch  # the PDSCH download is slower than Shannon's, and it is charged


def test_downlink_fields_are_validated():
    with pytest.raises(ValueError, match="pdcch_symbols"):
        RadioSection(model="nr", pdcch_symbols=4)
    with pytest.raises(ValueError, match="downlink"):
        RadioSection(model="nr", downlink="lte")
