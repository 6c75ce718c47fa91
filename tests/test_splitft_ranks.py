"""Cut-layer LoRA rank (spec §10c) through peft rank_pattern, and heterogeneous-rank aggregation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from learn_tiny import SyntheticLM, tiny_lm

from fedsim.learn.config import TrainConfig
from fedsim.learn.federated.fedsplit import fedavg
from fedsim.learn.federated.hetrank import aggregate_block, project, project_moments
from fedsim.learn.federated.systems import build_system
from fedsim.learn.split.lora import lora_state, module_rank
from fedsim.learn.train import TrainData, train

ALPHA = 8.0


def _state(rank, seed, d_in=6, d_out=5):
    g = torch.Generator().manual_seed(seed)
    return {
        "q.lora_A.default.weight": torch.randn(rank, d_in, generator=g, dtype=torch.float64),
        "q.lora_B.default.weight": torch.randn(d_out, rank, generator=g, dtype=torch.float64),
    }


def _product(state):
    a, b = state["q.lora_A.default.weight"], state["q.lora_B.default.weight"]
    return (ALPHA / a.shape[0]) * b @ a


@pytest.mark.parametrize("method", ["zero_pad", "svd"])
def test_equal_ranks_are_plain_fedavg(method):
    states, weights = [_state(3, s) for s in range(3)], [10, 30, 60]
    out = aggregate_block(states, weights, 3, alpha=ALPHA, method=method)
    plain = fedavg(states, weights)
    for key in plain:
        assert torch.equal(out[key], plain[key])


def test_zero_pad_against_a_hand_computation():
    # holder 1: rank 1, holder 2: rank 2; global rank 2; weights 1 : 3
    s1 = {"q.lora_A.default.weight": torch.tensor([[1.0, 2.0]], dtype=torch.float64),
          "q.lora_B.default.weight": torch.tensor([[4.0]], dtype=torch.float64)}  # fmt: skip
    s2 = {"q.lora_A.default.weight": torch.tensor([[0.0, 1.0], [2.0, 0.0]], dtype=torch.float64),
          "q.lora_B.default.weight": torch.tensor([[1.0, 3.0]], dtype=torch.float64)}  # fmt: skip
    out = aggregate_block([s1, s2], [1, 3], 2, alpha=ALPHA, method="zero_pad")
    # padded s1: A = [[1, 2], [0, 0]], B = [[4 * 2/1, 0]] (scale alpha/1 folded into alpha/2)
    torch.testing.assert_close(
        out["q.lora_A.default.weight"],
        torch.tensor([[0.25, 0.25 * 2 + 0.75 * 1], [0.75 * 2, 0.0]], dtype=torch.float64),
    )
    torch.testing.assert_close(
        out["q.lora_B.default.weight"], torch.tensor([[0.25 * 8 + 0.75 * 1, 0.75 * 3]], dtype=torch.float64)
    )
    # a rank-1 holder receives the first component, rescaled to its own scale
    back = project(out, 1, ALPHA, method="zero_pad")
    torch.testing.assert_close(back["q.lora_B.default.weight"], out["q.lora_B.default.weight"][:, :1] / 2)


def test_zero_pad_keeps_each_update_and_svd_averages_products():
    states, weights = [_state(2, 1), _state(4, 2)], [1.0, 3.0]
    # one holder padded to a larger rank: the same update
    alone = aggregate_block([states[0], states[0]], [1, 1], 4, alpha=ALPHA, method="zero_pad")
    torch.testing.assert_close(_product(alone), _product(states[0]))
    # SVD at a rank >= the sum of ranks: exactly the weighted mean of the updates
    svd = aggregate_block(states, weights, 5, alpha=ALPHA, method="svd")
    mean = 0.25 * _product(states[0]) + 0.75 * _product(states[1])
    torch.testing.assert_close(_product(svd), mean, atol=1e-10, rtol=0)
    # truncated to rank r: the best rank-r approximation (Eckart-Young), what a rank-2 holder receives
    two = project(svd, 2, ALPHA, method="svd")
    u, s, vh = torch.linalg.svd(mean)
    torch.testing.assert_close(_product(two), (u[:, :2] * s[:2]) @ vh[:2], atol=1e-10, rtol=0)


def _cfg(**kw):
    base = dict(model="tiny", num_clients=3, batch_size=2, local_iterations=1, rank=4, lora_alpha=8.0,
                lr=1e-2, steps=4, eval_every=2, seed=0, cuts=[1, 2, 3], rank_cut=2)  # fmt: skip
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize(
    "side,client_cut_rank,server_first_rank,global_ranks",
    [("both", 2, 2, [4, 4, 2, 2]), ("client", 2, 4, [4, 4, 4, 4]), ("server", 4, 2, [4, 4, 4, 2])],
)
def test_cut_layer_rank_on_the_chosen_side(side, client_cut_rank, server_first_rank, global_ranks):
    system = build_system(
        tiny_lm("gpt2"), _cfg(rank_cut_side=side), SyntheticLM(12), partition=np.array_split(np.arange(12), 3)
    )
    for client in system.clients:
        ranks = [module_rank(b) for b in client.part.blocks]
        assert ranks == [4] * (client.cut - 1) + [client_cut_rank]
    first = system.server.part.first
    server = {first + i: module_rank(b) for i, b in enumerate(system.server.part.blocks)}
    # blocks 2, 3, 4 (0-based 1, 2, 3) are each the first server block of a client
    assert server == {1: server_first_rank, 2: server_first_rank, 3: server_first_rank}
    # the global model holds each block at the largest rank of its holders, set through peft's rank_pattern
    # (block 3: client 2's last block and client 1's first server block; block 4: only the server's)
    assert [module_rank(b) for b in system.global_blocks] == global_ranks
    assert bool(system.model.peft_config["default"].rank_pattern) == (min(global_ranks) < 4)


@pytest.mark.parametrize("method", ["zero_pad", "svd"])
def test_cut_layer_rank_trains_with_either_aggregation(method):
    parts = np.array_split(np.random.default_rng(0).permutation(24), 3)
    data = TrainData(SyntheticLM(24), SyntheticLM(8, seed=5), parts, np.arange(8))
    rec = train(_cfg(rank_aggregation=method, steps=6), tiny_lm("llama"), data, progress=False)
    assert rec.curve[-1]["val_ppl"] < rec.curve[0]["val_ppl"]


def _grads(state, x, w):
    """dL/dA, dL/dB of L = sum(w * (alpha / r) B A x) at a block state (one adapted layer)."""
    a = state["q.lora_A.default.weight"].clone().requires_grad_(True)
    b = state["q.lora_B.default.weight"].clone().requires_grad_(True)
    (w * ((ALPHA / a.shape[0]) * b @ a @ x)).sum().backward()
    return {"q.lora_A.default.weight": a.grad, "q.lora_B.default.weight": b.grad}


def test_zero_pad_moments_are_the_padded_copys_gradient_history():
    # the zero-padded copy is the same function; its gradients are the old ones mapped like the moments,
    # so an EMA of gradients (exp_avg) and of their squares (exp_avg_sq) maps exactly
    g = torch.Generator().manual_seed(3)
    x, w = (
        torch.randn(6, 4, generator=g, dtype=torch.float64),
        torch.randn(5, 4, generator=g, dtype=torch.float64),
    )
    small = _state(2, 7)
    big = aggregate_block([small, small], [1, 1], 5, alpha=ALPHA, method="zero_pad")
    torch.testing.assert_close(_product(big), _product(small))
    g_small, g_big = _grads(small, x, w), _grads(big, x, w)
    moments = {n: {"step": torch.tensor(3.0), "exp_avg": t, "exp_avg_sq": t * t} for n, t in g_small.items()}
    mapped = project_moments(moments, 2, 5)
    for name, grad in g_big.items():
        torch.testing.assert_close(mapped[name]["exp_avg"], grad, atol=1e-12, rtol=0)
        torch.testing.assert_close(mapped[name]["exp_avg_sq"], grad * grad, atol=1e-12, rtol=0)
        assert torch.equal(mapped[name]["step"], torch.tensor(3.0))
    # and back: truncating the padded moments restores the originals (the dropped components are zero)
    back = project_moments(mapped, 5, 2)
    for name in moments:
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(back[name][key], moments[name][key], atol=1e-12, rtol=0)


def _moved_copy(method):
    """Client 0 of a trained 3-client system (r = 4, r_cut = 2 both sides, cuts 2/2/2) before and after it
    takes block 3: its block 2 grows 2 -> 4, the server's block 4 shrinks 4 -> 2."""
    from fedsim.learn.federated.cutmove import move_cut

    cfg = _cfg(cuts=[2, 2, 2], rank_aggregation=method,
               adaptive_cuts={"cut_min": 1, "cut_max": 3, "client_flops_per_s": [1.0, 1.0, 1.0]})  # fmt: skip
    system = build_system(tiny_lm("gpt2"), cfg, SyntheticLM(12), partition=np.array_split(np.arange(12), 3))
    for _ in range(2):
        system.local_iteration()
    system.fed.aggregate(system.clients, system.clients, system.server)
    system.local_iteration()
    server, first = system.server, system.server.part.first

    def snapshot(optimizer, block):
        return {
            n: {k: v.clone() for k, v in optimizer.state[p].items()} for n, p in lora_state(block).items()
        }

    grown, shrunk = system.clients[0].part.blocks[1], server.part.blocks[3 - first]
    before = (snapshot(system.clients[0].optimizer, grown), snapshot(server.optimizer, shrunk))
    assert (module_rank(grown), module_rank(shrunk)) == (2, 4)
    move_cut(system, 0, 3)
    assert (module_rank(grown), module_rank(shrunk)) == (4, 2)
    return system, grown, shrunk, before


def test_a_rank_changed_copy_keeps_its_adamw_moments_on_the_zero_pad_path():
    system, grown, shrunk, (m_grown, m_shrunk) = _moved_copy("zero_pad")
    for block, optimizer, old, ratio in (
        (grown, system.clients[0].optimizer, m_grown, 2 / 4),
        (shrunk, system.server.optimizer, m_shrunk, 4 / 2),
    ):
        r = module_rank(block)
        for name, p in lora_state(block).items():
            state, before = optimizer.state[p], old[name]
            assert torch.equal(state["step"], before["step"]) and state["exp_avg"].shape == p.shape
            if ".lora_A." in name:
                keep = min(r, before["exp_avg"].shape[0])
                assert torch.equal(state["exp_avg"][:keep], before["exp_avg"][:keep])
                assert torch.equal(state["exp_avg_sq"][:keep], before["exp_avg_sq"][:keep])
                assert not state["exp_avg"][keep:].any()
            else:
                keep = min(r, before["exp_avg"].shape[1])
                torch.testing.assert_close(state["exp_avg"][:, :keep], before["exp_avg"][:, :keep] * ratio)
                torch.testing.assert_close(
                    state["exp_avg_sq"][:, :keep], before["exp_avg_sq"][:, :keep] * ratio**2
                )
                assert not state["exp_avg"][:, keep:].any()
    system.local_iteration()  # the carried moments are the optimiser's live state
    assert all(int(system.clients[0].optimizer.state[p]["step"]) == 4 for p in lora_state(grown).values())


def test_a_rank_changed_copy_restarts_its_moments_with_svd_aggregation():
    # SVD factors are a new basis: the old moments have no counterpart, the copy starts a fresh AdamW state
    system, grown, shrunk, _ = _moved_copy("svd")
    assert not any(p in system.clients[0].optimizer.state for p in lora_state(grown).values())
    assert not any(p in system.server.optimizer.state for p in lora_state(shrunk).values())
    system.local_iteration()
    assert all(int(system.clients[0].optimizer.state[p]["step"]) == 1 for p in lora_state(grown).values())
