"""Tiny random-initialised GPT-2 and Llama models and synthetic padded batches for the learning tests."""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

VOCAB = 97

# Tiny matmuls on a shared 2-core machine run ~10x slower with several threads fighting over the cores.
torch.set_num_threads(1)


def tiny_lm(family: str, seed: int = 0, dropout: float = 0.0, layers: int = 4):
    """A 4-block random causal LM (seconds, offline)."""
    torch.manual_seed(seed)
    if family == "gpt2":
        cfg = GPT2Config(
            n_layer=layers,
            n_embd=64,
            n_head=4,
            vocab_size=VOCAB,
            n_positions=64,
            resid_pdrop=dropout,
            embd_pdrop=dropout,
            attn_pdrop=dropout,
        )
        return GPT2LMHeadModel(cfg)
    cfg = LlamaConfig(
        num_hidden_layers=layers,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=VOCAB,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(cfg)


class SyntheticLM(torch.utils.data.Dataset):
    """Right-padded token sequences of random length; labels -100 on the first 3 (prompt) and padding."""

    def __init__(self, n: int, seq_len: int = 16, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for _ in range(n):
            length = int(torch.randint(6, seq_len + 1, (1,), generator=g))
            ids = torch.zeros(seq_len, dtype=torch.long)
            ids[:length] = torch.randint(1, VOCAB, (length,), generator=g)
            mask = torch.zeros(seq_len, dtype=torch.long)
            mask[:length] = 1
            labels = ids.clone()
            labels[mask == 0] = -100
            labels[:3] = -100
            self.items.append({"input_ids": ids, "attention_mask": mask, "labels": labels})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def tiny_opt(seed: int = 0, post_norm: bool = False, layers: int = 4):
    """A 4-block random OPT; ``post_norm`` gives OPT-350m's layout (post-norm blocks, no final norm, word
    embeddings of width 32 projected in and out of the 64-wide residual stream)."""
    from transformers import OPTConfig, OPTForCausalLM

    torch.manual_seed(seed)
    cfg = OPTConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=layers,
        ffn_dim=128,
        num_attention_heads=4,
        max_position_embeddings=64,
        word_embed_proj_dim=32 if post_norm else 64,
        do_layer_norm_before=not post_norm,
        dropout=0.0,
        attention_dropout=0.0,
        pad_token_id=1,
    )
    return OPTForCausalLM(cfg)
