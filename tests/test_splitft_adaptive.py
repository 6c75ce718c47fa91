"""SplitFT's adaptive cut rule (spec §10b): known answers, memory bound, block moves, logging, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from learn_tiny import SyntheticLM, tiny_lm

from fedsim.core.cut_rule import decide, scores, time_bound
from fedsim.core.memory import client_memory_bytes
from fedsim.errors import InputError
from fedsim.learn.config import TrainConfig
from fedsim.learn.federated.cutmove import move_cut
from fedsim.learn.federated.systems import build_system
from fedsim.learn.split.lora import add_lora, lora_parameters, lora_state
from fedsim.learn.split.parts import split_model
from fedsim.learn.train import TrainData, train


def test_scores_are_the_weighted_relative_compute_and_quality():
    s = scores([4.0, 2.0, 2.0], [0.5, 0.25, 0.75], gamma=0.25)
    np.testing.assert_allclose(
        s, [0.75 * 1.5 + 0.25 * 1.0, 0.75 * 0.75 + 0.25 * 0.5, 0.75 * 0.75 + 0.25 * 1.5]
    )


def test_a_fast_client_with_good_loss_gains_a_block_and_a_slow_one_loses_one():
    rows = decide(
        [2, 2, 2], [4.0, 1.0, 1.0], [0.6, 0.3, 0.3], gamma=0.5, epsilon=0.1, cut_min=1, cut_max=[3] * 3
    )
    assert [(r["client"], r["old"], r["new"]) for r in rows] == [(0, 2, 3), (1, 2, 1), (2, 2, 1)]


def test_no_move_inside_the_band_and_bounds_are_respected():
    # scores 1.05 / 0.95 with epsilon 0.1: nobody moves
    assert decide([2, 2], [1.05, 0.95], [1.0, 1.0], gamma=0.0, epsilon=0.1, cut_min=1, cut_max=[3, 3]) == []
    # the fast client is at its cut_max, the slow one at cut_min: nobody moves
    assert decide([3, 1], [4.0, 1.0], [1.0, 1.0], gamma=0.0, epsilon=0.1, cut_min=1, cut_max=[3, 3]) == []
    # a cut above a (new) memory bound comes down to it whatever the score
    rows = decide([3, 2], [4.0, 1.0], [1.0, 1.0], gamma=0.0, epsilon=0.1, cut_min=2, cut_max=[1, 3])
    assert [(r["client"], r["new"]) for r in rows] == [(0, 1)]


def test_time_bound_is_the_largest_cut_within_the_budget():
    assert time_bound([10.0, 10.0, 10.0], flops_per_s=10.0, budget_s=2.5) == 2
    assert time_bound([10.0, 10.0, 10.0], flops_per_s=10.0, budget_s=0.5) == 0


def _timed_system(budget_s: float):
    cfg = _adaptive_cfg(
        adaptive_cuts={"cut_min": 1, "cut_max": 3, "gamma": 0.0, "iteration_time_s": budget_s}
    )
    return build_system(tiny_lm("gpt2"), cfg, SyntheticLM(12), partition=np.array_split(np.arange(12), 3))


def test_time_budget_bounds_each_clients_cut_known_answer():
    # spec §10b: c_max,k is the largest l with 3 b l rho / F_k <= budget. b = 2, rho = 5 FLOPs per block
    # (FP + BP = 3 rho): 30 FLOPs per block; F = 30, 12, 15 FLOP/s; budget 2.5 s ->
    # client 0: l * 1 s <= 2.5 -> 2; client 1: l * 2.5 s -> 1; client 2: l * 2 s -> 1 (all below cut_max 3)
    system = _timed_system(2.5)
    adapter = system.adapter
    assert adapter.cut_max == [3, 3, 3]  # no compute known yet: only the configured cut_max
    adapter.set_compute([30.0, 12.0, 15.0], [3 * 2 * 5.0] * 4)
    assert adapter.cut_max == [2, 1, 1]
    system.local_iteration()
    system.aggregate()  # tau = 1: decide now
    # client 0 scores 30/19 > 1 + eps but sits at its time bound: stays; clients 1 and 2 are above theirs
    rows = [(r["client"], r["old"], r["new"], r["reason"]) for r in adapter.rows]
    assert rows == [(1, 2, 1, "above its memory/time bound"), (2, 2, 1, "above its memory/time bound")]
    assert system.layout.cuts == [2, 1, 1]


def test_time_budget_below_one_block_is_an_input_error():
    adapter = _timed_system(1.5).adapter  # client 0 fits one block (1 s), client 1 needs 2.5 s for one
    with pytest.raises(InputError, match="client 1's largest feasible cut 0 is below cut_min 1"):
        adapter.set_compute([30.0, 12.0, 15.0], [30.0] * 4)


def _measured_bytes(part, ids, mask) -> int:
    """Distinct storages of the part's parameters and of every tensor autograd saves for backward, plus
    LoRA gradients and two AdamW moments."""
    seen = {p.untyped_storage().data_ptr(): p.untyped_storage().nbytes() for p in part.parameters()}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        part(ids, mask)
    return sum(seen.values()) + 3 * sum(p.numel() * p.element_size() for p in lora_parameters(part))


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("batch,seq_len,cut", [(4, 32, 1), (2, 64, 3)])
def test_memory_bound_matches_measured_memory_within_20_percent(family, batch, seq_len, cut):
    model = add_lora(tiny_lm(family), 4, 8.0, dropout=0.0, seed=0).train()
    data = SyntheticLM(batch, seq_len)
    ids = torch.stack([data[i]["input_ids"] for i in range(batch)])
    mask = torch.stack([data[i]["attention_mask"] for i in range(batch)])
    part, _ = split_model(model, cut)
    measured = _measured_bytes(part, ids, mask)
    assert client_memory_bytes(model.config, cut, batch, seq_len=seq_len, rank=4) == pytest.approx(
        measured, rel=0.2
    )


def _adaptive_cfg(**kw):
    base = dict(model="tiny", num_clients=3, batch_size=2, local_iterations=1, rank=2, lora_alpha=4.0,
                lr=1e-2, steps=4, eval_every=2, seed=0, cuts=[2, 2, 2],
                adaptive_cuts={"cut_min": 1, "cut_max": 3, "client_flops_per_s": [4.0, 1.0, 1.0], "gamma": 0.0})  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_a_moved_block_keeps_its_lora_and_adamw_moments_exactly():
    system = build_system(
        tiny_lm("gpt2"), _adaptive_cfg(), SyntheticLM(12), partition=np.array_split(np.arange(12), 3)
    )
    for _ in range(2):
        system.local_iteration()
    server, first = system.server, system.server.part.first
    # server -> client: client 0 takes block 3 (0-based 2) with the server's values and moments
    source = server.part.blocks[2 - first]
    want = {n: p.detach().clone() for n, p in lora_state(source).items()}
    want_m = {
        n: {k: v.clone() for k, v in server.optimizer.state[p].items()} for n, p in lora_state(source).items()
    }
    assert move_cut(system, 0, 3) == {"client": 0, "block": 3, "to_client": True, "rank": 2}
    got = system.clients[0].part.blocks[2]
    for name, p in lora_state(got).items():
        assert torch.equal(p, want[name]) and p is not lora_state(source)[name]
        state = system.clients[0].optimizer.state[p]
        assert all(torch.equal(state[k], want_m[name][k]) for k in ("exp_avg", "exp_avg_sq", "step"))
    # client -> server: client 1 hands block 2 (0-based 1) back; no other client has the server train it
    block = system.clients[1].part.blocks[1]
    want = {n: p.detach().clone() for n, p in lora_state(block).items()}
    want_m = {
        n: {k: v.clone() for k, v in system.clients[1].optimizer.state[p].items()}
        for n, p in lora_state(block).items()
    }
    assert move_cut(system, 1, 1) == {"client": 1, "block": 2, "to_client": False, "rank": 2}
    target = server.part.blocks[1 - first]
    for name, p in lora_state(target).items():
        assert torch.equal(p, want[name])
        assert all(
            torch.equal(server.optimizer.state[p][k], want_m[name][k]) for k in ("exp_avg", "exp_avg_sq")
        )
    assert system.layout.cuts == [3, 1, 2] and [c.cut for c in system.clients] == [3, 1, 2]
    system.local_iteration()  # still trains after the moves
    system.aggregate()


def _trained_system(cfg) -> dict:
    """Train ``cfg`` on 24 synthetic examples over 3 clients; {"system": the SplitFedSystem after its last
    aggregation}."""
    from fedsim.learn.federated.systems import SplitFedSystem

    parts = np.array_split(np.random.default_rng(0).permutation(24), 3)
    data = TrainData(SyntheticLM(24), SyntheticLM(8, seed=5), parts, np.arange(8))
    seen = {}
    original = SplitFedSystem.aggregate

    def spy(self, clients=None):
        original(self, clients)
        seen["system"] = self

    SplitFedSystem.aggregate = spy
    try:
        train(cfg, tiny_lm("gpt2"), data, progress=False)
    finally:
        SplitFedSystem.aggregate = original
    return seen


@pytest.mark.parametrize("rank_cut", [None, 1])
def test_adaptive_training_moves_cuts_and_logs_every_change(rank_cut):
    seen = _trained_system(_adaptive_cfg(steps=3, rank_cut=rank_cut))
    rows = seen["system"].adapter.rows
    # gamma = 0: compute decides; client 0 (4x faster) climbs to cut_max 3, the others fall to cut_min 1
    assert [(r["round"], r["client"], r["old"], r["new"]) for r in rows] == [
        (1, 0, 2, 3),
        (1, 1, 2, 1),
        (1, 2, 2, 1),
    ]
    assert all({"blocks", "reason", "score", "loss"} <= set(r) for r in rows)
    system = seen["system"]
    assert system.layout.cuts == [3, 1, 1]
    if rank_cut is not None:  # the copies at the new cuts were re-created at r_cut
        from fedsim.learn.split.lora import module_rank

        assert [module_rank(c.part.blocks[-1]) for c in system.clients] == [1, 1, 1]
        assert [module_rank(c.part.blocks[0]) for c in system.clients][0] == 2


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"cuts": [0, 2, 2]}, "cuts"),
        ({"cuts": [2, 4, 2]}, "cuts"),  # J = 4: the server must keep a block
        ({"rank_cut": 0}, "rank_cut"),
        ({"adaptive_cuts": {"every": 0}}, "every"),
        ({"adaptive_cuts": {"memory_bytes": [1e9, 1e3, 1e9]}}, "memory_bytes"),
    ],
)
def test_bad_splitft_input_is_one_input_error(kw, field):
    with pytest.raises(InputError, match=field):
        cfg = TrainConfig.parse({"num_clients": 3, "cuts": [2, 2, 2], **kw})
        build_system(tiny_lm("gpt2"), cfg, SyntheticLM(6), partition=np.array_split(np.arange(6), 3))


def test_resume_with_moved_cuts_gives_the_uninterrupted_curve(tmp_path):
    # cuts move after round 1; a run stopped after round 2 and resumed must continue the same curve
    parts = np.array_split(np.random.default_rng(0).permutation(24), 3)
    data = TrainData(SyntheticLM(24), SyntheticLM(8, seed=5), parts, np.arange(8))
    kw = dict(steps=4, eval_every=1, rank_cut=1)
    full = train(_adaptive_cfg(**kw), tiny_lm("llama"), data, progress=False)
    ckpt = tmp_path / "run.pt"
    train(_adaptive_cfg(**{**kw, "steps": 2}, checkpoint_every=1, checkpoint_path=str(ckpt)), tiny_lm("llama"),
          data, progress=False)  # fmt: skip
    resumed = train(_adaptive_cfg(**kw, checkpoint_every=1, checkpoint_path=str(ckpt)), tiny_lm("llama"), data,
                    progress=False)  # fmt: skip
    assert len(resumed.curve) == len(full.curve) == 5
    for a, b in zip(resumed.curve, full.curve, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-6), (a, b)


def test_balanced_cuts_by_hand():
    from fedsim.core.cut_rule import balanced_cuts, toward

    # equal blocks, F = 1, 2, 4: the slowest client at cut 1 needs 1 unit; in that time the others run 2 and
    # 4 blocks (the last capped at cut_max 3)
    assert balanced_cuts([1.0] * 4, [1.0, 2.0, 4.0], 1, cut_max=[3, 3, 3]) == [1, 2, 3]
    # a heavy third block: at F = 4, cut 3 takes (1 + 1 + 3) / 4 = 1.25 > 1, so client 2 stops at cut 2
    assert balanced_cuts([1.0, 1.0, 3.0, 4.0], [1.0, 2.0, 4.0], 1, cut_max=[3, 3, 3]) == [1, 2, 2]
    assert balanced_cuts([1.0] * 4, [1.0, 1.0], 2, cut_max=[3, 3]) == [2, 2]  # equal clients keep cut_min
    rows = toward([2, 2, 2], [1, 2, 3], "r")
    assert [(r["client"], r["old"], r["new"]) for r in rows] == [(0, 2, 1), (2, 2, 3)]


def test_the_balance_rule_moves_each_cut_one_block_a_round_to_the_balanced_cuts():
    cfg = _adaptive_cfg(steps=4)
    cfg = cfg.model_copy(update={"cuts": [1, 1, 1], "adaptive_cuts": cfg.adaptive_cuts.model_copy(
        update={"rule": "balance", "client_flops_per_s": [1.0, 2.0, 4.0]})})  # fmt: skip
    seen = _trained_system(cfg)
    rows = seen["system"].adapter.rows
    # target [1, 2, 3]: round 1 moves clients 1 and 2 one block each, round 2 client 2 once more
    assert [(r["round"], r["client"], r["old"], r["new"]) for r in rows] == [
        (1, 1, 1, 2),
        (1, 2, 1, 2),
        (2, 2, 2, 3),
    ]
    assert seen["system"].layout.cuts == [1, 2, 3]
