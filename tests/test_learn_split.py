"""Split model == unsplit model; LoRA wiring; bad input."""

from __future__ import annotations

import pytest
import torch
from learn_tiny import SyntheticLM, tiny_lm

from fedsim.errors import InputError
from fedsim.learn.split.lora import add_lora, default_targets, lora_state
from fedsim.learn.split.parts import decoder_parts, split_model, token_nll


def _batch(n=5, seq_len=16):
    data = SyntheticLM(n, seq_len, seed=1)
    return {k: torch.stack([data[i][k] for i in range(n)]) for k in ("input_ids", "attention_mask", "labels")}


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("cut", [1, 2, 4])
def test_split_logits_equal_unsplit_with_padding(family, cut):
    # Prepare
    model = tiny_lm(family).eval()
    batch = _batch()
    assert (batch["attention_mask"] == 0).any()  # the batch really is padded
    client, server = split_model(model, cut)
    # Execute
    with torch.no_grad():
        ref = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        out = server(client(batch["input_ids"], batch["attention_mask"]), batch["attention_mask"])
    # Assert: only the positions that carry a real token matter (padding rows are masked anyway)
    keep = batch["attention_mask"].bool()
    torch.testing.assert_close(out[keep], ref[keep], atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_split_with_lora_equals_peft_model(family):
    model = add_lora(tiny_lm(family), rank=4, alpha=8, dropout=0.0, seed=3)
    with torch.no_grad():  # make LoRA non-trivial (B starts at zero)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    model.eval()
    batch = _batch()
    client, server = split_model(model, 2)
    with torch.no_grad():
        ref = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        out = server(client(batch["input_ids"], batch["attention_mask"]), batch["attention_mask"])
    keep = batch["attention_mask"].bool()
    torch.testing.assert_close(out[keep], ref[keep], atol=1e-5, rtol=0)


def test_token_nll_matches_hf_loss():
    model = tiny_lm("llama").eval()
    batch = _batch()
    with torch.no_grad():
        out = model(**batch)
        total, count = token_nll(out.logits, batch["labels"])
    torch.testing.assert_close(total / count, out.loss, atol=1e-6, rtol=0)


@pytest.mark.parametrize("family,targets", [("gpt2", ["c_attn"]), ("llama", ["q_proj", "v_proj"])])
def test_default_targets_and_lora_param_count(family, targets):
    # Q+V at rank r: 2 * (d*r + r*d) = 4dr per block; GPT-2's fused c_attn at rank r: d*r + r*3d = 4dr too
    model = tiny_lm(family)
    assert default_targets(model) == targets
    rank, d, blocks = 3, 64, 4
    peft_model = add_lora(model, rank=rank, alpha=6, dropout=0.0, seed=0)
    n = sum(t.numel() for t in lora_state(peft_model).values())
    if family == "gpt2":
        assert n == blocks * 4 * d * rank
    else:  # Llama with 2 KV heads of 16 dims: v_proj is d -> 32
        assert n == blocks * ((d * rank + rank * d) + (d * rank + rank * 32))


def test_decoder_parts_found_by_inspection():
    parts = decoder_parts(tiny_lm("gpt2"))
    assert parts.num_blocks == 4 and parts.embed_positions is not None and parts.rotary is None
    parts = decoder_parts(tiny_lm("llama"))
    assert parts.num_blocks == 4 and parts.embed_positions is None and parts.rotary is not None


@pytest.mark.parametrize("cut", [0, 5, -1, 2.0])
def test_cut_outside_range_is_input_error(cut):
    with pytest.raises(InputError, match="cut"):
        split_model(tiny_lm("gpt2"), cut)


def test_rank_zero_is_input_error():
    with pytest.raises(InputError, match="rank"):
        add_lora(tiny_lm("gpt2"), rank=0, alpha=1, dropout=0.0, seed=0)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_peft_lora_size_matches_workload_model(family):
    # the delay model's LoRA bits per rank (default Q+V) must equal what peft really trains per block
    from fedsim.core.workload import workload_from_config

    model = tiny_lm(family)
    work = workload_from_config(model.config, seq_len=16, bits=32)
    rank = 3
    peft_model = add_lora(model, rank=rank, alpha=6, dropout=0.0, seed=0)
    client, _ = split_model(peft_model, 1)  # block 1 only
    n = sum(t.numel() for t in lora_state(client).values())
    assert work.lora_bits_per_rank[0] * rank == pytest.approx(32 * n)
