"""Model-family adapters: OPT (a third family) splits exactly; GPT-2 and Llama adapters agree with
inspection; LoRA targets come from peft's table; a user family plugs in by registration."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from learn_tiny import SyntheticLM, tiny_lm, tiny_opt

from fedsim.errors import InputError
from fedsim.learn.split import families
from fedsim.learn.split.families import ModelFamily, family_for, register_family
from fedsim.learn.split.lora import add_lora, default_targets, lora_state
from fedsim.learn.split.parts import decoder_parts, split_model


def _batch(n=5, seq_len=16):
    data = SyntheticLM(n, seq_len, seed=1)
    return {k: torch.stack([data[i][k] for i in range(n)]) for k in ("input_ids", "attention_mask")}


def _assert_split_equals_unsplit(model, cut):
    batch = _batch()
    assert (batch["attention_mask"] == 0).any()  # padded batch
    client, server = split_model(model, cut)
    with torch.no_grad():
        ref = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        out = server(client(batch["input_ids"], batch["attention_mask"]), batch["attention_mask"])
    keep = batch["attention_mask"].bool()
    torch.testing.assert_close(out[keep], ref[keep], atol=1e-5, rtol=0)


@pytest.mark.parametrize("post_norm", [False, True], ids=["opt-125m-layout", "opt-350m-layout"])
@pytest.mark.parametrize("cut", [1, 2, 4])
def test_opt_split_logits_equal_unsplit(post_norm, cut):
    _assert_split_equals_unsplit(tiny_opt(post_norm=post_norm).eval(), cut)


def test_opt_split_with_lora_equals_peft_model():
    model = tiny_opt()
    assert default_targets(model) == ["q_proj", "v_proj"]  # peft's table for model_type "opt"
    model = add_lora(model, rank=4, alpha=8, dropout=0.0, seed=3)
    with torch.no_grad():  # LoRA B starts at zero: make it matter
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    assert sum(t.numel() for t in lora_state(model).values()) == 4 * 2 * (64 * 4 + 4 * 64)
    _assert_split_equals_unsplit(model.eval(), 2)


def test_opt_parts_come_from_the_adapter():
    parts = decoder_parts(tiny_opt(post_norm=True))
    assert parts.position_offset == 2 and parts.final_norm is None
    assert parts.project_in.in_features == 32 and parts.project_out.out_features == 32
    assert parts.num_blocks == 4


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_builtin_adapters_agree_with_inspection(family, monkeypatch):
    model = tiny_lm(family)
    by_adapter = decoder_parts(model)
    monkeypatch.setattr(families.FAMILY_REGISTRY, "_entries", {})  # no adapter: the inspection fallback
    by_inspection = decoder_parts(model)
    for field in (
        "embed_tokens",
        "embed_positions",
        "embed_dropout",
        "rotary",
        "blocks",
        "final_norm",
        "lm_head",
    ):
        assert getattr(by_adapter, field) is getattr(by_inspection, field), field


def test_a_user_family_plugs_in_by_registration(monkeypatch):
    # a "family" that is GPT-2 under another model type, registered from outside the package
    monkeypatch.setattr(families.FAMILY_REGISTRY, "_entries", families.registered_families())
    model = tiny_lm("gpt2")
    model.config.model_type = "my_gpt"
    mine = dataclasses.replace(families.GPT2, name="mine", model_types=("my_gpt",), lora_targets=("c_attn",))
    register_family(mine)
    assert family_for("my_gpt") is mine and default_targets(model) == ["c_attn"]
    _assert_split_equals_unsplit(model.eval(), 3)
    with pytest.raises(InputError, match="already have a family adapter"):
        register_family(dataclasses.replace(mine, name="other"))
    broken = ModelFamily(name="broken", model_types=("my_gpt",), decoder="nope", embed_tokens="wte",
                         blocks="h", final_norm="ln_f")  # fmt: skip
    register_family(broken, replace=True)
    with pytest.raises(InputError, match="broken family adapter finds no nope.h"):
        decoder_parts(model)
