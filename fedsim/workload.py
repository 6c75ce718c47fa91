"""Per-layer workload of a split LLM: FLOPs per sample and bits on the wire (spec §3.1, §8).

``Workload`` is the data type every cost model reads. ``workload_from_config`` (added by the
workload-model work) derives it from a Hugging Face config.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
