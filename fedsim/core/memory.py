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


def client_memory_bytes(config, cut: int, batch_size: int, *, seq_len: int, rank: int) -> float:
    """Bytes client memory needs with blocks 1..cut at batch b and length L (weights, LoRA state, activations)."""
    arch = architecture(config)
    embeddings = arch.vocab * arch.d + (arch.max_positions * arch.d if arch.family == "gpt2" else 0)
    weights = embeddings + cut * block_weight_count(arch)
    lora = 4 * cut * rank * lora_count_per_rank(arch)
    acts = batch_size * seq_len * arch.d + cut * block_activation_floats(arch, batch_size, seq_len)
    return float(BYTES * (weights + lora + acts))


def _weights(arch) -> int:
    """Every frozen parameter of the whole model (embeddings, blocks, final norm, an untied head counted as
    the embedding again is left out: the models fedsim trains tie it or are small next to it)."""
    embeddings = arch.vocab * arch.d + arch.position_rows * arch.d
    return embeddings + arch.num_layers * block_weight_count(arch) + (2 * arch.d if arch.final_norm else 0)


def logits_floats(arch, samples: int, seq_len: int) -> int:
    """Values the LM head and the loss hold for ``samples`` of L tokens: logits, their log-softmax and its
    gradient (3 x b L V)."""
    return 3 * samples * seq_len * arch.vocab


def training_memory_bytes(
    config,
    *,
    num_clients: int,
    batch_size: int,
    seq_len: int,
    rank: int,
    centralized: bool = False,
    lora_targets=("q", "v"),
) -> dict[str, float]:
    """Peak bytes of one split-federated (or centralized) LoRA training step in one process, by part.

    The frozen weights are held once (every holder shares them); each of the K clients keeps its own LoRA
    replica, the main server its own (bounded above by K + 1 full sets: values, gradients, two AdamW
    moments); a local iteration keeps the activations of all K x b samples through every block until the
    backward pass (the clients' graphs wait while the server runs), and the head's logits. A centralized step
    runs K x b samples through one model. Returns {"weights", "lora", "activations", "logits", "total"}.
    """
    arch = architecture(config)
    samples = num_clients * batch_size
    replicas = 1 if centralized else num_clients + 1
    weights = _weights(arch)
    lora = 4 * replicas * arch.num_layers * rank * lora_count_per_rank(arch, lora_targets)
    acts = samples * seq_len * arch.d + arch.num_layers * block_activation_floats(arch, samples, seq_len)
    logits = logits_floats(arch, samples, seq_len)
    parts = {"weights": weights, "lora": lora, "activations": acts, "logits": logits}
    out = {k: float(BYTES * v) for k, v in parts.items()}
    out["total"] = sum(out.values())
    return out


def evaluation_memory_bytes(config, *, batch_size: int, seq_len: int, rank: int = 0) -> dict[str, float]:
    """Peak bytes of scoring one batch without gradients: the weights (and one LoRA set) plus the largest
    transient -- one block's activations and the logits of the batch."""
    arch = architecture(config)
    weights = _weights(arch) + arch.num_layers * rank * lora_count_per_rank(arch)
    acts = block_activation_floats(arch, batch_size, seq_len)
    logits = logits_floats(arch, batch_size, seq_len)
    out = {
        "weights": float(BYTES * weights),
        "activations": float(BYTES * acts),
        "logits": float(BYTES * logits),
    }
    out["total"] = sum(out.values())
    return out


def checkpoint_bytes(config, *, num_clients: int, rank: int, centralized: bool = False) -> float:
    """Bytes of one training checkpoint (bounded above): every holder's LoRA values and its two AdamW moments
    (K clients + the main server, or one model), plus the curve and random states (64 kB)."""
    arch = architecture(config)
    replicas = 1 if centralized else num_clients + 1
    return float(BYTES * 3 * replicas * arch.num_layers * rank * lora_count_per_rank(arch) + 65536)
