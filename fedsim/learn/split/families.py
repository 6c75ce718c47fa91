"""Model-family adapters: where a decoder-only LM family keeps the pieces the split needs.

A ``ModelFamily`` names, by attribute path, a family's decoder, token and position embeddings, embedding
dropout, rotary embedding, decoder blocks, final norm, input/output projections and LM head, and its LoRA
target modules. ``decoder_parts`` (``split.py``) uses the family registered for a model's
``config.model_type``; GPT-2, Llama and OPT are built in, and ``register_family`` (or a package entry
point in the group ``fedsim.families`` named after the model type) adds another without touching the
split::

    register_family(ModelFamily(name="neo", model_types=("gpt_neo",), decoder="transformer",
                                embed_tokens="wte", embed_positions="wpe", embed_dropout="drop",
                                blocks="h", final_norm="ln_f"))

The default LoRA targets are peft's own per-model-type table
(``TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING``: ``c_attn`` for GPT-2, ``q_proj``/``v_proj`` for
Llama and OPT), so fedsim keeps no copy of it; a family may override them.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from fedsim.errors import InputError
from fedsim.registry import Registry

ENTRY_POINT_GROUP = "fedsim.families"


@dataclass(frozen=True)
class ModelFamily:
    """Attribute paths (dotted, from the decoder unless said otherwise) of one family's split pieces.

    Attributes:
        name: the family's name in messages.
        model_types: Hugging Face ``config.model_type`` values it covers.
        decoder: path from the causal LM to the decoder (``transformer``, ``model``, ``model.decoder``).
        embed_tokens, blocks: token embedding; the ``nn.ModuleList`` of decoder blocks.
        final_norm: the norm after the last block (None or a missing attribute: none, e.g. OPT-350m).
        embed_positions: learned absolute position table, if any (GPT-2 ``wpe``, OPT ``embed_positions``).
        position_offset: rows of that table before position 0 (OPT: 2).
        embed_dropout: dropout module after the embeddings; ``embed_dropout_config``: or the config field
            holding a functional dropout's probability (OPT ``dropout``).
        rotary: rotary position embedding module (Llama ``rotary_emb``).
        project_in, project_out: projections between embedding and residual width (OPT-350m).
        lora_targets: leaf module names LoRA adapts by default; None: peft's table for the model type.
    """

    name: str
    model_types: tuple[str, ...]
    decoder: str
    embed_tokens: str
    blocks: str
    final_norm: str | None
    embed_positions: str | None = None
    position_offset: int = 0
    embed_dropout: str | None = None
    embed_dropout_config: str | None = None
    rotary: str | None = None
    project_in: str | None = None
    project_out: str | None = None
    lora_targets: tuple[str, ...] | None = None


def _get(root: nn.Module, path: str | None) -> nn.Module | None:
    """The module at a dotted attribute path, or None (no path, or the attribute missing or None)."""
    if path is None:
        return None
    target = root
    for part in path.split("."):
        target = getattr(target, part, None)
        if target is None:
            return None
    return target


def parts_of(family: ModelFamily, lm: nn.Module) -> dict:
    """The pieces of ``lm`` (an unwrapped causal LM of ``family``) as ``DecoderParts`` keyword arguments."""
    decoder = _get(lm, family.decoder)
    blocks = _get(decoder, family.blocks) if decoder is not None else None
    embed = _get(decoder, family.embed_tokens) if decoder is not None else None
    head = lm.get_output_embeddings() if hasattr(lm, "get_output_embeddings") else None
    if not isinstance(blocks, nn.ModuleList) or embed is None or head is None:
        raise InputError(
            f"model {type(lm).__name__}: the {family.name} family adapter finds no "
            f"{family.decoder}.{family.blocks} block list, {family.embed_tokens} embedding or LM head"
        )
    dropout = _get(decoder, family.embed_dropout)
    if dropout is None and family.embed_dropout_config is not None:
        dropout = nn.Dropout(float(getattr(decoder.config, family.embed_dropout_config)))
    return {
        "config": decoder.config,
        "embed_tokens": embed,
        "embed_positions": _get(decoder, family.embed_positions),
        "embed_dropout": dropout,
        "rotary": _get(decoder, family.rotary),
        "blocks": blocks,
        "final_norm": _get(decoder, family.final_norm),
        "lm_head": head,
        "position_offset": family.position_offset,
        "project_in": _get(decoder, family.project_in),
        "project_out": _get(decoder, family.project_out),
    }


def lora_targets(family: ModelFamily, model_type: str) -> list[str] | None:
    """The family's default LoRA targets: its own list, else peft's for the model type (None: unknown)."""
    if family.lora_targets is not None:
        return list(family.lora_targets)
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_TARGETS

    found = PEFT_TARGETS.get(model_type)
    return list(found) if found else None


def _checked(family: object, where: str) -> ModelFamily:
    if not isinstance(family, ModelFamily):
        raise InputError(f"{where}: not a family adapter (needs a fedsim.learn.split.families.ModelFamily)")
    return family


FAMILY_REGISTRY = Registry(
    "family adapter",
    check=_checked,
    home=__name__,
    builtins=lambda: (GPT2, LLAMA, OPT),
    entry_point_group=ENTRY_POINT_GROUP,
    keys=lambda family: family.model_types,
    key_label="model type",
)


def register_family(family: ModelFamily, *, replace: bool = False) -> ModelFamily:
    """Make ``family`` the adapter for its model types (an error if one is taken, unless ``replace``)."""
    return FAMILY_REGISTRY.register(family, replace=replace)


def family_for(model_type: str | None) -> ModelFamily | None:
    """The family of a ``config.model_type``: registered, or from an entry point (None when there is none)."""
    return FAMILY_REGISTRY.find(model_type) if model_type else None


def registered_families() -> dict[str, ModelFamily]:
    """{model_type: family} of every registered adapter."""
    return FAMILY_REGISTRY.registered()


GPT2 = ModelFamily(
    name="gpt2",
    model_types=("gpt2",),
    decoder="transformer",
    embed_tokens="wte",
    embed_positions="wpe",
    embed_dropout="drop",
    blocks="h",
    final_norm="ln_f",
)
LLAMA = ModelFamily(
    name="llama",
    model_types=("llama",),
    decoder="model",
    embed_tokens="embed_tokens",
    rotary="rotary_emb",
    blocks="layers",
    final_norm="norm",
)
# OPT (SplitFT's models): a learned position table offset by 2, functional embedding dropout, and in
# OPT-350m a post-norm (no final norm) with word embeddings narrower than the residual stream.
OPT = ModelFamily(
    name="opt",
    model_types=("opt",),
    decoder="model.decoder",
    embed_tokens="embed_tokens",
    embed_positions="embed_positions",
    position_offset=2,
    embed_dropout_config="dropout",
    blocks="layers",
    final_norm="final_layer_norm",
    project_in="project_in",
    project_out="project_out",
)
