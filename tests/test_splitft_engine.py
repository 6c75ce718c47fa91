"""SplitFT in the event engine: heterogeneous cuts and cut-layer ranks in paper mode, live cut changes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from engine_helpers import random_allocation, random_drop, random_workload

from fedsim.core.allocation import cut_layer_ranks
from fedsim.core.delay import activation_bits, client_flops, delays, link_rates_bps, server_flops
from fedsim.engine import EngineConfig, simulate
from fedsim.engine.channel_state import ChannelState
from fedsim.engine.trainer import StubTrainer

FAST = EngineConfig(trace=False)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def test_paper_mode_equals_the_delay_model_with_heterogeneous_cuts_and_cut_layer_ranks():
    rng = np.random.default_rng(99)
    worst = 0.0
    for _ in range(200):
        work = random_workload(rng, num_layers=int(rng.integers(3, 7)))
        drop = random_drop(rng)
        j = work.num_layers
        cuts = rng.integers(1, j, drop.num_clients)  # 1..J-1: SplitFT keeps a server block
        base = random_allocation(rng, drop, j)
        alloc = replace(base, cuts=cuts, ranks=cut_layer_ranks(cuts, j, rank_cut=4, rank_others=8))
        ref = delays(drop, work, alloc, batch_size=4, local_iterations=3, rounds=2.0).total_s
        worst = max(
            worst,
            _rel(
                simulate(
                    drop, work, alloc, batch_size=4, local_iterations=3, rounds=2.0, config=FAST, rng=rng
                ).total_s,
                ref,
            ),
        )
    assert worst < 1e-9


class _MovingTrainer(StubTrainer):
    """Moves client 0's cut c -> c+1 at the first aggregation (block c+1 at rank 8 to the client)."""

    def __init__(self, cuts, ranks_after, stop_after):
        super().__init__(stop_after=stop_after)
        self.cuts, self.ranks_after, self._moves = list(cuts), ranks_after, []

    def aggregate(self, clients):
        super().aggregate(clients)
        if len([c for c in self.calls if c[0] == "aggregate"]) == 1:
            self._moves = [{"client": 0, "block": self.cuts[0] + 1, "to_client": True, "rank": 8}]
            self.cuts[0] += 1

    def take_cut_moves(self):
        out, self._moves = self._moves, []
        return out

    def layout(self):
        return self.cuts, self.ranks_after


def test_live_cut_change_is_charged_and_retimes_the_next_round():
    rng = np.random.default_rng(5)
    work = random_workload(rng, num_layers=4)
    drop = random_drop(rng, k=3, fading=False)
    before = np.array([2, 1, 3])
    after = np.array([3, 1, 3])
    base = random_allocation(rng, drop, 4)
    a0 = replace(base, cuts=before, ranks=cut_layer_ranks(before, 4, 4, rank_others=8))
    a1 = replace(base, cuts=after, ranks=cut_layer_ranks(after, 4, 4, rank_others=8))
    trainer = _MovingTrainer(before, a1.ranks, stop_after=2)
    # Execute: two live rounds in paper mode
    sim = simulate(
        drop,
        work,
        a0,
        batch_size=4,
        local_iterations=2,
        rounds=5,
        config=EngineConfig(),
        rng=np.random.default_rng(0),
        trainer=trainer,
    )
    # Assert: round 1 at the old cuts, the block's LoRA values + 2 AdamW moments on the downlink, round 2 new
    rate_down = ChannelState(drop, a0, EngineConfig(), np.random.default_rng(0)).rate_down_bps[0]
    move_s = 3 * work.lora_bits_per_rank[2] * 8 / rate_down
    want = (
        delays(drop, work, a0, batch_size=4, local_iterations=2, rounds=1).total_s
        + move_s
        + delays(drop, work, a1, batch_size=4, local_iterations=2, rounds=1).total_s
    )
    assert sim.rounds_completed == 2
    assert _rel(sim.total_s, want) < 1e-9
    moves = sim.trace[sim.trace["phase"] == "move_block_to_client"]
    assert len(moves) == 1 and moves["bits"].iloc[0] == 3 * work.lora_bits_per_rank[2] * 8


class _ProbingTrainer(StubTrainer):
    """Measures a probe set of n_k / b batches per client after every aggregation (the score rule's)."""

    def __init__(self, batches, stop_after):
        super().__init__(stop_after=stop_after)
        self.batches = batches

    def probe_batches(self):
        return self.batches


def test_the_probe_forward_passes_are_charged_after_each_aggregation():
    rng = np.random.default_rng(8)
    work = random_workload(rng, num_layers=4)
    drop = random_drop(rng, k=3, fading=False)
    alloc = random_allocation(rng, drop, 4)
    batches = [4.0, 2.5, 0.0]  # n_k / b; client 2 has no probe examples
    run = {"batch_size": 4, "local_iterations": 2, "rounds": 5, "config": EngineConfig()}
    sim = simulate(drop, work, alloc, rng=np.random.default_rng(0), trainer=_ProbingTrainer(batches, 2), **run)
    plain = simulate(drop, work, alloc, rng=np.random.default_rng(0), trainer=StubTrainer(stop_after=2), **run)
    # Reference, from the delay model's functions: per client n_k b samples' forward FLOPs and activation bits
    c_fwd, _ = client_flops(work, alloc.cuts, alloc.ranks)
    s_fwd, _ = server_flops(work, alloc.cuts, alloc.ranks)
    rate = link_rates_bps(drop.main, alloc.owner_main, alloc.psd_main_w_hz, num_clients=3)
    act = activation_bits(work, alloc.cuts)
    arrive, server = [], []
    for k, n in enumerate(batches[:2]):
        t_fwd, t_up = n * 4 * c_fwd[k] / drop.client_flops_per_s[k], n * 4 * act[k] / rate[k]
        arrive.append(t_fwd + t_up)
        server.append(n * 4 * s_fwd[k] / drop.server_flops_per_s)
    free = 0.0  # the server takes the probes one at a time, in arrival order
    for a, srv_s in sorted(zip(arrive, server, strict=True)):
        free = max(free, a) + srv_s
    assert _rel(sim.total_s - plain.total_s, 2 * free) < 1e-9  # two rounds, each longer by its probe
    trace = sim.trace
    phases = ("probe_forward", "upload_probe_activation", "probe_server_forward")
    counts = [int((trace["phase"] == p).sum()) for p in phases]
    assert counts == [4, 4, 4]  # two clients with a probe, two rounds
    up = trace[(trace["phase"] == "upload_probe_activation") & (trace["round"] == 0)]
    assert np.allclose(sorted(up["bits"]), sorted(n * 4 * act[k] for k, n in enumerate(batches[:2])), rtol=1e-12)
    uplink = trace[trace["phase"].isin(["upload_activation", "upload_probe_activation"])]
    assert uplink["bits"].sum() > trace[trace["phase"] == "upload_activation"]["bits"].sum()
