"""GPT-2 small golden numbers (spec §8), the Table III reproduction, other families, and bad input."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsim.core.model_configs import SHIPPED, load_model_config
from fedsim.core.workload import parameter_counts, workload_from_config
from fedsim.errors import InputError

D, D_FF, V, L = 768, 3072, 50257, 512
_config = functools.cache(load_model_config)  # configs are read once, lazily, across examples


def test_gpt2_small_analytic_golden(gpt2_workload):
    w = gpt2_workload
    assert w.num_layers == 12 and w.seq_len == L
    # spec §8.3 formulas written out: MHA 2L(4d^2 + 2Ld), FFN 2L(2 d d_ff), two LayerNorms 5Ld each
    block = 2 * L * (4 * D**2 + 2 * L * D) + 2 * L * (2 * D * D_FF) + 2 * 5 * L * D
    np.testing.assert_allclose(w.fwd_flops, block, rtol=1e-12)
    assert round(w.fwd_flops[0] / 1e9, 3) == 8.057
    assert round(w.lora_fwd_flops_per_rank[0] / 1e6, 3) == 3.146
    assert w.lora_fwd_flops_per_rank[0] == 2 * L * (2 * 2 * D)
    assert round(w.head_fwd_flops / 1e9, 2) == 39.53
    assert w.head_fwd_flops == 5 * L * D + 2 * L * D * V
    np.testing.assert_array_equal(w.act_bits, np.full(12, 12_582_912))
    np.testing.assert_array_equal(w.lora_bits_per_rank, np.full(12, 98_304))
    # backward = 2 x forward by default (spec §8.3)
    np.testing.assert_allclose(w.bwd_flops, 2 * w.fwd_flops)
    np.testing.assert_allclose(w.lora_bwd_flops_per_rank, 2 * w.lora_fwd_flops_per_rank)
    assert w.head_bwd_flops == 2 * w.head_fwd_flops


def test_gpt2_parameter_counts_equal_table3():
    p = parameter_counts(load_model_config("gpt2"))
    # exact values (spec §8.1) and Table III's printed figures
    assert p["token_embedding"] == 38_597_376 and round(p["token_embedding"] / 1e6, 1) == 38.6
    assert p["position_encoding"] == 786_432 and round(p["position_encoding"] / 1e6, 3) == 0.786
    assert p["layernorm"] == 1_536 and round(p["layernorm"] / 1e3, 1) == 1.5
    assert p["mha"] == 2_362_368 and round(p["mha"] / 1e6, 2) == 2.36
    assert p["ffn"] == 4_722_432 and round(p["ffn"] / 1e6, 2) == 4.72
    assert p["lora_per_rank_per_matrix"] == 1_536
    assert p["total"] == 124_439_808  # the well-known GPT-2 small size (LM head tied)


@pytest.mark.parametrize(("name", "total"), [("gpt2-medium", 354_823_168), ("smollm2-135m", 134_515_008)])
def test_other_shipped_models_parameter_totals(name, total):
    assert parameter_counts(load_model_config(name))["total"] == total


def test_table3_mode_reproduces_table3():
    w = workload_from_config(load_model_config("gpt2"), seq_len=L, mode="table3")
    # Table III (GFLOP for b = 16) divided by 16, spec §8.3
    np.testing.assert_allclose(w.fwd_flops, (2 * 0.025 + 257.7 + 309.2) / 16 * 1e9)
    assert round(w.fwd_flops[0] / 1e9, 2) == 35.43
    assert w.lora_fwd_flops_per_rank[0] == pytest.approx(3.125e6)
    assert round(w.head_fwd_flops / 1e9, 2) == 79.01
    # back out the table's figures: x 16 gives MHA + FFN + 2 LN, LoRA/rank, LN + LM head
    assert 16 * w.fwd_flops[0] / 1e9 == pytest.approx(257.7 + 309.2 + 0.05)
    assert 16 * w.head_fwd_flops / 1e9 == pytest.approx(1264.1 + 0.025)
    # communication stays analytic: Table III's LoRA 1.5K per matrix, two matrices, 32 bits
    assert w.lora_bits_per_rank[0] == 2 * 1536 * 32 and w.act_bits[0] == L * D * 32


def test_smollm2_llama_family():
    cfg = load_model_config("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert cfg.model_type == "llama" and cfg.num_key_value_heads == 3
    w = workload_from_config(cfg, seq_len=256, bits=16)
    d, kv, ff = 576, 3 * 64, 1536
    block = 2 * 256 * (d * d + 2 * d * kv + d * d) + 4 * 256**2 * d + 2 * 256 * 3 * d * ff + 2 * 4 * 256 * d
    assert w.num_layers == 30
    np.testing.assert_allclose(w.fwd_flops, block)
    # LoRA on Q (d -> d) and V (d -> kv) under GQA
    np.testing.assert_allclose(w.lora_fwd_flops_per_rank, 2 * 256 * ((d + d) + (d + kv)))
    np.testing.assert_allclose(w.lora_bits_per_rank, ((d + d) + (d + kv)) * 16)
    np.testing.assert_allclose(w.act_bits, 256 * d * 16)


def test_lora_targets_and_bits_scale():
    cfg = load_model_config("gpt2")
    qv = workload_from_config(cfg, lora_targets=("q", "v"))
    allm = workload_from_config(cfg, lora_targets=("q_proj", "k", "v", "o", "c_fc", "down"))
    assert allm.lora_bits_per_rank[0] == (4 * 2 * D + 2 * (D + D_FF)) * 32
    assert allm.lora_fwd_flops_per_rank[0] > qv.lora_fwd_flops_per_rank[0]
    half = workload_from_config(cfg, bits=16)
    np.testing.assert_allclose(half.act_bits, qv.act_bits / 2)
    light = workload_from_config(cfg, bwd_factor=1.0)
    np.testing.assert_allclose(light.bwd_flops, light.fwd_flops)


def test_load_model_config_paths(tmp_path):
    for name in SHIPPED:
        assert load_model_config(name).model_type in ("gpt2", "llama", "opt")
    src = load_model_config("gpt2")
    src.save_pretrained(tmp_path)  # writes config.json
    from_dir = load_model_config(str(tmp_path))
    from_file = load_model_config(str(tmp_path / "config.json"))
    assert from_dir.n_embd == from_file.n_embd == 768


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"seq_len": 0}, "seq_len"),
        ({"seq_len": 2048}, "seq_len"),
        ({"bits": 12}, "bits"),
        ({"mode": "fast"}, "mode"),
        ({"lora_targets": ("q", "wq")}, "lora_targets"),
        ({"lora_targets": ()}, "lora_targets"),
        ({"bwd_factor": 0.0}, "bwd_factor"),
    ],
)
def test_bad_workload_input(kwargs, word):
    with pytest.raises(InputError, match=word):
        workload_from_config(load_model_config("gpt2"), **kwargs)


def test_table3_needs_gpt2_small():
    with pytest.raises(InputError, match="table3"):
        workload_from_config(load_model_config("gpt2-medium"), mode="table3")
    with pytest.raises(InputError, match="table3"):
        workload_from_config(load_model_config("gpt2"), mode="table3", lora_targets=("q", "k", "v"))


def test_unknown_family_and_model(tmp_path):
    from transformers import BertConfig

    with pytest.raises(InputError, match=r"model_type 'bert'.*gpt2.*llama"):
        workload_from_config(BertConfig())
    with pytest.raises(InputError, match=r"gpt2, gpt2-medium, smollm2-135m"):
        load_model_config("no-such-model")
    bad = tmp_path / "config.json"
    bad.write_text('{"hidden_size": 8}')
    with pytest.raises(InputError, match="model_type"):
        load_model_config(str(bad))


@settings(max_examples=30, deadline=None)
@given(
    seq_len=st.integers(1, 512),
    bits=st.sampled_from([8, 16, 32]),
    family=st.sampled_from(["gpt2", "smollm2-135m"]),
)
def test_scaling_in_sequence_length_and_bits(seq_len, bits, family):
    cfg = _config(family)
    one = workload_from_config(cfg, seq_len=seq_len, bits=bits)
    two = workload_from_config(cfg, seq_len=2 * seq_len, bits=bits)
    d = one.act_bits[0] / (seq_len * bits)
    # linear terms double with L; only attention's QK^T and AV (4 L^2 attn_dim) are quadratic
    attn_dim = d  # both shipped families have heads x head_dim = d
    np.testing.assert_allclose(two.fwd_flops - 2 * one.fwd_flops, 8 * seq_len**2 * attn_dim, rtol=1e-9)
    np.testing.assert_allclose(two.lora_fwd_flops_per_rank, 2 * one.lora_fwd_flops_per_rank)
    np.testing.assert_allclose(two.act_bits, 2 * one.act_bits)
    assert two.head_fwd_flops == pytest.approx(2 * one.head_fwd_flops)
    # LoRA bits do not depend on L; everything on the wire is linear in the bit width
    np.testing.assert_array_equal(two.lora_bits_per_rank, one.lora_bits_per_rank)
    assert one.lora_bits_per_rank[0] % bits == 0 and d == cfg.to_dict().get(
        "n_embd", cfg.to_dict().get("hidden_size")
    )
