"""Paper-mode rounds as event callbacks (issue 24) equal the same rounds with client and server processes.

``BarrierRound`` must create the same timeouts at the same instants in the same order as the processes:
every round row, energy and status equal, bit for bit, and the main server sees the clients in the same
arrival order and the federated server gets the LoRA uploads in the same order (both recorded).
"""

from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import equal_drop, random_allocation, random_drop, random_workload, round_robin

import fedsim.engine.builder as builder_module
from fedsim.engine import EngineConfig, simulate
from fedsim.engine.actors import BarrierRound, callback_clients_apply
from fedsim.engine.costs import Costs
from fedsim.engine.state import RoundState

CONFIGS = [
    EngineConfig(trace=False),
    EngineConfig(trace=False, fading_every_round=True),
    EngineConfig(trace=False, failure_prob=0.3, straggler_prob=0.4, straggler_slowdown=2.5),
    EngineConfig(trace=False, aggregation_s=0.7, broadcast=True, downlink_slots=2),
    EngineConfig(trace=False, fading_every_round=True, failure_prob=0.5, server_gpu_capacity=2),
]


def _run(monkeypatch, callbacks: bool, drop, work, alloc, config, *, rounds: float):
    """simulate() with callback clients on or off; also the server's client lists and the upload order."""
    seen: list[tuple] = []
    server_s, uploaded_lora, start = Costs.server_s, RoundState.uploaded_lora, BarrierRound.start
    starts: list[int] = []

    def spy_server_s(self, clients, num_clients):
        seen.append(("server", tuple(clients)))
        return server_s(self, clients, num_clients)

    def spy_uploaded(self, client):
        seen.append(("upload", client))
        return uploaded_lora(self, client)

    def spy_start(self):
        starts.append(1)
        return start(self)

    with monkeypatch.context() as m:
        m.setattr(BarrierRound, "start", spy_start)
        m.setattr(Costs, "server_s", spy_server_s)
        m.setattr(RoundState, "uploaded_lora", spy_uploaded)
        if not callbacks:
            m.setattr(builder_module, "callback_clients_apply", lambda ctx: False)
        result = simulate(
            drop,
            work,
            alloc,
            batch_size=8,
            local_iterations=3,
            rounds=rounds,
            config=config,
            rng=np.random.default_rng(7),
        )
    assert bool(starts) == callbacks  # the path asked for is the one taken
    return result, seen


@pytest.mark.parametrize("config", CONFIGS, ids=range(len(CONFIGS)))
@pytest.mark.parametrize("seed", range(6))
def test_callback_clients_equal_client_processes(monkeypatch, config, seed):
    rng = np.random.default_rng(seed)
    work = random_workload(rng, num_layers=4)
    if seed % 2:  # identical clients: every arrival ties, so the order among equal times is tested
        drop = equal_drop(int(rng.integers(2, 7)))
        alloc = round_robin(drop, 4, cut=2)
    else:
        drop = random_drop(rng, k=int(rng.integers(1, 7)))
        alloc = random_allocation(rng, drop, 4)
    rounds = 3.4 if seed % 3 else 2.0
    fast, fast_seen = _run(monkeypatch, True, drop, work, alloc, config, rounds=rounds)
    slow, slow_seen = _run(monkeypatch, False, drop, work, alloc, config, rounds=rounds)
    assert fast.total_s == slow.total_s
    assert fast.round_rows == slow.round_rows
    assert fast.client_status == slow.client_status
    np.testing.assert_array_equal(fast.energy_tx_j, slow.energy_tx_j)
    np.testing.assert_array_equal(fast.energy_compute_j, slow.energy_compute_j)
    assert fast_seen == slow_seen


@pytest.mark.parametrize(
    "switch",
    [
        {"trace": True},
        {"iteration_barrier": False},
        {"pipelined_server": True},
        {"download": True},
        {"lora_upload_every_iteration": True},
        {"fading_every_iteration": True},
        {"round_deadline_s": 10.0},
        {"activation_deadline_s": 10.0},
    ],
)
def test_callback_clients_only_in_paper_mode_rounds(switch):
    """Any switch that lets a client wait for something of its own keeps the client processes."""
    from fedsim.engine.costs import event_sizes
    from fedsim.engine.state import RunContext

    rng = np.random.default_rng(0)
    drop, work = random_drop(rng, k=3), random_workload(rng)
    alloc = random_allocation(rng, drop, 3)

    def applies(config: EngineConfig) -> bool:
        from fedsim.engine.channel_state import ChannelState

        chan = ChannelState(drop, alloc, config, rng)
        costs = Costs(drop, event_sizes(work, alloc, 4), chan, config)
        ctx = RunContext(
            env=None,
            config=config,
            costs=costs,
            num_clients=3,
            local_iterations=2,
            client_gpu=[],
            main_subchannels=[],
            fed_subchannels=[],
            server_gpu=None,
            downlink=None,
            trainer=None,
            new_block=None,
            trace=[] if config.trace else None,
            names={},
        )
        return callback_clients_apply(ctx)

    assert applies(EngineConfig(trace=False))
    assert not applies(EngineConfig(**{"trace": False, **switch}))


def test_ties_keep_the_order_the_processes_would_resume_in(monkeypatch):
    """Equal FP + upload times but different BP times: iteration 1's arrivals tie and come in the order the
    BPs ended (2, 1, 0), not in client order; the callbacks must keep that order (durations made exact)."""
    new_round, new_block = Costs.new_round, Costs.new_block

    def exact_round(self, slowdown):
        new_round(self, slowdown)
        self.fwd_s, self.bwd_s = [1.0, 1.0, 1.0, 1.0], [3.0, 2.0, 1.0, 2.0]

    def exact_block(self):
        new_block(self)
        self.act_up_s, self.lora_up_s = [0.5, 0.5, 0.5, 0.5], [0.25, 0.25, 0.25, 0.25]

    monkeypatch.setattr(Costs, "new_round", exact_round)
    monkeypatch.setattr(Costs, "new_block", exact_block)
    rng = np.random.default_rng(3)
    drop, work = equal_drop(4), random_workload(rng, num_layers=4)
    alloc = round_robin(drop, 4, cut=2)
    fast, fast_seen = _run(monkeypatch, True, drop, work, alloc, EngineConfig(trace=False), rounds=1)
    slow, slow_seen = _run(monkeypatch, False, drop, work, alloc, EngineConfig(trace=False), rounds=1)
    assert slow_seen[1] == ("server", (2, 1, 3, 0))  # the order under test does differ from client order
    assert fast_seen == slow_seen and fast.round_rows == slow.round_rows
