"""LiveTrainer driven by engine-style protocol calls equals the plain training loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from learn_tiny import SyntheticLM, tiny_lm

from fedsim.engine.trainer import Trainer
from fedsim.learn.config import TrainConfig
from fedsim.learn.federated.systems import build_system
from fedsim.learn.live_trainer import LiveTrainer
from fedsim.learn.split.lora import lora_state
from fedsim.learn.train import TrainData, train


def _cfg(**kw) -> TrainConfig:
    base = dict(model="tiny", num_clients=2, batch_size=2, local_iterations=2, rank=2, lora_alpha=4.0, cut=2,
                lr=5e-3, steps=4, eval_every=2, seed=1)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def _data() -> TrainData:
    return TrainData(SyntheticLM(12), SyntheticLM(4, seed=2), [np.arange(6), np.arange(6, 12)], np.arange(4))


def _drive(trainer, rounds: int, iterations: int, clients=(0, 1)) -> list[bool]:
    """The call sequence the engine makes in paper mode."""
    stops = []
    for r in range(rounds):
        for _ in range(iterations):
            for k in clients:
                trainer.client_forward(k)
            trainer.server_step(list(clients))
            for k in clients:
                trainer.client_backward(k)
        trainer.aggregate(list(clients))
        stops.append(trainer.end_round(r, 10.0 * (r + 1)))
    return stops


def test_live_trainer_equals_plain_loop():
    # Prepare
    cfg, data = _cfg(), _data()
    plain = train(cfg, tiny_lm("llama"), data, progress=False)
    live = LiveTrainer.from_config(cfg, model=tiny_lm("llama"), data=data, progress=False)
    assert isinstance(live, Trainer)
    # Execute
    stops = _drive(live, rounds=2, iterations=2)
    rec = live.record()
    # Assert: same validation perplexity at every evaluation, round losses = mean of the step losses
    assert stops == [False, False]
    assert [r["val_ppl"] for r in rec.curve] == pytest.approx(
        [r["val_ppl"] for r in plain.curve if "val_ppl" in r]
    )
    steps = [r["train_loss"] for r in plain.curve[1:]]
    assert [r["train_loss"] for r in rec.curve[1:]] == pytest.approx([np.mean(steps[:2]), np.mean(steps[2:])])
    assert [r["sim_time_s"] for r in rec.curve] == [0.0, 10.0, 20.0]


def test_live_stops_at_target_and_partial_aggregation_broadcasts():
    cfg, data = _cfg(target_ppl=1e9, local_iterations=1, eval_every=1), _data()
    live = LiveTrainer.from_config(cfg, model=tiny_lm("gpt2"), data=data, progress=False)
    assert _drive(live, rounds=1, iterations=1) == [True]
    assert live.record().rounds_to_target == 0.0
    # client 1 misses the deadline: only client 0's LoRA is averaged, and everyone receives it
    system = live.system
    live.client_forward(0), live.client_forward(1), live.server_step([0, 1])
    live.client_backward(0)
    live.aggregate([0])
    s0, s1 = (lora_state(c.part) for c in system.clients)
    for key in s0:
        torch.testing.assert_close(s0[key], s1[key])


def test_pipelined_server_steps_train_per_client():
    # in pipelined mode the engine calls server_step once per client
    cfg, data = _cfg(local_iterations=1, steps=1), _data()
    live = LiveTrainer(build_system(tiny_lm("gpt2"), cfg, data.train, partition=data.partition), cfg, data)
    for k in (0, 1):
        live.client_forward(k)
        live.server_step([k])
        live.client_backward(k)
    live.aggregate([0, 1])
    live.end_round(0, 1.0)
    assert "val_ppl" in live.curve[-1] and np.isfinite(live.curve[-1]["train_loss"])
