"""Per-layer workload of a split LLM: FLOPs per sample and bits on the wire (spec §3.1, §8).

``Workload`` is the data type every cost model reads. ``workload_from_config`` derives it from a
Hugging Face config (GPT-2, Llama and OPT families), without weights; ``parameter_counts`` gives the
paper's Table III parameter figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsim.core.model_configs import Architecture, architecture, canonical_targets
from fedsim.errors import InputError


@dataclass(frozen=True)
class Workload:
    """Workload of a model with J split-able decoder blocks, per training sample.

    Attributes:
        name: model name (e.g. ``gpt2``).
        seq_len: tokens per sample L.
        fwd_flops: (J,) forward FLOPs of frozen block j, rho_j.
        bwd_flops: (J,) backward FLOPs of frozen block j, varpi_j.
        lora_fwd_flops_per_rank: (J,) LoRA forward FLOPs of block j per unit rank, delta-rho_j.
        lora_bwd_flops_per_rank: (J,) LoRA backward FLOPs per unit rank, delta-varpi_j.
        act_bits: (J,) bits of the activation at the output of block j (what a cut after j uploads), psi_j.
        lora_bits_per_rank: (J,) bits of block j's LoRA parameters per unit rank, delta_j.
        head_fwd_flops, head_bwd_flops: final norm + LM head, always on the server.
    """

    name: str
    seq_len: int
    fwd_flops: np.ndarray
    bwd_flops: np.ndarray
    lora_fwd_flops_per_rank: np.ndarray
    lora_bwd_flops_per_rank: np.ndarray
    act_bits: np.ndarray
    lora_bits_per_rank: np.ndarray
    head_fwd_flops: float
    head_bwd_flops: float

    @property
    def num_layers(self) -> int:
        """J, the number of split-able blocks."""
        return int(self.fwd_flops.shape[0])

    def to_dict(self) -> dict:
        """JSON-able dict of every field (arrays as lists)."""
        return {
            name: (value.tolist() if isinstance(value, np.ndarray) else value)
            for name, value in ((f, getattr(self, f)) for f in self.__dataclass_fields__)
        }


MODES = ("analytic", "table3")
BITS = (8, 16, 32)

# FLOPs per element of a norm layer. LayerNorm: mean, subtract, square, variance, scale+shift ~ 5
# (spec §8.3). RMSNorm has no mean and no shift: square, mean of squares, multiply by rsqrt, multiply
# by weight ~ 4 (our choice; either way norms are < 0.1 % of a block).
NORM_FLOPS_PER_ELEMENT = {"gpt2": 5.0, "llama": 4.0, "opt": 5.0}

# -- per-sample costs ---------------------------------------------------------------------------


def block_fwd_flops(arch: Architecture, seq_len: int) -> dict[str, float]:
    """Forward FLOPs of one frozen block for one sample of ``seq_len`` tokens, by part (2 FLOP/MAC).

    Linear maps cost 2 L d_in d_out; attention scores QK^T and the weighted sum AV cost 2 L^2 attn_dim
    each (the causal mask is not exploited, as in a dense kernel); norms cost NORM_FLOPS_PER_ELEMENT L d
    each. Biases, softmax, activations and residual adds are left out, as in spec §8.3 (< 0.3 %).
    """
    attn_mats = sum(i * o for n, (i, o) in arch.matrices.items() if n in ("q", "k", "v", "o"))
    mlp_mats = sum(i * o for n, (i, o) in arch.matrices.items() if n in ("gate", "up", "down"))
    norm = NORM_FLOPS_PER_ELEMENT[arch.family] * seq_len * arch.d
    return {
        "attention": 2.0 * seq_len * attn_mats + 4.0 * seq_len**2 * arch.attn_dim,
        "mlp": 2.0 * seq_len * mlp_mats,
        "norms": arch.norms_per_block * norm,
    }


def head_fwd_flops(arch: Architecture, seq_len: int) -> float:
    """Final norm + LM head forward FLOPs for one sample, 5Ld (or 4Ld for RMSNorm; none in a post-norm
    OPT) + 2 L d V."""
    norm = NORM_FLOPS_PER_ELEMENT[arch.family] * seq_len * arch.d if arch.final_norm else 0.0
    return norm + 2.0 * seq_len * arch.d * arch.vocab


def lora_params_per_rank(arch: Architecture, targets) -> int:
    """LoRA parameters of one block per unit rank: sum over adapted matrices of d_in + d_out (A and B)."""
    return int(sum(sum(arch.matrices[t]) for t in canonical_targets(arch, targets)))


# Table III of the paper (GPT-2 small, GFLOP for a batch of 16 at n = 1024), spec §8.2.
TABLE3_GFLOP = {"layernorm": 0.025, "mha": 257.7, "ffn": 309.2, "lora_per_rank": 0.050, "lm_head": 1264.1}
TABLE3_BATCH = 16


def _check(seq_len: int, bits: int, mode: str, bwd_factor: float, arch: Architecture) -> None:
    if int(seq_len) != seq_len or seq_len < 1:
        raise InputError(f"seq_len must be a positive integer, got {seq_len}")
    if seq_len > arch.max_positions:
        raise InputError(f"seq_len {seq_len} exceeds the model's context of {arch.max_positions} tokens")
    if bits not in BITS:
        raise InputError(f"bits must be one of {BITS}, got {bits}")
    if mode not in MODES:
        raise InputError(f"mode must be one of {MODES}, got {mode!r}")
    if not bwd_factor > 0:
        raise InputError(f"bwd_factor must be > 0, got {bwd_factor}")


def workload_from_config(
    config,
    seq_len: int = 512,
    bits: int = 32,
    *,
    mode: str = "analytic",
    lora_targets=("q", "v"),
    bwd_factor: float = 2.0,
    name: str | None = None,
) -> Workload:
    """Per-layer workload of a decoder-only LLM from its Hugging Face config (no weights).

    Args:
        config: a ``transformers.PretrainedConfig`` of the GPT-2, Llama or OPT family.
        seq_len: tokens per sample L.
        bits: bits per activation / LoRA value on the wire, one of 8, 16, 32.
        mode: "analytic" (2 FLOP/MAC, spec §8.3) or "table3" (the paper's Table III divided by its
            batch of 16, spec §8.2; GPT-2 small with Q+V targets only; FLOPs then do not depend on L).
        lora_targets: adapted matrices per block, from q, k, v, o and the MLP's up/down (and gate).
        bwd_factor: backward FLOPs / forward FLOPs, for the frozen blocks, LoRA and the head.
        name: model name stored in the Workload (default: the config's name or model_type).

    Returns:
        A ``Workload`` with J = number of blocks; activation bits L d q at every cut, LoRA bits per
        rank (d_in + d_out) q per adapted matrix.
    """
    arch = architecture(config)
    _check(seq_len, bits, mode, bwd_factor, arch)
    targets = canonical_targets(arch, lora_targets)
    j = arch.num_layers
    if mode == "table3":
        if arch.family != "gpt2" or (arch.d, j, arch.vocab) != (768, 12, 50257):
            raise InputError("mode 'table3' reproduces the paper's Table III and needs GPT-2 small (gpt2)")
        if set(targets) != {"q", "v"}:
            raise InputError("mode 'table3' counts LoRA on Q and V only; use lora_targets=('q', 'v')")
        t, giga = TABLE3_GFLOP, 1e9 / TABLE3_BATCH
        block = (2 * t["layernorm"] + t["mha"] + t["ffn"]) * giga
        lora = t["lora_per_rank"] * giga
        head = (t["layernorm"] + t["lm_head"]) * giga
    else:
        block = sum(block_fwd_flops(arch, seq_len).values())
        lora = 2.0 * seq_len * lora_params_per_rank(arch, targets)
        head = head_fwd_flops(arch, seq_len)
    ones = np.ones(j)
    return Workload(
        name=name or getattr(config, "name_or_path", "") or arch.model_type,
        seq_len=int(seq_len),
        fwd_flops=block * ones,
        bwd_flops=bwd_factor * block * ones,
        lora_fwd_flops_per_rank=lora * ones,
        lora_bwd_flops_per_rank=bwd_factor * lora * ones,
        act_bits=float(seq_len * arch.d * bits) * ones,
        lora_bits_per_rank=float(lora_params_per_rank(arch, targets) * bits) * ones,
        head_fwd_flops=float(head),
        head_bwd_flops=float(bwd_factor * head),
    )


def parameter_counts(config) -> dict[str, int]:
    """Parameter counts by component, as in the paper's Table III (per block where it applies).

    Keys: token_embedding (V d), position_encoding (table rows x d: n_ctx, OPT n_ctx + 2, 0 with rotary
    embeddings), layernorm (one norm: 2d for LayerNorm, d for RMSNorm), mha (attention weights and
    biases), ffn (MLP weights and biases), lora_per_rank_per_matrix (A + B of one d x d matrix: 2d), plus
    num_layers and total (all frozen parameters, LM head tied to the embedding when the config ties it).
    """
    arch = architecture(config)
    d = arch.d
    attn = sum(i * o for n, (i, o) in arch.matrices.items() if n in ("q", "k", "v", "o"))
    mlp = sum(i * o for n, (i, o) in arch.matrices.items() if n in ("gate", "up", "down"))
    if arch.family in ("gpt2", "opt"):  # biases on every projection, LayerNorm (OPT: enable_bias)
        bias = arch.family == "gpt2" or bool(getattr(config, "enable_bias", True))
        mha, ffn, norm = attn + (4 * d if bias else 0), mlp + (arch.d_ff + d if bias else 0), 2 * d
        pos = arch.position_rows * d
    else:  # Llama: no biases (attention_bias / mlp_bias off in the shipped config), RMSNorm, rotary
        bias = bool(getattr(config, "attention_bias", False))
        mha, ffn, norm, pos = attn + (arch.attn_dim + 2 * arch.kv_dim + d if bias else 0), mlp, d, 0
    embed = arch.vocab * d
    tied = bool(getattr(config, "tie_word_embeddings", True))
    total = embed + pos + arch.num_layers * (mha + ffn + arch.norms_per_block * norm) + arch.final_norm * norm
    return {
        "token_embedding": embed,
        "position_encoding": pos,
        "layernorm": norm,
        "mha": mha,
        "ffn": ffn,
        "lora_per_rank_per_matrix": 2 * d,
        "num_layers": arch.num_layers,
        "total": total + (0 if tied else embed),
    }
