"""Client memory of a split LoRA part from the model config: the bound behind SplitFT's cut_max (spec §10b).

A client with cut c holds, in fp32 (4 bytes per value):

* weights: token (and learned position) embeddings and blocks 1..c, frozen (biases and norms included);
* LoRA state: each adapted matrix's A and B at rank r, times 4 (values, gradients, two AdamW moments);
* activations kept for the backward pass of b samples of L tokens: the embedding output (L d) plus, per block,
  what autograd saves for its linear layers, attention and MLP, per token ``11 d + 3 d_ff`` (GPT-2: norm
  inputs and outputs, Q/K/V and attention output, projections' inputs, the MLP's GELU input and output) or
  ``5 d + 4 d_ff + 2 kv`` (Llama: RMSNorm inputs, Q/K/V/O inputs, gate/up outputs and SiLU product), and the
  (L, L) float attention mask each block's attention receives.

These per-token counts were read off the saved tensors of both families' blocks (``saved_tensors_hooks``);
``tests/test_splitft_adaptive.py`` checks the total against measured memory on tiny models (20 %).
"""

from __future__ import annotations

from fedsim.core.model_configs import architecture

BYTES = 4  # fp32


def block_weight_count(arch) -> int:
    """Frozen parameters of one block: its matrices with biases (GPT-2) and its two norms."""
    mats = sum(i * o for i, o in arch.matrices.values())
    biases = sum(o for _, o in arch.matrices.values()) if arch.family == "gpt2" else 0
    norms = arch.norms_per_block * arch.d * (2 if arch.family == "gpt2" else 1)
    return mats + biases + norms


def lora_count_per_rank(arch, targets=("q", "v")) -> int:
    """LoRA parameters of one block per unit rank (A: d_in x r, B: r x d_out per adapted matrix)."""
    return sum(sum(arch.matrices[t]) for t in targets)


def block_activation_floats(arch, batch_size: int, seq_len: int) -> int:
    """Values one block saves for backward on b samples of L tokens."""
    per_token = (
        11 * arch.d + 3 * arch.d_ff if arch.family == "gpt2" else 5 * arch.d + 4 * arch.d_ff + 2 * arch.kv_dim
    )
    return batch_size * seq_len * per_token + batch_size * seq_len * seq_len


def client_memory_bytes(config, cut: int, batch_size: int, seq_len: int, rank: int) -> float:
    """Bytes client memory needs with blocks 1..cut at batch b and length L (weights, LoRA state, activations)."""
    arch = architecture(config)
    embeddings = arch.vocab * arch.d + (arch.max_positions * arch.d if arch.family == "gpt2" else 0)
    weights = embeddings + cut * block_weight_count(arch)
    lora = 4 * cut * rank * lora_count_per_rank(arch)
    acts = batch_size * seq_len * arch.d + cut * block_activation_floats(arch, batch_size, seq_len)
    return float(BYTES * (weights + lora + acts))
