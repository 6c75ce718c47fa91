"""Issue 23: the radio allocation re-optimised after a live cut move: the optimiser's link step for given cuts
(``fedsim.optimize.allocate_links``), and the engine's switch to it (charged once, rounds re-timed)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from engine_helpers import random_allocation, random_drop, random_workload

from fedsim.core.allocation import cut_layer_ranks
from fedsim.core.delay import delays
from fedsim.engine import EngineConfig, simulate
from fedsim.engine.channel_state import ChannelState
from fedsim.engine.trainer import StubTrainer
from fedsim.optimize import Problem, allocate_links
from fedsim.optimize.bcd import _Blocks, _links_step, _solver_labels
from fedsim.optimize.objective import CostModel
from fedsim.optimize.scheme_spec import SCHEME_SPECS


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def _problem(drop, work, rank_cut=4):
    return Problem(
        drop=drop,
        workload=work,
        batch_size=4,
        local_iterations=2,
        rounds_by_rank={8: 1.0},
        per_client_cuts=True,
        rank_cut=rank_cut,
    )


def test_allocate_links_is_the_bcd_link_step_for_the_given_cuts():
    rng = np.random.default_rng(23)
    for _ in range(10):
        work = random_workload(rng, num_layers=5)
        drop = random_drop(rng, k=int(rng.integers(2, 5)), fading=False)
        problem = _problem(drop, work)
        base = random_allocation(rng, drop, 5)
        cuts = rng.integers(1, 5, drop.num_clients)
        got = allocate_links(problem, base, cuts=cuts, rank=8)
        spec = SCHEME_SPECS["proposed"]
        blocks = _Blocks(base.owner_main, base.owner_fed, base.psd_main_w_hz, base.psd_fed_w_hz, cuts, 8)
        _links_step(
            problem,
            spec,
            CostModel.of(problem),
            blocks,
            memo={},
            solver_status=_solver_labels(problem, spec, "exact", True),
            power_solver="exact",
            refine=True,
        )
        want = blocks.allocation(problem)
        for name in ("owner_main", "owner_fed", "psd_main_w_hz", "psd_fed_w_hz", "cuts", "ranks"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
        np.testing.assert_array_equal(got.ranks, cut_layer_ranks(cuts, 5, 4, rank_others=8))


class _ReallocTrainer(StubTrainer):
    """Moves client 0's cut c -> c+1 at the first aggregation and hands the link step's allocation for the
    new cuts (``take_allocation``)."""

    reallocates = True

    def __init__(self, cuts, problem, previous, stop_after):
        super().__init__(stop_after=stop_after)
        self.cuts, self.problem, self.previous, self._moves = list(cuts), problem, previous, []
        self.allocations: list[tuple[int, object]] = []

    def aggregate(self, clients):
        super().aggregate(clients)
        if len([c for c in self.calls if c[0] == "aggregate"]) == 1:
            self._moves = [{"client": 0, "block": self.cuts[0] + 1, "to_client": True, "rank": 8}]
            self.cuts[0] += 1

    def take_cut_moves(self):
        out, self._moves = self._moves, []
        return out

    def layout(self):
        cuts = np.asarray(self.cuts)
        return self.cuts, cut_layer_ranks(cuts, self.problem.workload.num_layers, 4, rank_others=8)

    def take_allocation(self, round_index):
        alloc = allocate_links(self.problem, self.previous, cuts=np.asarray(self.cuts), rank=8)
        self.allocations.append((round_index, alloc))
        return alloc


def test_a_reallocation_is_charged_once_per_move_and_the_next_round_is_timed_with_it():
    rng = np.random.default_rng(7)
    work = random_workload(rng, num_layers=4)
    drop = random_drop(rng, k=3, fading=False)
    problem = _problem(drop, work)
    before = np.array([2, 1, 3])
    after = np.array([3, 1, 3])
    a0 = allocate_links(problem, random_allocation(rng, drop, 4), cuts=before, rank=8)
    trainer = _ReallocTrainer(before, problem, a0, stop_after=3)
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
    # the allocation handed over is the link step's for the new cuts, and differs from the old one
    assert len(trainer.allocations) == 1 and trainer.allocations[0][0] == 0
    a1 = trainer.allocations[0][1]
    np.testing.assert_array_equal(a1.cuts, after)
    direct = allocate_links(problem, a0, cuts=after, rank=8)
    np.testing.assert_array_equal(a1.owner_main, direct.owner_main)
    np.testing.assert_array_equal(a1.psd_main_w_hz, direct.psd_main_w_hz)
    assert not np.array_equal(a1.psd_main_w_hz, a0.psd_main_w_hz)
    # charged once: the block move, then the broadcast of (M + N)(ceil(log2 K) + 32) bits at the weakest downlink
    trace = sim.trace
    re = trace[trace["phase"] == "reallocate"]
    assert len(re) == 1
    bits = (drop.main.num_subchannels + drop.fed.num_subchannels) * (math.ceil(math.log2(3)) + 32)
    rate_down = ChannelState(drop, a0, EngineConfig(), np.random.default_rng(0)).rate_down_bps
    assert re["bits"].iloc[0] == bits
    assert _rel(re["end_s"].iloc[0] - re["start_s"].iloc[0], bits / rate_down.min()) < 1e-9
    move_s = 3 * work.lora_bits_per_rank[2] * 8 / rate_down[0]
    # rounds: old allocation and cuts, then (after move + reallocation) the delay model of the new ones
    one = dict(batch_size=4, local_iterations=2, rounds=1)
    t0 = delays(drop, work, a0, **one).total_s
    t1 = delays(drop, work, a1, **one).total_s
    rows = sim.round_rows
    assert [r["allocation_version"] for r in rows] == [0, 1, 1]
    assert _rel(rows[0]["duration_s"], t0 + move_s + bits / rate_down.min()) < 1e-9
    assert _rel(rows[1]["duration_s"], t1) < 1e-9
    assert _rel(rows[2]["duration_s"], t1) < 1e-9
    # a stale allocation would time round 2 differently (the check has teeth)
    stale = replace(a0, cuts=a1.cuts, ranks=a1.ranks)
    assert _rel(delays(drop, work, stale, **one).total_s, t1) > 1e-6
    # the trace labels name the new subchannels
    uploads = trace[(trace["phase"] == "upload_activation") & (trace["round"] == 1)]
    owned = ",".join(str(i) for i in np.flatnonzero(a1.owner_main == 0))
    assert set(uploads[uploads["actor"] == "client0"]["resource"]) == {f"main_subch:{owned}"}


def test_without_the_hook_rows_carry_no_allocation_version():
    rng = np.random.default_rng(1)
    work = random_workload(rng, num_layers=4)
    drop = random_drop(rng, k=2, fading=False)
    alloc = random_allocation(rng, drop, 4)
    sim = simulate(
        drop,
        work,
        alloc,
        batch_size=2,
        local_iterations=1,
        rounds=2,
        config=EngineConfig(),
        rng=np.random.default_rng(0),
        trainer=StubTrainer(stop_after=2),
    )
    assert all("allocation_version" not in r for r in sim.round_rows)
    assert not (sim.trace["phase"] == "reallocate").any()
