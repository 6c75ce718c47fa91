"""The analytical delay model, eqs. (8)-(17), against a hand computation, plus properties.

The hand computation below writes the equations out for K = 2 clients with scalar Python and
per-client cuts and per-layer ranks (spec §10), on a J = 3 workload whose layers all differ so an
off-by-one in the cut indexing shows up.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsim.core.allocation import Allocation, cut_layer_ranks, uniform_ranks
from fedsim.core.delay import delays
from fedsim.core.system import Drop, Link, SystemParams, draw_drop
from fedsim.core.workload import Workload

FWD = [1e9, 2e9, 3e9]
BWD = [2e9, 5e9, 7e9]
LORA_FWD = [1e6, 2e6, 3e6]
LORA_BWD = [3e6, 4e6, 5e6]
ACT = [1e6, 2e6, 3e6]
LORA_BITS = [1e4, 2e4, 3e4]
HEAD_F, HEAD_B = 10e9, 20e9
N0 = 1e-20
B_MAIN, B_FED = 1e6, 2e6
G_MAIN, G_FED = [1e-12, 1e-13], [1e-11, 1e-12]
F_CLIENT, F_SERVER = [1e11, 2e11], 1e13


def _workload() -> Workload:
    a = np.array
    return Workload(
        "hand", 64, a(FWD), a(BWD), a(LORA_FWD), a(LORA_BWD), a(ACT), a(LORA_BITS), HEAD_F, HEAD_B
    )


def _drop() -> Drop:
    zeros = np.zeros(2)
    return Drop(
        positions_m=np.zeros((2, 2)),
        main_xy_m=(100.0, 0.0),
        distance_main_m=zeros,
        distance_fed_m=zeros,
        shadow_main_db=zeros,
        shadow_fed_db=zeros,
        main=Link(3, B_MAIN, N0, 1.0, np.array(G_MAIN)),
        fed=Link(2, B_FED, N0, 1.0, np.array(G_FED)),
        p_max_w=np.full(2, 0.2),
        client_flops_per_s=np.array(F_CLIENT),
        server_flops_per_s=F_SERVER,
    )


OWNER_MAIN, PSD_MAIN = [0, 1, 1], [1e-8, 2e-8, 1e-8]
OWNER_FED, PSD_FED = [1, 0], [3e-9, 1e-8]
CUTS = [1, 2]
RANKS = [[4, 4, 4], [2, 8, 1]]


def _alloc(cuts=CUTS, ranks=RANKS, owner_main=OWNER_MAIN) -> Allocation:
    return Allocation(
        np.array(owner_main),
        np.array(OWNER_FED),
        np.array(PSD_MAIN),
        np.array(PSD_FED),
        np.array(cuts),
        np.array(ranks),
    )


def _hand(b: int, local_iterations: int, rounds: float) -> dict:
    """Eqs. (8)-(17) for K = 2, written out."""
    out = {"tF": [], "tA": [], "tB": [], "tU": []}
    server_f = server_b = 0.0
    for k in range(2):
        c, r = CUTS[k], RANKS[k]
        client = range(c)  # blocks 1..c_k (0-based 0..c_k-1)
        server = range(c, 3)
        phi_cf = sum(FWD[j] + r[j] * LORA_FWD[j] for j in client)  # Phi_c^F + Delta-Phi_c^F
        phi_cb = sum(BWD[j] + r[j] * LORA_BWD[j] for j in client)
        out["tF"].append(b * phi_cf / F_CLIENT[k])  # (8)
        out["tB"].append(b * phi_cb / F_CLIENT[k])  # (13)
        rate_s = sum(
            B_MAIN * math.log2(1 + PSD_MAIN[i] * G_MAIN[k] / N0) for i in range(3) if OWNER_MAIN[i] == k
        )
        rate_f = sum(B_FED * math.log2(1 + PSD_FED[i] * G_FED[k] / N0) for i in range(2) if OWNER_FED[i] == k)
        out["tA"].append(b * ACT[c - 1] / rate_s)  # (9), (10): activation of the last client block
        out["tU"].append(sum(r[j] * LORA_BITS[j] for j in client) / rate_f)  # (14), (15)
        server_f += b * (sum(FWD[j] + r[j] * LORA_FWD[j] for j in server) + HEAD_F)
        server_b += b * (sum(BWD[j] + r[j] * LORA_BWD[j] for j in server) + HEAD_B)
    out["tsF"], out["tsB"] = server_f / F_SERVER, server_b / F_SERVER  # (11), (12)
    out["T1"] = max(out["tF"][k] + out["tA"][k] for k in range(2))  # (16)
    out["T2"], out["T3"] = max(out["tB"]), max(out["tU"])
    out["t"] = out["T1"] + out["tsF"] + out["tsB"] + out["T2"]
    out["D1"] = rounds * (local_iterations * out["t"] + out["T3"])  # (17-D1)
    out["D2"] = rounds * local_iterations * (out["t"] + out["T3"])  # (17-D2)
    return out


def test_delays_match_hand_computation_both_readings():
    b, i, e = 4, 3, 10.0
    hand = _hand(b, i, e)
    d1 = delays(_drop(), _workload(), _alloc(), batch_size=b, local_iterations=i, rounds=e)
    d2 = delays(
        _drop(),
        _workload(),
        _alloc(),
        batch_size=b,
        local_iterations=i,
        rounds=e,
        upload_every_local_iteration=True,
    )
    np.testing.assert_allclose(d1.t_client_fwd_s, hand["tF"], rtol=1e-12)
    np.testing.assert_allclose(d1.t_upload_act_s, hand["tA"], rtol=1e-12)
    np.testing.assert_allclose(d1.t_client_bwd_s, hand["tB"], rtol=1e-12)
    np.testing.assert_allclose(d1.t_upload_lora_s, hand["tU"], rtol=1e-12)
    for got, key in [
        (d1.t_server_fwd_s, "tsF"),
        (d1.t_server_bwd_s, "tsB"),
        (d1.T1_s, "T1"),
        (d1.T2_s, "T2"),
        (d1.T3_s, "T3"),
        (d1.iteration_s, "t"),
        (d1.total_s, "D1"),
        (d2.total_s, "D2"),
    ]:
        assert got == pytest.approx(hand[key], rel=1e-12), key
    assert d2.iteration_s == d1.iteration_s and d2.total_s > d1.total_s
    assert d1.feasible and d1.rounds == e and d1.local_iterations == i


def test_uniform_cut_and_rank_reduce_to_paper_form(gpt2_workload, default_drop):
    # with one cut c and one rank r for all K clients, eq. (11) is K b [Phi_s + Delta-Phi_s] / f_s
    k, b, c, r = default_drop.num_clients, 16, 3, 8
    alloc = _round_robin(default_drop, np.full(k, c), uniform_ranks(k, 12, r))
    d = delays(default_drop, gpt2_workload, alloc, batch_size=b, local_iterations=5, rounds=100.0)
    w = gpt2_workload
    phi_s = w.fwd_flops[c:].sum() + r * w.lora_fwd_flops_per_rank[c:].sum() + w.head_fwd_flops
    assert d.t_server_fwd_s == pytest.approx(k * b * phi_s / default_drop.server_flops_per_s)
    np.testing.assert_allclose(d.t_upload_lora_s * d.rate_fed_bps, r * c * 98_304)  # Lambda = r c delta
    np.testing.assert_allclose(d.t_upload_act_s * d.rate_main_bps, b * 12_582_912)  # b Gamma


def test_deeper_cut_moves_work_to_the_client(gpt2_workload, default_drop):
    k = default_drop.num_clients
    runs = [
        delays(
            default_drop,
            gpt2_workload,
            _round_robin(default_drop, np.full(k, c), uniform_ranks(k, 12, 4)),
            batch_size=8,
            local_iterations=2,
            rounds=10.0,
        )
        for c in (1, 6, 12)
    ]
    assert np.all(np.diff([d.t_client_fwd_s for d in runs], axis=0) > 0)
    assert np.all(np.diff([d.t_server_fwd_s for d in runs]) < 0)


def test_cut_layer_ranks_splitft():
    ranks = cut_layer_ranks(np.array([2, 12]), 12, rank_cut=8, rank_others=16)
    assert ranks[0].tolist() == [16, 8, 8] + [16] * 9
    assert ranks[1].tolist() == [16] * 11 + [8]
    with pytest.raises(ValueError, match="rank"):
        uniform_ranks(2, 12, 0)


def test_client_without_subchannel_gives_inf_not_nan():
    d = delays(
        _drop(), _workload(), _alloc(owner_main=[0, 0, -1]), batch_size=4, local_iterations=3, rounds=10.0
    )
    assert np.isinf(d.t_upload_act_s[1]) and np.isinf(d.total_s) and not d.feasible
    assert not np.isnan(d.total_s)


@pytest.mark.parametrize(
    ("change", "word"),
    [
        ({"cuts": [0, 2]}, "cuts"),
        ({"cuts": [1, 4]}, "cuts"),
        ({"ranks": [[4, 0, 4], [2, 8, 1]]}, "ranks"),
    ],
)
def test_bad_allocation_is_rejected(change, word):
    alloc = replace(_alloc(), **{key: np.array(v) for key, v in change.items()})
    with pytest.raises(ValueError, match=word):
        delays(_drop(), _workload(), alloc, batch_size=4, local_iterations=3, rounds=10.0)


@pytest.mark.parametrize(
    ("args", "word"),
    [((0, 3, 10.0), "batch_size"), ((4, 0, 10.0), "local_iterations"), ((4, 3, 0.0), "rounds")],
)
def test_bad_training_arguments_are_rejected(args, word):
    batch_size, local_iterations, rounds = args
    with pytest.raises(ValueError, match=word):
        delays(
            _drop(),
            _workload(),
            _alloc(),
            batch_size=batch_size,
            local_iterations=local_iterations,
            rounds=rounds,
        )


def _round_robin(drop: Drop, cuts, ranks) -> Allocation:
    """Subchannels dealt round-robin, each client's p_max spread evenly over its subchannels."""
    k = drop.num_clients

    def link(lk: Link):
        owner = np.arange(lk.num_subchannels) % k
        count = np.bincount(owner, minlength=k)
        return owner, drop.p_max_w[owner] / (count[owner] * lk.subchannel_hz)

    (om, pm), (of, pf) = link(drop.main), link(drop.fed)
    return Allocation(om, of, pm, pf, np.asarray(cuts), np.asarray(ranks))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    cut=st.integers(1, 12),
    bw_factor=st.floats(1.0, 10.0),
    client_factor=st.floats(1.0, 10.0),
    server_factor=st.floats(1.0, 10.0),
    per_iteration=st.booleans(),
)
def test_total_never_grows_with_bandwidth_or_compute(
    gpt2_workload, seed, cut, bw_factor, client_factor, server_factor, per_iteration
):
    params = SystemParams(num_clients=4)
    k = params.num_clients
    drop = draw_drop(params, np.random.default_rng(seed))
    alloc = _round_robin(drop, np.full(k, cut), uniform_ranks(k, 12, 4))

    def total(d: Drop) -> float:
        return delays(
            d,
            gpt2_workload,
            alloc,
            batch_size=8,
            local_iterations=3,
            rounds=50.0,
            upload_every_local_iteration=per_iteration,
        ).total_s

    base = total(drop)
    assert np.isfinite(base) and base > 0
    # more bandwidth: same seed, so the same positions and shadowing (draw order is fixed); PSDs fixed
    wider = params.model_copy(
        update={"bandwidth_main_hz": 10e6 * bw_factor, "bandwidth_fed_hz": 10e6 * bw_factor}
    )
    assert total(draw_drop(wider, np.random.default_rng(seed))) <= base * (1 + 1e-12)
    faster = dataclasses.replace(drop, client_flops_per_s=drop.client_flops_per_s * client_factor)
    assert total(faster) <= base * (1 + 1e-12)
    bigger = dataclasses.replace(drop, server_flops_per_s=drop.server_flops_per_s * server_factor)
    assert total(bigger) <= base * (1 + 1e-12)
