"""Training options: the LoRA alpha policy (fixed, proportional, rsLoRA) against peft's own scaling, and the
learning-rate schedule (warm-up, cosine / linear decay) against torch's own schedulers; both carried by
split-federated training, its checkpoints and rank changes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from learn_tiny import SyntheticLM, tiny_lm

from fedsim.errors import InputError
from fedsim.learn import train as train_mod
from fedsim.learn.config import TrainConfig
from fedsim.learn.federated.hetrank import aggregate_block, project
from fedsim.learn.schedule import lr_factor
from fedsim.learn.split.lora import LoraScale, add_lora, lora_layers, lora_scale
from fedsim.learn.train import TrainData, train


def _cfg(**kw) -> TrainConfig:
    base = dict(model="tiny", num_clients=3, batch_size=2, local_iterations=2, rank=2, lora_alpha=4.0,
                cut=2, lr=5e-3, steps=6, eval_every=2, seed=0)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def _data():
    parts = np.array_split(np.random.default_rng(0).permutation(30), 3)
    return TrainData(SyntheticLM(30), SyntheticLM(8, seed=5), parts, np.arange(8))


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("policy", ["fixed", "proportional", "rslora"])
@pytest.mark.parametrize("rank", [1, 4, 16])
def test_every_lora_layer_has_the_policy_scale_in_peft(family, policy, rank):
    # block 2 at another rank (SplitFT's cut-layer rank) through rank_pattern (+ alpha_pattern)
    model = add_lora(tiny_lm(family), rank, 8.0, dropout=0.0, seed=0, block_ranks={1: 2}, alpha_policy=policy)
    layers = lora_layers(model)
    assert layers
    for layer in layers.values():
        r = layer.r["default"]
        want = {"fixed": 8.0 / r, "proportional": 8.0, "rslora": 8.0 / math.sqrt(r)}[policy]
        assert layer.scaling["default"] == pytest.approx(want, rel=1e-12)  # peft's own number
        assert lora_scale(8.0, policy, r) == pytest.approx(want, rel=1e-12)
    assert {layer.r["default"] for layer in layers.values()} == ({rank, 2} if rank != 2 else {2})


def test_the_peft_update_is_the_policy_scale_times_b_a():
    # merged weight - base weight = scale * B A for a random LoRA under rsLoRA at rank 4
    model = add_lora(tiny_lm("llama"), 4, 3.0, dropout=0.0, seed=0, alpha_policy="rslora")
    name, layer = next(iter(lora_layers(model).items()))
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
        x = torch.randn(5, layer.in_features)
        delta = layer(x) - layer.base_layer(x)
        b, a = layer.lora_B["default"].weight, layer.lora_A["default"].weight
        torch.testing.assert_close(delta, 3.0 / 2.0 * x @ a.T @ b.T, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("policy", ["fixed", "proportional", "rslora"])
@pytest.mark.parametrize("method", ["zero_pad", "svd"])
def test_copies_at_different_ranks_keep_their_update_under_every_policy(policy, method):
    # a rank-2 and a rank-4 copy of one layer; the global rank-4 block and what a rank-2 holder receives
    g = torch.Generator().manual_seed(1)
    scale = LoraScale(6.0, policy)

    def state(r):
        return {"x.lora_A.default.weight": torch.randn(r, 8, generator=g, dtype=torch.float64),
                "x.lora_B.default.weight": torch.randn(5, r, generator=g, dtype=torch.float64)}  # fmt: skip

    def update(s):
        b, a = s["x.lora_B.default.weight"], s["x.lora_A.default.weight"]
        return scale.of(a.shape[0]) * b @ a

    small, other = state(2), state(1)
    # one copy held at a larger global rank and sent back at its own: the same update (the scale folds in)
    padded = aggregate_block([small], [1.0], 4, alpha=scale, method=method)
    torch.testing.assert_close(update(padded), update(small), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(
        update(project(padded, 2, scale, method=method)), update(small), rtol=1e-10, atol=1e-10
    )
    if method == "svd":  # a rank-2 and a rank-1 update average exactly at rank 4
        mean = aggregate_block([small, other], [1.0, 3.0], 4, alpha=scale, method=method)
        want = (update(small) + 3 * update(other)) / 4
        torch.testing.assert_close(update(mean), want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["constant", "cosine", "linear"])
def test_the_schedule_equals_torchs_schedulers(kind):
    total, warm = 20, 4
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    up = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / warm, end_factor=1.0, total_iters=warm - 1)
    seen = []
    for _ in range(warm):
        seen.append(opt.param_groups[0]["lr"])
        opt.step(), up.step()
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    down = {
        "constant": torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0),
        "cosine": torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warm, eta_min=0.0),
        "linear": torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.0, total_iters=total - warm),
    }[kind]
    for _ in range(total - warm):
        seen.append(opt.param_groups[0]["lr"])
        opt.step(), down.step()
    mine = [lr_factor(t, total_steps=total, warmup_steps=warm, kind=kind) for t in range(total)]
    np.testing.assert_allclose(mine, seen, rtol=1e-12, atol=1e-15)


def test_scheduled_training_steps_every_optimiser_at_the_scheduled_rate_and_resumes_bit_for_bit(
    tmp_path, monkeypatch
):
    cfg = _cfg(lr_schedule="cosine", warmup_steps=2, lora_alpha_policy="rslora")
    from fedsim.learn.federated.systems import build_system

    system = build_system(tiny_lm("gpt2"), cfg, SyntheticLM(30), partition=_data().partition)
    for _ in range(cfg.steps):
        system.local_iteration()
    last = cfg.lr * lr_factor(cfg.steps - 1, total_steps=cfg.steps, warmup_steps=2, kind="cosine")
    for opt in [c.optimizer for c in system.clients] + [system.server.optimizer]:
        assert opt.param_groups[0]["lr"] == pytest.approx(last, rel=1e-12)
        assert opt.param_groups[0]["iteration"] == cfg.steps
    # killed after its step-3 checkpoint and resumed: the same curve as an uninterrupted run
    full = train(cfg, tiny_lm("gpt2"), _data(), progress=False)
    ckpt = tmp_path / "run.pt"
    with_ckpt = cfg.model_copy(update={"checkpoint_every": 1, "checkpoint_path": str(ckpt)})
    real_save = train_mod.save_checkpoint

    def save_then_die(path, config, step, *args, **kw):
        real_save(path, config, step, *args, **kw)
        if step == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(with_ckpt, tiny_lm("gpt2"), _data(), progress=False)
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    resumed = train(with_ckpt, tiny_lm("gpt2"), _data(), progress=False)
    assert [r.get("val_ppl") for r in resumed.curve] == [r.get("val_ppl") for r in full.curve]
    assert [r.get("train_loss") for r in resumed.curve] == [r.get("train_loss") for r in full.curve]
    # a decaying schedule is laid out over `steps`: the run cannot be extended from its checkpoint
    with pytest.raises(InputError, match="steps"):
        train(with_ckpt.model_copy(update={"steps": 8}), tiny_lm("gpt2"), _data(), progress=False)


def test_the_schedule_and_the_policy_change_training():
    base = [r.get("train_loss") for r in train(_cfg(), tiny_lm("gpt2"), _data(), progress=False).curve]
    for change in ({"lr_schedule": "linear", "warmup_steps": 3}, {"lora_alpha_policy": "rslora"}):
        other = [
            r.get("train_loss") for r in train(_cfg(**change), tiny_lm("gpt2"), _data(), progress=False).curve
        ]
        assert other[1:] != base[1:]


def test_bad_options_are_one_line_errors():
    with pytest.raises(InputError, match="training.lora_alpha_policy"):
        TrainConfig.parse({"lora_alpha_policy": "double"})
    with pytest.raises(InputError, match="training.lr_schedule"):
        TrainConfig.parse({"lr_schedule": "step"})
    with pytest.raises(InputError, match="warmup_steps"):
        TrainConfig.parse({"steps": 4, "warmup_steps": 4})
