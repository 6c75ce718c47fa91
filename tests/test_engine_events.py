"""SimPy-style tests: tiny runs whose logged event sequence (trace, trainer calls) is checked exactly."""

from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import random_allocation, random_drop, random_workload

from fedsim.core.delay import delays
from fedsim.engine import TRACE_COLUMNS, EngineConfig, StubTrainer, Trainer, phase_summary, simulate
from fedsim.errors import InputError

B = 2


def _small(seed: int = 0, k: int = 2):
    rng = np.random.default_rng(seed)
    work = random_workload(rng, 2)
    drop = random_drop(rng, k=k, fading=False)
    return work, drop, random_allocation(rng, drop, 2)


def test_one_iteration_logs_the_paper_event_sequence():
    # Prepare
    work, drop, alloc = _small()
    d = delays(drop, work, alloc, batch_size=B, local_iterations=1, rounds=1)
    tf, ta, tb, tu = d.t_client_fwd_s, d.t_upload_act_s, d.t_client_bwd_s, d.t_upload_lora_s
    s0, s1 = d.T1_s, d.T1_s + d.t_server_fwd_s
    s2 = s1 + d.t_server_bwd_s
    want = {
        ("client0", "forward", 0.0, tf[0]),
        ("client1", "forward", 0.0, tf[1]),
        ("client0", "upload_activation", tf[0], tf[0] + ta[0]),
        ("client1", "upload_activation", tf[1], tf[1] + ta[1]),
        ("main_server", "server_forward", s0, s1),
        ("main_server", "server_backward", s1, s2),
        ("client0", "backward", s2, s2 + tb[0]),
        ("client1", "backward", s2, s2 + tb[1]),
        ("client0", "upload_lora", s2 + d.T2_s, s2 + d.T2_s + tu[0]),
        ("client1", "upload_lora", s2 + d.T2_s, s2 + d.T2_s + tu[1]),
        ("fed_server", "aggregate", s2 + d.T2_s + d.T3_s, s2 + d.T2_s + d.T3_s),
    }
    # Execute
    trace = simulate(
        drop,
        work,
        alloc,
        batch_size=B,
        local_iterations=1,
        rounds=1,
        config=EngineConfig(),
        rng=np.random.default_rng(0),
    ).trace
    # Assert
    assert tuple(trace.columns) == TRACE_COLUMNS
    got = list(zip(trace["actor"], trace["phase"], trace["start_s"], trace["end_s"], strict=True))
    assert len(got) == len(want)
    for row in got:
        match = [w for w in want if w[:2] == row[:2] and np.allclose(w[2:], row[2:], rtol=1e-12, atol=0)]
        assert match, row
    assert list(trace["start_s"]) == sorted(trace["start_s"])


def test_trace_rows_carry_bits_flops_and_resources():
    work, drop, alloc = _small(1)
    trace = simulate(
        drop,
        work,
        alloc,
        batch_size=B,
        local_iterations=2,
        rounds=1,
        config=EngineConfig(),
        rng=np.random.default_rng(0),
    ).trace
    up = trace[(trace["phase"] == "upload_activation") & (trace["actor"] == "client1")]
    assert (up["bits"] == B * work.act_bits[alloc.cuts[1] - 1]).all()
    subs = ",".join(str(i) for i in np.flatnonzero(alloc.owner_main == 1))
    assert (up["resource"] == f"main_subch:{subs}").all()
    fwd = trace[(trace["phase"] == "forward")]
    assert (fwd["flops"] > 0).all() and set(fwd["resource"]) == {"gpu:client0", "gpu:client1"}
    assert trace[trace["phase"] == "upload_lora"]["iteration"].isna().all()
    summary = phase_summary(trace)
    assert summary.set_index("phase").loc["forward", "events"] == 4  # 2 clients x 2 iterations


def test_stub_trainer_is_called_in_event_order_and_stops_the_run():
    # Prepare
    work, drop, alloc = _small(2, k=3)
    d = delays(drop, work, alloc, batch_size=B, local_iterations=1, rounds=1)
    arrival_order = tuple(np.argsort(d.t_client_fwd_s + d.t_upload_act_s).tolist())
    upload_order = tuple(np.argsort(d.t_upload_lora_s).tolist())
    trainer = StubTrainer(stop_after=2)
    # Execute
    res = simulate(
        drop,
        work,
        alloc,
        batch_size=B,
        local_iterations=2,
        rounds=10,
        config=EngineConfig(trace=False),
        rng=np.random.default_rng(0),
        trainer=trainer,
    )
    # Assert
    bwd_order = np.argsort(d.t_client_bwd_s).tolist()  # the order clients reach the iteration barrier

    def iteration(fwd_order):
        return (
            [("client_forward", k) for k in fwd_order]
            + [("server_step", arrival_order)]
            + [("client_backward", k) for k in arrival_order]
        )

    one_round = iteration(range(3)) + iteration(bwd_order) + [("aggregate", upload_order)]
    assert trainer.calls == one_round + [("end_round", 0)] + one_round + [("end_round", 1)]
    assert res.rounds_completed == 2 and res.converged
    assert isinstance(trainer, Trainer)


def test_live_run_that_never_converges_stops_at_the_maximum():
    work, drop, alloc = _small(3)
    res = simulate(
        drop,
        work,
        alloc,
        batch_size=B,
        local_iterations=1,
        rounds=3,
        config=EngineConfig(),
        rng=np.random.default_rng(0),
        trainer=StubTrainer(),
    )
    assert res.rounds_completed == 3 and not res.converged


def test_an_excluded_client_gets_no_backward_call():
    work, drop, alloc = _small(4, k=3)
    d = delays(drop, work, alloc, batch_size=B, local_iterations=1, rounds=1)
    arrival = d.t_client_fwd_s + d.t_upload_act_s
    late = int(np.argmax(arrival))
    deadline = float(np.sort(arrival)[1] + np.sort(arrival)[2]) / 2
    trainer = StubTrainer()
    cfg = EngineConfig(activation_deadline_s=deadline)
    res = simulate(
        drop,
        work,
        alloc,
        batch_size=B,
        local_iterations=2,
        rounds=1,
        config=cfg,
        rng=np.random.default_rng(0),
        trainer=trainer,
    )
    assert ("client_backward", late) not in trainer.calls
    assert trainer.calls.count(("client_forward", late)) == 1
    on_time = tuple(sorted(set(range(3)) - {late}, key=lambda k: arrival[k]))
    assert ("server_step", on_time) in trainer.calls
    assert [c for c in trainer.calls if c[0] == "aggregate"][0][1] == tuple(
        sorted(on_time, key=lambda k: d.t_upload_lora_s[k])
    )
    excluded = res.trace[res.trace["phase"] == "excluded"]
    assert list(excluded["actor"]) == [f"client{late}"]
    assert excluded["start_s"].iloc[0] == pytest.approx(deadline)


@pytest.mark.parametrize("capacity", [1, 2])
def test_server_gpu_capacity_bounds_concurrent_jobs(capacity):
    work, drop, alloc = _small(5, k=4)
    cfg = EngineConfig(pipelined_server=True, server_gpu_capacity=capacity)
    trace = simulate(
        drop,
        work,
        alloc,
        batch_size=B,
        local_iterations=2,
        rounds=1,
        config=cfg,
        rng=np.random.default_rng(0),
    ).trace
    jobs = trace[trace["actor"] == "main_server"]
    times = sorted({*jobs["start_s"], *jobs["end_s"]})
    busy = [((jobs["start_s"] <= t) & (jobs["end_s"] > t)).sum() for t in times]
    assert max(busy) <= capacity


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"local_iterations": 0}, "local_iterations"),
        ({"rounds": 0}, "rounds"),
        ({"rounds": float("inf")}, "rounds"),
    ],
)
def test_bad_arguments_raise_input_error(kwargs, match):
    work, drop, alloc = _small(6)
    args = {"batch_size": 2, "local_iterations": 1, "rounds": 1.0} | kwargs
    with pytest.raises(InputError, match=match):
        simulate(drop, work, alloc, config=EngineConfig(), rng=np.random.default_rng(0), **args)


def test_allocation_for_another_number_of_clients_is_refused():
    work, drop, alloc = _small(7, k=2)
    _, drop3, _ = _small(8, k=3)
    with pytest.raises(InputError, match="clients"):
        simulate(
            drop3,
            work,
            alloc,
            batch_size=2,
            local_iterations=1,
            rounds=1,
            config=EngineConfig(),
            rng=np.random.default_rng(0),
        )


def test_engine_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="extra"):
        EngineConfig(fadingg=True)
    with pytest.raises(ValueError):
        EngineConfig(failure_prob=1.5)
    assert EngineConfig.model_fields["download"].description
