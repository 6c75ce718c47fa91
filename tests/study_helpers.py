"""A tiny convergence study (tiny-gpt2, seconds a run) as scenario TOML, for the study tests."""

from __future__ import annotations

import json


def tiny_study(
    steps: int, schemes=("split_fed",), seeds=(0, 1), ranks=(1, 4), name: str = "tiny_study"
) -> str:
    """The scenario text: one run per (seed, scheme, rank), checkpoints every 2 steps."""
    return f"""
name = "{name}"
[study]
targets = [60000.0, 50000.0]
[study.training]
model = "tiny-gpt2"
num_clients = 2
batch_size = 2
seq_len = 64
local_iterations = 2
steps = {steps}
eval_every = 2
eval_samples = 8
eval_halves = true
test_samples = 4
generate_mrs = 0
train_samples = 40
cut = 1
lr = 0.003
checkpoint_every = 2
[sweep.axes]
"study.training.seed" = {json.dumps(list(seeds))}
"study.training.scheme" = {json.dumps(list(schemes))}
"study.training.rank" = {json.dumps(list(ranks))}
[outputs]
formats = ["png"]
"""
