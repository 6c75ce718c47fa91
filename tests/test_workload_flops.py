"""The analytic workload model against an independent count: torch's FlopCounterMode.

Tiny random GPT-2, Llama and OPT models (built from small configs, no download) run one forward pass
under ``torch.utils.flop_counter.FlopCounterMode``, which counts matmul FLOPs (2 per MAC) of every
aten call. The analytic model's matmul part (blocks without norms, LM head without the final
norm) must agree within 5 %; LoRA's extra FLOPs are measured as peft-wrapped minus base.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from fedsim.core.workload import (  # noqa: E402
    NORM_FLOPS_PER_ELEMENT,
    architecture,
    block_fwd_flops,
    head_fwd_flops,
    workload_from_config,
)

SEQ_LEN = 32
VOCAB = 97


def _tiny(family: str):
    """A tiny random model and its config; eager attention so QK^T and AV are plain matmuls."""
    torch.manual_seed(0)
    if family == "gpt2":
        cfg = transformers.GPT2Config(
            n_layer=2, n_embd=64, n_head=4, vocab_size=VOCAB, n_positions=64, bos_token_id=0, eos_token_id=0
        )
        cls = transformers.GPT2LMHeadModel
    elif family == "opt":
        cfg = transformers.OPTConfig(
            num_hidden_layers=2,
            hidden_size=64,
            ffn_dim=160,
            num_attention_heads=4,
            vocab_size=VOCAB,
            max_position_embeddings=64,
            word_embed_proj_dim=64,
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=1,
        )
        cls = transformers.OPTForCausalLM
    else:
        cfg = transformers.LlamaConfig(
            num_hidden_layers=2,
            hidden_size=64,
            intermediate_size=160,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=VOCAB,
            max_position_embeddings=64,
            bos_token_id=0,
            eos_token_id=0,
        )
        cls = transformers.LlamaForCausalLM
    cfg._attn_implementation = "eager"
    return cls(cfg).eval(), cfg


def _measure(model) -> FlopCounterMode:
    ids = torch.randint(0, VOCAB, (1, SEQ_LEN), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(ids)
    return counter


def _module_flops(counter: FlopCounterMode, suffix: str) -> int:
    """FLOPs of the one module whose dotted name ends with ``suffix``."""
    hits = [sum(ops.values()) for name, ops in counter.get_flop_counts().items() if name.endswith(suffix)]
    assert len(hits) == 1, suffix
    return int(hits[0])


@pytest.mark.parametrize(
    ("family", "block_prefix"),
    [("gpt2", "transformer.h."), ("llama", "model.layers."), ("opt", "model.decoder.layers.")],
)
def test_matmul_flops_match_flop_counter(family, block_prefix):
    # Prepare
    model, cfg = _tiny(family)
    arch = architecture(cfg)
    parts = block_fwd_flops(arch, SEQ_LEN)
    block_matmul = parts["attention"] + parts["mlp"]
    head_matmul = head_fwd_flops(arch, SEQ_LEN) - NORM_FLOPS_PER_ELEMENT[family] * SEQ_LEN * arch.d
    # Execute
    counter = _measure(model)
    # Assert: every block, the LM head and the whole model within 5 % (they agree exactly in practice)
    for j in range(arch.num_layers):
        measured = _module_flops(counter, f"{block_prefix}{j}")
        assert measured == pytest.approx(block_matmul, rel=0.05)
    assert _module_flops(counter, "lm_head") == pytest.approx(head_matmul, rel=0.05)
    total = arch.num_layers * block_matmul + head_matmul
    assert counter.get_total_flops() == pytest.approx(total, rel=0.05)


def test_workload_block_flops_is_matmul_plus_norms():
    _, cfg = _tiny("llama")
    w = workload_from_config(cfg, seq_len=SEQ_LEN)
    parts = block_fwd_flops(architecture(cfg), SEQ_LEN)
    assert w.fwd_flops[0] == pytest.approx(sum(parts.values()))
    assert parts["norms"] == 2 * 4.0 * SEQ_LEN * 64  # two RMSNorms at 4 FLOPs/element


@pytest.mark.parametrize(
    ("family", "targets", "peft_targets"),
    [
        ("llama", ("q", "v"), ["q_proj", "v_proj"]),
        (
            "llama",
            ("q", "k", "v", "o", "gate", "up", "down"),
            ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        ),
        # peft adapts GPT-2's fused c_attn (d -> 3d): d + 3d per rank, the same as separate Q and V (2 x 2d)
        ("gpt2", ("q", "v"), ["c_attn"]),
    ],
)
def test_lora_flops_match_peft(family, targets, peft_targets):
    peft = pytest.importorskip("peft")
    rank = 4
    model, cfg = _tiny(family)
    base = _measure(model).get_total_flops()
    lora_cfg = peft.LoraConfig(
        r=rank,
        lora_alpha=8,
        lora_dropout=0.0,
        target_modules=peft_targets,
        fan_in_fan_out=(family == "gpt2"),
    )
    wrapped = peft.get_peft_model(model, lora_cfg).eval()
    extra = _measure(wrapped).get_total_flops() - base
    w = workload_from_config(cfg, seq_len=SEQ_LEN, lora_targets=targets)
    assert extra == pytest.approx(rank * w.lora_fwd_flops_per_rank.sum(), rel=0.05)
    # the LoRA bits per rank are the adapter's parameter count per rank times 32 bits
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    assert trainable * 32 == rank * w.lora_bits_per_rank.sum()
