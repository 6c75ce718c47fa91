"""LoRA wiring through peft: target modules, rank, alpha, dropout, and LoRA-only state dicts.

Targets default to the attention query and value projections (spec §2, SplitLoRA). Llama-style models have
separate ``q_proj``/``v_proj`` and get exactly those. GPT-2 fuses Q, K and V into one ``c_attn`` (Conv1D,
d -> 3d); peft cannot adapt slices of a layer, so fedsim adapts ``c_attn`` whole. That also adapts K, but at
rank r its LoRA has d·r + r·3d = 4·d·r parameters and 2·(d·r + r·3d) = 8·d·r FLOPs per token — exactly
what separate Q and V adapters of rank r have (2·(d·r + r·d) and 2·2·(2·d·r)), so the workload model's
default Q+V accounting (FLOPs and bits per rank) holds unchanged.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers.pytorch_utils import Conv1D

from fedsim.errors import InputError

# Query/value projection names, by preference; the first pair present in the model wins.
_QV_CANDIDATES: tuple[tuple[str, ...], ...] = (("q_proj", "v_proj"), ("c_attn",), ("query", "value"))


def _leaf_names(model: nn.Module) -> set[str]:
    return {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}


def default_targets(model: nn.Module) -> list[str]:
    """The attention Q and V projections of ``model`` (GPT-2: the fused ``c_attn``): its family adapter's
    targets (peft's table for the model type), else the first Q/V name pair present."""
    from fedsim.learn.families import family_for, lora_targets

    names = _leaf_names(model)
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    family = family_for(model_type)
    found = lora_targets(family, model_type) if family is not None else None
    if found and all(n in names for n in found):
        return found
    for candidate in _QV_CANDIDATES:
        if all(n in names for n in candidate):
            return list(candidate)
    raise InputError(
        f"targets: cannot find Q/V projections in {type(model).__name__}; set targets explicitly"
    )


def add_lora(
    model: nn.Module,
    rank: int,
    alpha: float,
    dropout: float,
    seed: int,
    targets: Sequence[str] | None = None,
) -> nn.Module:
    """Wrap ``model`` with peft LoRA (A Kaiming-uniform from ``seed``, B = 0); base weights frozen.

    Args:
        rank: r >= 1. alpha: LoRA scaling numerator (scale = alpha / r). dropout: LoRA input dropout in [0, 1).
        targets: leaf module names to adapt; None = Q and V (see module docstring).
    """
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise InputError(f"rank: LoRA rank must be an integer >= 1, got {rank!r}")
    if not 0.0 <= dropout < 1.0:
        raise InputError(f"lora_dropout: must be in [0, 1), got {dropout!r}")
    targets = list(targets) if targets else default_targets(model)
    missing = [t for t in targets if t not in _leaf_names(model)]
    if missing:
        raise InputError(f"targets: modules {missing} not found in {type(model).__name__}")
    conv1d = any(isinstance(m, Conv1D) and n.rsplit(".", 1)[-1] in targets for n, m in model.named_modules())
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        fan_in_fan_out=conv1d,  # GPT-2's Conv1D stores its weight as (in, out)
        bias="none",
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(seed)  # peft draws LoRA A from the global generator
    with warnings.catch_warnings():
        # peft 0.21 (the newest) reads the deprecated `model.is_gradient_checkpointing` while wrapping; the
        # call is inside peft, not fedsim, so only that one message is ignored, and only here.
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        return get_peft_model(model, config)


def lora_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA tensors of ``module`` by parameter name (live references, not copies)."""
    return {name: p for name, p in module.named_parameters() if "lora_" in name}


def lora_parameters(module: nn.Module) -> list[nn.Parameter]:
    """Trainable LoRA parameters of ``module``, in registration order."""
    return list(lora_state(module).values())
