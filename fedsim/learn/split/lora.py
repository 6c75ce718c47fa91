"""LoRA wiring through peft: target modules, rank, alpha, dropout, and LoRA-only state dicts.

Targets default to the attention query and value projections (spec §2, SplitLoRA). Llama-style models have
separate ``q_proj``/``v_proj`` and get exactly those. GPT-2 fuses Q, K and V into one ``c_attn`` (Conv1D,
d -> 3d); peft cannot adapt slices of a layer, so fedsim adapts ``c_attn`` whole. That also adapts K, but at
rank r its LoRA has d·r + r·3d = 4·d·r parameters and 2·(d·r + r·3d) = 8·d·r FLOPs per token — exactly
what separate Q and V adapters of rank r have (2·(d·r + r·d) and 2·2·(2·d·r)), so the workload model's
default Q+V accounting (FLOPs and bits per rank) holds unchanged.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer
from torch import nn
from transformers.pytorch_utils import Conv1D

from fedsim.errors import InputError

# Query/value projection names, by preference; the first pair present in the model wins.
_QV_CANDIDATES: tuple[tuple[str, ...], ...] = (("q_proj", "v_proj"), ("c_attn",), ("query", "value"))


ALPHA_POLICIES = ("fixed", "proportional", "rslora")


def _leaf_names(model: nn.Module) -> set[str]:
    return {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}


def default_targets(model: nn.Module) -> list[str]:
    """The attention Q and V projections of ``model`` (GPT-2: the fused ``c_attn``): its family adapter's
    targets (peft's table for the model type), else the first Q/V name pair present."""
    from fedsim.learn.split.families import family_for, lora_targets

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
    *,
    dropout: float,
    seed: int,
    targets: Sequence[str] | None = None,
    block_ranks: Mapping[int, int] | None = None,
    alpha_policy: str = "fixed",
) -> nn.Module:
    """Wrap ``model`` with peft LoRA (A Kaiming-uniform from ``seed``, B = 0); base weights frozen.

    Args:
        rank: r >= 1. alpha: LoRA scaling numerator (scale = alpha / r). dropout: LoRA input dropout in [0, 1).
        targets: leaf module names to adapt; None = Q and V (see module docstring).
        block_ranks: decoder block index (0-based) -> its LoRA rank, for blocks whose rank is not ``rank``
            (SplitFT's cut-layer rank, spec §10c); passed to peft as ``rank_pattern`` (and, with the
            "proportional" policy, ``alpha_pattern``, so those blocks keep the same scale).
        alpha_policy: how alpha scales a layer of rank r (``lora_scale``): fixed, proportional or rslora.
    """
    if alpha_policy not in ALPHA_POLICIES:
        raise InputError(f"lora_alpha_policy: must be one of {ALPHA_POLICIES}, got {alpha_policy!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise InputError(f"rank: LoRA rank must be an integer >= 1, got {rank!r}")
    if not 0.0 <= dropout < 1.0:
        raise InputError(f"lora_dropout: must be in [0, 1), got {dropout!r}")
    targets = list(targets) if targets else default_targets(model)
    missing = [t for t in targets if t not in _leaf_names(model)]
    if missing:
        raise InputError(f"targets: modules {missing} not found in {type(model).__name__}")
    conv1d = any(isinstance(m, Conv1D) and n.rsplit(".", 1)[-1] in targets for n, m in model.named_modules())
    for block, r in (block_ranks or {}).items():
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise InputError(f"rank_cut: LoRA rank of block {block + 1} must be an integer >= 1, got {r!r}")
    ranks = rank_pattern(model, block_ranks or {}, targets)
    config = LoraConfig(
        r=rank,
        rank_pattern=ranks,
        lora_alpha=peft_alpha(alpha, alpha_policy, rank),
        alpha_pattern={key: peft_alpha(alpha, alpha_policy, r) for key, r in ranks.items()},
        use_rslora=alpha_policy == "rslora",
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


def peft_alpha(alpha: float, policy: str, rank: int) -> float:
    """The ``lora_alpha`` peft gets for a layer of rank ``rank`` under ``policy`` (see ``lora_scale``)."""
    return alpha * rank if policy == "proportional" else alpha


def lora_scale(alpha: float, policy: str, rank: int) -> float:
    """The scale of a rank-``rank`` layer's update (W + scale · B A): fixed alpha / r, proportional alpha
    (the same at every rank), rslora alpha / sqrt(r) (Kalajdzievski 2023). Equals peft's ``scaling``."""
    if policy == "rslora":
        return alpha / math.sqrt(rank)
    return peft_alpha(alpha, policy, rank) / rank


@dataclass(frozen=True)
class LoraScale:
    """The scale rule of a run's LoRA layers: ``of(r)`` is a rank-r layer's scale (``lora_scale``)."""

    alpha: float
    policy: str = "fixed"

    def of(self, rank: int) -> float:
        return lora_scale(self.alpha, self.policy, rank)

    def ratio(self, from_rank: int, to_rank: int) -> float:
        """scale(from) / scale(to): B of a rank-``from_rank`` copy times this is B of the same update held at
        rank ``to_rank`` (zero-padded or truncated): fixed to/from, proportional 1, rslora sqrt(to/from)."""
        if self.policy == "proportional":
            return 1.0
        if self.policy == "rslora":
            return math.sqrt(to_rank / from_rank)
        return to_rank / from_rank


def as_scale(alpha_or_scale: float | LoraScale) -> LoraScale:
    """A LoraScale; a bare number is the alpha of the "fixed" policy (scale alpha / r)."""
    return alpha_or_scale if isinstance(alpha_or_scale, LoraScale) else LoraScale(float(alpha_or_scale))


def lora_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA tensors of ``module`` by parameter name (live references, not copies)."""
    return {name: p for name, p in module.named_parameters() if "lora_" in name}


def lora_parameters(module: nn.Module) -> list[nn.Parameter]:
    """Trainable LoRA parameters of ``module``, in registration order."""
    return list(lora_state(module).values())


def _blocks_path(model: nn.Module) -> str:
    """Qualified name of the decoder block list (``transformer.h``, ``model.layers``)."""
    from fedsim.learn.split.parts import decoder_parts

    blocks = decoder_parts(model).blocks
    return next(name for name, m in model.named_modules() if m is blocks)


def rank_pattern(model: nn.Module, block_ranks: Mapping[int, int], targets: Sequence[str]) -> dict[str, int]:
    """peft ``rank_pattern`` giving block j's targets rank ``block_ranks[j]`` (keys are anchored regexes)."""
    path = re.escape(_blocks_path(model))
    alternatives = "|".join(re.escape(t) for t in targets)
    return {rf"{path}\.{j}\..*(?:{alternatives})": int(r) for j, r in sorted(block_ranks.items())}


def lora_layers(module: nn.Module) -> dict[str, LoraLayer]:
    """The peft LoRA layers inside ``module`` by their name relative to it."""
    return {name: m for name, m in module.named_modules() if isinstance(m, LoraLayer)}


def module_rank(module: nn.Module) -> int:
    """The LoRA rank of the (single-rank) LoRA layers in ``module``, e.g. one decoder block."""
    ranks = {m.r[a] for m in lora_layers(module).values() for a in m.lora_A}
    if len(ranks) != 1:
        raise ValueError(f"expected one LoRA rank in the module, found {sorted(ranks)}")
    return ranks.pop()


def set_module_rank(module: nn.Module, rank: int, config: LoraConfig, *, alpha: float) -> None:
    """Re-create every LoRA layer of ``module`` at ``rank`` with peft alpha ``alpha`` (``peft_alpha``)
    through peft (``LoraLayer.update_layer``).

    The new tensors are placeholders (the global torch RNG is left untouched): the caller loads values.
    """
    for layer in lora_layers(module).values():
        for adapter in list(layer.lora_A):
            if layer.r[adapter] == rank:
                continue
            with torch.random.fork_rng(devices=[]):
                layer.update_layer(adapter, rank, alpha, config)
            layer.lora_A[adapter].weight.requires_grad_(True)
            layer.lora_B[adapter].weight.requires_grad_(True)
