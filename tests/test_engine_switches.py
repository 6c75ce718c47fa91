"""Beyond the paper: every engine switch against a known answer computed independently here."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from engine_helpers import equal_drop, random_allocation, random_drop, random_workload, round_robin

import channel
from fedsim.core.delay import delays, server_flops
from fedsim.engine import EngineConfig, simulate
from fedsim.errors import InputError

B = 4  # batch size


def _with_gains(drop, g_main, g_fed):
    return dataclasses.replace(
        drop, main=dataclasses.replace(drop.main, gain=g_main), fed=dataclasses.replace(drop.fed, gain=g_fed)
    )


def _setup(seed: int, k: int = 4, layers: int = 3):
    rng = np.random.default_rng(seed)
    work = random_workload(rng, layers)
    drop = random_drop(rng, k=k, fading=False)
    return rng, work, drop, random_allocation(rng, drop, layers)


def _server_each_s(drop, work, alloc):
    """Per-client server FP+BP time on its batch [s] (pipelined jobs)."""
    fwd, bwd = server_flops(work, alloc.cuts, alloc.ranks)
    return B * fwd / drop.server_flops_per_s, B * bwd / drop.server_flops_per_s


# --- block fading -------------------------------------------------------------------------------


def test_fading_every_round_uses_a_fresh_block_per_round():
    _, work, drop, alloc = _setup(1)
    k, m, n = drop.num_clients, drop.main.num_subchannels, drop.fed.num_subchannels
    res = simulate(
        drop,
        work,
        alloc,
        batch_size=B,
        local_iterations=3,
        rounds=4,
        config=EngineConfig(fading_every_round=True),
        rng=np.random.default_rng(42),
    )
    # the same draws, in the documented order: main (K, M), fed (K, N), downlink (K,) per round
    rng = np.random.default_rng(42)
    for row in res.round_rows:
        g_main = drop.main.gain[:, None] * rng.exponential(1.0, (k, m))
        g_fed = drop.fed.gain[:, None] * rng.exponential(1.0, (k, n))
        rng.exponential(1.0, k)
        want = delays(
            _with_gains(drop, g_main, g_fed), work, alloc, batch_size=B, local_iterations=3, rounds=1
        ).total_s
        assert row["duration_s"] == pytest.approx(want, rel=1e-9)
    assert len({round(r["duration_s"], 9) for r in res.round_rows}) == 4  # the rounds differ


def test_fading_every_iteration_redraws_per_iteration_and_for_the_upload():
    _, work, drop, alloc = _setup(2)
    k, m, n = drop.num_clients, drop.main.num_subchannels, drop.fed.num_subchannels
    res = simulate(
        drop,
        work,
        alloc,
        batch_size=B,
        local_iterations=3,
        rounds=1,
        config=EngineConfig(fading_every_iteration=True),
        rng=np.random.default_rng(5),
    )
    rng = np.random.default_rng(5)
    want = 0.0
    for block in range(4):  # iterations 0, 1, 2, then the LoRA-upload phase
        g_main = drop.main.gain[:, None] * rng.exponential(1.0, (k, m))
        g_fed = drop.fed.gain[:, None] * rng.exponential(1.0, (k, n))
        rng.exponential(1.0, k)
        d = delays(_with_gains(drop, g_main, g_fed), work, alloc, batch_size=B, local_iterations=1, rounds=1)
        want += d.iteration_s if block < 3 else d.T3_s
    assert res.total_s == pytest.approx(want, rel=1e-9)


def test_fading_keeps_the_mean_rate_of_a_subchannel():
    # Prepare: one client, one subchannel, many rounds: E[log2(1+g x)] with g ~ Exp(1) is known in closed form
    drop = equal_drop(1, gain=1e-12, subchannels=1)
    work = random_workload(np.random.default_rng(0), 1)
    alloc = round_robin(drop, 1, power_w=0.1)
    cfg = EngineConfig(fading_every_round=True, trace=False)
    res = simulate(
        drop,
        work,
        alloc,
        batch_size=B,
        local_iterations=1,
        rounds=4000,
        config=cfg,
        rng=np.random.default_rng(3),
    )
    # the upload is the only random term of a round: rate = bits / (round time - the fixed terms)
    ref = delays(drop, work, alloc, batch_size=B, local_iterations=1, rounds=1)
    fixed = ref.t_client_fwd_s[0] + ref.t_server_fwd_s + ref.t_server_bwd_s + ref.t_client_bwd_s[0]
    durations = np.array([r["duration_s"] for r in res.round_rows])
    rng = np.random.default_rng(3)
    fed_rates = []
    for _ in range(4000):
        rng.exponential(1.0, (1, 1))
        g_fed = drop.fed.gain[0] * rng.exponential(1.0)
        rng.exponential(1.0, 1)
        fed_rates.append(
            drop.fed.subchannel_hz * np.log2(1 + alloc.psd_fed_w_hz[0] * g_fed / drop.fed.noise_psd_w_hz)
        )
    t_lora = (work.lora_bits_per_rank[0] * alloc.ranks[0, 0]) / np.array(fed_rates)
    rates = B * work.act_bits[0] / (durations - fixed - t_lora)
    snr = alloc.psd_main_w_hz[0] * 1e-12 / drop.main.noise_psd_w_hz
    from scipy.special import exp1

    mean_rate = drop.main.subchannel_hz * np.exp(1 / snr) * exp1(1 / snr) / np.log(2)  # E[B log2(1 + snr g)]
    assert abs(rates.mean() - mean_rate) < 4 * rates.std() / np.sqrt(rates.size)


# --- downlink -----------------------------------------------------------------------------------


def _down_rate(drop, cfg, slots):
    bw = cfg.downlink_bandwidth_hz
    return bw / slots * np.log2(1 + cfg.downlink_power_w / bw * drop.main.gain / drop.main.noise_psd_w_hz)


def test_download_time_is_bits_over_downlink_rate_one_client():
    _, work, drop, alloc = _setup(3, k=1)
    cfg = EngineConfig(download=True)
    res = simulate(
        drop,
        work,
        alloc,
        batch_size=B,
        local_iterations=2,
        rounds=1,
        config=cfg,
        rng=np.random.default_rng(0),
    )
    ref = delays(drop, work, alloc, batch_size=B, local_iterations=2, rounds=1)
    t_dl = B * work.act_bits[alloc.cuts[0] - 1] / _down_rate(drop, cfg, 1)[0]
    dl = res.trace[res.trace["phase"] == "download_gradient"]
    np.testing.assert_allclose(dl["end_s"] - dl["start_s"], t_dl, rtol=1e-12)
    assert res.total_s == pytest.approx(ref.total_s + 2 * t_dl, rel=1e-9)


@pytest.mark.parametrize("slots", [1, 4])
def test_downloads_share_the_downlink(slots):
    # Prepare: gradients are released together; one slot serves clients one by one in arrival order
    _, work, drop, alloc = _setup(4, k=4)
    cfg = EngineConfig(download=True, downlink_slots=slots)
    ref = delays(drop, work, alloc, batch_size=B, local_iterations=1, rounds=1)
    t_dl = B * work.act_bits[alloc.cuts - 1] / _down_rate(drop, cfg, slots)
    server_end = ref.T1_s + ref.t_server_fwd_s + ref.t_server_bwd_s
    if slots == 1:
        order = np.argsort(ref.t_client_fwd_s + ref.t_upload_act_s)
        got_dl = np.empty(4)
        got_dl[order] = server_end + np.cumsum(t_dl[order])
    else:
        got_dl = server_end + t_dl
    want = np.max(got_dl + ref.t_client_bwd_s) + ref.T3_s
    # Execute
    res = simulate(
        drop,
        work,
        alloc,
        batch_size=B,
        local_iterations=1,
        rounds=1,
        config=cfg,
        rng=np.random.default_rng(0),
    )
    # Assert
    assert res.total_s == pytest.approx(want, rel=1e-9)


# --- pipelined main server ------------------------------------------------------------------------


@pytest.mark.parametrize("server_flops_per_s", [2e11, 1e13])  # server-bound and client-bound regimes
def test_pipelined_equal_clients_match_the_cyclic_tandem_queue(server_flops_per_s):
    # K equal clients cycle through (client FP + upload: a) -> server FIFO (s) -> client BP (b).
    # Closed form of the deterministic cyclic queue: a + b + K s + (I - 1) max(K s, a + b + s).
    k, iters = 5, 6
    drop = equal_drop(k, server_flops_per_s=server_flops_per_s)
    work = random_workload(np.random.default_rng(1), 2)
    alloc = round_robin(drop, 2, cut=1, rank=4)
    ref = delays(drop, work, alloc, batch_size=B, local_iterations=1, rounds=1)
    a = ref.t_client_fwd_s[0] + ref.t_upload_act_s[0]
    b = ref.t_client_bwd_s[0]
    s = (ref.t_server_fwd_s + ref.t_server_bwd_s) / k
    cfg = EngineConfig(pipelined_server=True, iteration_barrier=False)
    res = simulate(
        drop,
        work,
        alloc,
        batch_size=B,
        local_iterations=iters,
        rounds=1,
        config=cfg,
        rng=np.random.default_rng(0),
    )
    want = a + b + k * s + (iters - 1) * max(k * s, a + b + s) + ref.T3_s
    assert res.total_s == pytest.approx(want, rel=1e-9)


def test_pipelined_heterogeneous_clients_follow_the_lindley_recursion():
    _, work, drop, alloc = _setup(6, k=5)
    ref = delays(drop, work, alloc, batch_size=B, local_iterations=1, rounds=1)
    sf, sb = _server_each_s(drop, work, alloc)
    arrival = ref.t_client_fwd_s + ref.t_upload_act_s
    done, free = np.empty(5), 0.0
    for c in np.argsort(arrival):  # FIFO single server: d = max(arrival, previous departure) + service
        free = max(arrival[c], free) + sf[c] + sb[c]
        done[c] = free
    want = np.max(done + ref.t_client_bwd_s) + ref.T3_s
    res = simulate(
        drop,
        work,
        alloc,
        batch_size=B,
        local_iterations=1,
        rounds=1,
        config=EngineConfig(pipelined_server=True),
        rng=np.random.default_rng(0),
    )
    assert res.total_s == pytest.approx(want, rel=1e-9)
    assert res.total_s <= ref.total_s * (1 + 1e-12)  # pipelining never hurts one iteration


def test_server_capacity_k_serves_everyone_at_once():
    _, work, drop, alloc = _setup(7, k=3)
    ref = delays(drop, work, alloc, batch_size=B, local_iterations=1, rounds=1)
    sf, sb = _server_each_s(drop, work, alloc)
    arrival = ref.t_client_fwd_s + ref.t_upload_act_s
    want = np.max(arrival + sf + sb + ref.t_client_bwd_s) + ref.T3_s
    cfg = EngineConfig(pipelined_server=True, server_gpu_capacity=3)
    assert simulate(
        drop,
        work,
        alloc,
        batch_size=B,
        local_iterations=1,
        rounds=1,
        config=cfg,
        rng=np.random.default_rng(0),
    ).total_s == pytest.approx(want)


def test_no_iteration_barrier_lets_clients_run_ahead():
    _, work, drop, alloc = _setup(8, k=4)
    ref = delays(drop, work, alloc, batch_size=B, local_iterations=1, rounds=1)
    tf, ta, tb, tu = ref.t_client_fwd_s, ref.t_upload_act_s, ref.t_client_bwd_s, ref.t_upload_lora_s
    start = np.zeros(4)
    for _ in range(3):  # server waits for all activations; each client restarts right after its own BP
        server_end = np.max(start + tf + ta) + ref.t_server_fwd_s + ref.t_server_bwd_s
        start = server_end + tb
    want = np.max(start + tu)
    res = simulate(
        drop,
        work,
        alloc,
        batch_size=B,
        local_iterations=3,
        rounds=1,
        config=EngineConfig(iteration_barrier=False),
        rng=np.random.default_rng(0),
    )
    assert res.total_s == pytest.approx(want, rel=1e-9)


# --- failures, stragglers, deadlines ------------------------------------------------------------------


def _subset_total(ref, drop, work, alloc, clients, iters, slow=1.0):
    """Paper-mode round time of a subset of clients, from the model's per-client terms."""
    sf, sb = _server_each_s(drop, work, alloc)
    c = np.asarray(clients)
    if c.size == 0:
        return 0.0
    t1 = np.max(slow * ref.t_client_fwd_s[c] + ref.t_upload_act_s[c])
    t = t1 + sf[c].sum() + sb[c].sum() + np.max(slow * ref.t_client_bwd_s[c])
    return iters * t + np.max(ref.t_upload_lora_s[c])


def test_failures_remove_clients_for_the_round():
    _, work, drop, alloc = _setup(9, k=6)
    ref = delays(drop, work, alloc, batch_size=B, local_iterations=2, rounds=1)
    res = simulate(
        drop,
        work,
        alloc,
        batch_size=B,
        local_iterations=2,
        rounds=5,
        config=EngineConfig(failure_prob=0.4),
        rng=np.random.default_rng(17),
    )
    rng = np.random.default_rng(17)
    for row in res.round_rows:
        alive = np.flatnonzero(rng.random(6) >= 0.4)
        assert row["clients_aggregated"] == alive.size
        assert row["duration_s"] == pytest.approx(_subset_total(ref, drop, work, alloc, alive, 2), rel=1e-9)


def test_everyone_failing_gives_empty_rounds():
    _, work, drop, alloc = _setup(10)
    res = simulate(
        drop,
        work,
        alloc,
        batch_size=B,
        local_iterations=2,
        rounds=3,
        config=EngineConfig(failure_prob=1.0),
        rng=np.random.default_rng(0),
    )
    assert res.total_s == 0.0 and [r["clients_aggregated"] for r in res.round_rows] == [0, 0, 0]


def test_stragglers_slow_their_compute_by_the_factor():
    _, work, drop, alloc = _setup(11, k=5)
    ref = delays(drop, work, alloc, batch_size=B, local_iterations=2, rounds=1)
    cfg = EngineConfig(straggler_prob=0.5, straggler_slowdown=4.0)
    res = simulate(
        drop,
        work,
        alloc,
        batch_size=B,
        local_iterations=2,
        rounds=4,
        config=cfg,
        rng=np.random.default_rng(23),
    )
    rng = np.random.default_rng(23)
    sf, sb = _server_each_s(drop, work, alloc)
    for row in res.round_rows:
        slow = np.where(rng.random(5) < 0.5, 4.0, 1.0)
        t1 = np.max(slow * ref.t_client_fwd_s + ref.t_upload_act_s)
        t = t1 + sf.sum() + sb.sum() + np.max(slow * ref.t_client_bwd_s)
        assert row["duration_s"] == pytest.approx(2 * t + ref.T3_s, rel=1e-9)


def test_round_deadline_drops_exactly_the_clients_slower_than_it():
    _, work, drop, alloc = _setup(12, k=6)
    ref = delays(drop, work, alloc, batch_size=B, local_iterations=2, rounds=1)
    finish = 2 * ref.iteration_s + ref.t_upload_lora_s  # each client's LoRA arrival
    deadline = float(np.median(finish))
    res = simulate(
        drop,
        work,
        alloc,
        batch_size=B,
        local_iterations=2,
        rounds=2,
        config=EngineConfig(round_deadline_s=deadline),
        rng=np.random.default_rng(0),
    )
    on_time = set(np.flatnonzero(finish <= deadline).tolist())
    for e, row in enumerate(res.round_rows):
        assert res.client_status[e]["aggregated"] == on_time
        assert res.client_status[e]["excluded"] == set(range(6)) - on_time
        assert row["duration_s"] == pytest.approx(deadline, rel=1e-12)


def test_activation_deadline_lets_the_server_proceed_without_late_clients():
    _, work, drop, alloc = _setup(13, k=6)
    ref = delays(drop, work, alloc, batch_size=B, local_iterations=3, rounds=1)
    arrival = ref.t_client_fwd_s + ref.t_upload_act_s
    deadline = float(np.sort(arrival)[3] + np.sort(arrival)[4]) / 2  # four clients make it
    on_time = np.flatnonzero(arrival <= deadline)
    sf, sb = _server_each_s(drop, work, alloc)
    first = deadline + sf[on_time].sum() + sb[on_time].sum() + ref.t_client_bwd_s[on_time].max()
    t_on = _subset_total(ref, drop, work, alloc, on_time, 1) - ref.t_upload_lora_s[on_time].max()
    want = first + 2 * t_on + ref.t_upload_lora_s[on_time].max()
    res = simulate(
        drop,
        work,
        alloc,
        batch_size=B,
        local_iterations=3,
        rounds=1,
        config=EngineConfig(activation_deadline_s=deadline),
        rng=np.random.default_rng(0),
    )
    assert res.client_status[0]["aggregated"] == set(on_time.tolist())
    assert res.client_status[0]["excluded"] == set(range(6)) - set(on_time.tolist())
    assert res.total_s == pytest.approx(want, rel=1e-9)


# --- energy, aggregation, broadcast -----------------------------------------------------------------


def test_energy_is_transmit_power_times_time_plus_capacitance_model():
    _, work, drop, alloc = _setup(14, k=4)
    cfg = EngineConfig(effective_capacitance=2e-28)
    res = simulate(
        drop,
        work,
        alloc,
        batch_size=B,
        local_iterations=3,
        rounds=2,
        config=cfg,
        rng=np.random.default_rng(0),
    )
    ref = delays(drop, work, alloc, batch_size=B, local_iterations=3, rounds=1)
    p_main = np.bincount(
        alloc.owner_main[alloc.owner_main >= 0],
        alloc.psd_main_w_hz[alloc.owner_main >= 0] * drop.main.subchannel_hz,
        4,
    )
    p_fed = np.bincount(
        alloc.owner_fed[alloc.owner_fed >= 0],
        alloc.psd_fed_w_hz[alloc.owner_fed >= 0] * drop.fed.subchannel_hz,
        4,
    )
    tx = 3 * p_main * ref.t_upload_act_s + p_fed * ref.t_upload_lora_s
    f_hz = drop.client_cycles_per_s  # draw_drop: f_k; FLOP/s = f_k x 80
    # FLOPs = time x FLOP/s, cycles = FLOPs / 80, energy = k f^2 cycles
    cycles = 3 * (ref.t_client_fwd_s + ref.t_client_bwd_s) * drop.client_flops_per_s / 80.0
    cpu = 2e-28 * f_hz**2 * cycles
    for e in range(2):
        np.testing.assert_allclose(res.energy_tx_j[e], tx, rtol=1e-9)
        np.testing.assert_allclose(res.energy_compute_j[e], cpu, rtol=1e-9)
        assert res.round_rows[e]["energy_j"] == pytest.approx(tx.sum() + cpu.sum(), rel=1e-9)
    assert res.client_rows()[0]["aggregated"] is True


def test_energy_flops_per_cycle_comes_from_the_config_or_the_drop():
    _, work, drop, alloc = _setup(17, k=2)
    base = simulate(
        drop,
        work,
        alloc,
        batch_size=B,
        local_iterations=1,
        rounds=1,
        config=EngineConfig(),
        rng=np.random.default_rng(0),
    ).energy_compute_j
    cfg = EngineConfig(energy_flops_per_cycle=160.0)  # twice the drop's 80: f halves, cycles halve -> 1/8
    half = simulate(
        drop,
        work,
        alloc,
        batch_size=B,
        local_iterations=1,
        rounds=1,
        config=cfg,
        rng=np.random.default_rng(0),
    ).energy_compute_j
    np.testing.assert_allclose(half, base / 8, rtol=1e-12)
    bare = dataclasses.replace(drop, client_cycles_per_s=None)
    with pytest.raises(InputError, match="energy_flops_per_cycle"):
        simulate(
            bare,
            work,
            alloc,
            batch_size=B,
            local_iterations=1,
            rounds=1,
            config=EngineConfig(),
            rng=np.random.default_rng(0),
        )


def test_aggregation_and_broadcast_add_their_times():
    _, work, drop, alloc = _setup(15, k=3)
    cfg = EngineConfig(aggregation_s=0.25, broadcast=True)
    ref = delays(drop, work, alloc, batch_size=B, local_iterations=2, rounds=1)
    lora = (np.arange(1, 4)[None, :] <= alloc.cuts[:, None]) * alloc.ranks @ work.lora_bits_per_rank
    t_bc = lora.max() / _down_rate(drop, cfg, 1).min()
    res = simulate(
        drop,
        work,
        alloc,
        batch_size=B,
        local_iterations=2,
        rounds=2,
        config=cfg,
        rng=np.random.default_rng(0),
    )
    assert res.total_s == pytest.approx(2 * (ref.total_s + 0.25 + t_bc), rel=1e-9)


def test_downlink_rate_helper_matches_shannon():
    _, _, drop, _ = _setup(16)
    cfg = EngineConfig(downlink_slots=2)
    from fedsim.engine.channel_state import downlink_rates_bps

    want = channel.shannon_rate_bps(
        cfg.downlink_bandwidth_hz / 2,
        cfg.downlink_power_w / cfg.downlink_bandwidth_hz,
        drop.main.gain,
        noise_psd_w_hz=drop.main.noise_psd_w_hz,
    )
    np.testing.assert_allclose(downlink_rates_bps(drop.main.gain, cfg, drop.main.noise_psd_w_hz), want)


def test_pipelined_server_refuses_an_activation_deadline():
    with pytest.raises(ValueError, match="activation_deadline_s"):
        EngineConfig(pipelined_server=True, activation_deadline_s=1.0)
