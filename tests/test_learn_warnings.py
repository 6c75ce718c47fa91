"""A split-LoRA step on current transformers/peft APIs raises no FutureWarning (the deprecated
`past_key_values=` of `create_causal_mask`, and peft's read of `is_gradient_checkpointing`)."""

from __future__ import annotations

import warnings

import pytest
import torch
from learn_tiny import tiny_lm

from fedsim.learn.split.lora import add_lora
from fedsim.learn.split.parts import split_model, token_nll


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_split_lora_step_has_no_future_warning(family):
    # Prepare
    ids = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    # Execute
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = add_lora(tiny_lm(family), rank=2, alpha=4.0, dropout=0.0, seed=0)
        client, server = split_model(model, 2)
        total, count = token_nll(server(client(ids, mask), mask), ids.masked_fill(mask == 0, -100))
        (total / count).backward()
    # Assert
    future = [str(w.message) for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    assert future == []
