"""Architecture-generic split of a Hugging Face causal LM into a client part and a server part.

Client part = token (and learned position) embeddings + the first ``cut`` decoder blocks; server part =
the remaining blocks + final norm + LM head (spec §2, eqs. 3-4). The family adapter registered for the
model's ``config.model_type`` (``fedsim/learn/split/families.py``: GPT-2, Llama, OPT) says where the pieces are;
a model of another family is taken apart by inspecting the decoder's direct children by type (embedding,
dropout, rotary embedding, the block list, the norm after it), which fits most GPT-2- and Llama-like
decoders. Either way every family runs through the one code path below.

Both parts run the blocks exactly as the model's own forward does: positions ``0..L-1`` and the model's own
causal/padding mask (``transformers.masking_utils.create_causal_mask``) built from the 2-D attention mask.
Batches are right-padded, so those positions equal the unsplit model's. The client sends the server its
activation together with the (B, L) attention mask, which the server needs to rebuild the same 4-D mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.masking_utils import create_causal_mask

from fedsim.errors import InputError


@dataclass
class DecoderParts:
    """The modules of a decoder-only LM, in forward order. Modules are shared with the model, not copied."""

    config: object
    embed_tokens: nn.Module
    embed_positions: nn.Module | None  # learned absolute positions (GPT-2 ``wpe``); None for rotary models
    embed_dropout: nn.Module | None
    rotary: nn.Module | None  # rotary position embedding (Llama ``rotary_emb``)
    blocks: nn.ModuleList
    final_norm: nn.Module | None  # None: no norm after the last block (OPT-350m)
    lm_head: nn.Module
    position_offset: int = 0  # rows of the position table before position 0 (OPT: 2)
    project_in: nn.Module | None = None  # embedding width -> residual width (OPT-350m)
    project_out: nn.Module | None = None  # residual width -> embedding width, before the head

    @property
    def num_blocks(self) -> int:
        """J, the number of split-able decoder blocks."""
        return len(self.blocks)


def _unwrap(model: nn.Module) -> nn.Module:
    """The transformers model inside a peft wrapper (peft replaces target layers in place)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def decoder_parts(model: nn.Module) -> DecoderParts:
    """Find the embeddings, decoder blocks, final norm and LM head of a causal LM (plain or peft-wrapped):
    through the registered family adapter of its model type, else by inspection."""
    from fedsim.learn.split.families import family_for, parts_of

    lm = _unwrap(model)
    family = family_for(getattr(getattr(lm, "config", None), "model_type", None))
    if family is not None:
        return DecoderParts(**parts_of(family, lm))
    decoder = getattr(lm, getattr(lm, "base_model_prefix", ""), None)
    lm_head = lm.get_output_embeddings() if hasattr(lm, "get_output_embeddings") else None
    if decoder is None or lm_head is None:
        raise InputError(f"model {type(lm).__name__}: not a decoder-only causal LM with an LM head")
    embed_tokens = decoder.get_input_embeddings()
    found: dict[str, nn.Module | None] = {"pos": None, "drop": None, "rotary": None, "blocks": None}
    after_blocks: list[nn.Module] = []
    for child in decoder.children():
        if child is embed_tokens:
            continue
        if isinstance(child, nn.ModuleList):
            found["blocks"] = child
        elif isinstance(child, nn.Embedding):
            found["pos"] = child
        elif isinstance(child, nn.Dropout):
            found["drop"] = child
        elif hasattr(child, "inv_freq") or "rotary" in type(child).__name__.lower():
            found["rotary"] = child
        elif found["blocks"] is not None:
            after_blocks.append(child)  # the final norm is the one module registered after the blocks
    if found["blocks"] is None or len(after_blocks) != 1:
        raise InputError(
            f"model {type(lm).__name__}: cannot find one decoder block list followed by one final norm "
            "(register a fedsim.learn.split.families.ModelFamily for its model type)"
        )
    return DecoderParts(
        config=decoder.config,
        embed_tokens=embed_tokens,
        embed_positions=found["pos"],
        embed_dropout=found["drop"],
        rotary=found["rotary"],
        blocks=found["blocks"],
        final_norm=after_blocks[0],
        lm_head=lm_head,
    )


def _block_kwargs(
    config: object,
    rotary: nn.Module | None,
    hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor | None = None,
) -> dict:
    """Keyword arguments every decoder block of the model receives: mask, positions, rotary cos/sin.

    ``attention_mask``: the (B, L) padding mask, or a ready 4-D mask (``shared_prompt_mask``), which
    ``create_causal_mask`` passes through; ``position_ids`` (B, L): default ``0..L-1``."""
    if position_ids is None:
        position_ids = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
    mask = create_causal_mask(
        config=config,
        inputs_embeds=hidden,
        attention_mask=attention_mask,
        cache=None,  # no KV cache in training (transformers >= 5.24 name; `past_key_values` is deprecated)
        position_ids=position_ids,
    )
    kwargs = {"attention_mask": mask, "position_ids": position_ids}
    if rotary is not None:
        kwargs["position_embeddings"] = rotary(hidden, position_ids=position_ids)
    return kwargs


def _run_blocks(blocks: nn.ModuleList, hidden: torch.Tensor, kwargs: dict) -> torch.Tensor:
    for block in blocks:
        out = block(hidden, **kwargs)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


class ClientPart(nn.Module):
    """Embeddings + blocks 1..c. ``forward(input_ids (B,L), attention_mask (B,L)) -> activation (B,L,d)``."""

    def __init__(self, parts: DecoderParts, cut: int):
        super().__init__()
        self.config = parts.config
        self.embed_tokens = parts.embed_tokens
        self.embed_positions = parts.embed_positions
        self.embed_dropout = parts.embed_dropout
        self.rotary = parts.rotary
        self.project_in = parts.project_in
        self.position_offset = parts.position_offset
        self.blocks = nn.ModuleList(parts.blocks[:cut])

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        *,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        hidden = self.embed_tokens(input_ids)
        kwargs = _block_kwargs(self.config, self.rotary, hidden, attention_mask, position_ids)
        if self.project_in is not None:
            hidden = self.project_in(hidden)
        if self.embed_positions is not None:
            # the table's own Embedding.forward: OPT's subclass takes a mask, not positions, in forward
            positions = kwargs["position_ids"] + self.position_offset
            hidden = hidden + nn.Embedding.forward(self.embed_positions, positions)
        if self.embed_dropout is not None:
            hidden = self.embed_dropout(hidden)
        return _run_blocks(self.blocks, hidden, kwargs)


class ServerPart(nn.Module):
    """Blocks c+1..J + final norm + LM head. ``forward(activation (B,L,d), attention_mask) -> logits (B,L,V)``.

    With per-client cuts (SplitFT) the server part starts at the lowest cut and
    ``forward(activation, attention_mask, cut)`` runs blocks cut+1..J for an activation cut after block ``cut``.
    """

    def __init__(self, parts: DecoderParts, cut: int):
        super().__init__()
        self.config = parts.config
        self.rotary = parts.rotary
        self.first = cut  # the activation it takes by default is the output of block ``cut``
        self.blocks = nn.ModuleList(parts.blocks[cut:])
        self.final_norm = parts.final_norm
        self.project_out = parts.project_out
        self.lm_head = parts.lm_head

    def forward(
        self,
        hidden: torch.Tensor,
        attention_mask: torch.Tensor,
        cut: int | None = None,
        *,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        kwargs = _block_kwargs(self.config, self.rotary, hidden, attention_mask, position_ids)
        blocks = self.blocks
        if cut is not None and cut != self.first:
            if not self.first <= cut <= self.first + len(self.blocks):
                raise ValueError(f"server part holds blocks {self.first + 1}.. and cannot start after {cut}")
            blocks = self.blocks[cut - self.first :]
        hidden = _run_blocks(blocks, hidden, kwargs)
        if self.final_norm is not None:
            hidden = self.final_norm(hidden)
        if self.project_out is not None:
            hidden = self.project_out(hidden)
        return self.lm_head(hidden)


def check_cut(cut: int, num_blocks: int) -> int:
    """Validate a cut layer c in 1..J (c = J leaves only the final norm and head on the server)."""
    if isinstance(cut, bool) or not isinstance(cut, int) or not 1 <= cut <= num_blocks:
        raise InputError(
            f"cut: must be an integer in 1..{num_blocks} (the model's decoder blocks), got {cut!r}"
        )
    return cut


def split_model(model: nn.Module, cut: int) -> tuple[ClientPart, ServerPart]:
    """Split ``model`` after block ``cut``. The parts share modules (and so weights) with ``model``."""
    parts = decoder_parts(model)
    check_cut(cut, parts.num_blocks)
    return ClientPart(parts, cut), ServerPart(parts, cut)


def shared_prompt_mask(config: object, attention_mask: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """The 4-D attention mask of shared-prompt packed rows (``fedsim.learn.data.prompt_packing``), in the form
    the model's attention implementation takes: causal, no padding key, and a token attends only to the
    prompt (segment 0) and to its own segment. ``attention_mask``, ``segments``: (B, T). Passed as the
    ``attention_mask`` of ``ClientPart`` / ``ServerPart`` or of the model's own forward (used as is)."""

    def prompt_or_own_segment(batch_idx, head_idx, q_idx, kv_idx):
        key = segments[batch_idx, kv_idx]
        return (key == 0) | (key == segments[batch_idx, q_idx])

    return create_causal_mask(
        config=config,
        inputs_embeds=torch.empty(*segments.shape, 1, device=segments.device),  # read for shape, dtype, device
        attention_mask=attention_mask,
        cache=None,
        position_ids=None,
        and_mask_function=prompt_or_own_segment,
    )


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over labelled positions and their count.

    Args:
        logits: (B, L, V); labels: (B, L) with -100 on positions that carry no loss (prompt, padding).
    Returns:
        (sum of token NLL in nats, number of labelled tokens). Mean loss = sum / count, as HF computes it.
    """
    shift_logits = logits[:, :-1, :].float().reshape(-1, logits.shape[-1])
    shift_labels = labels[:, 1:].reshape(-1)
    total = nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="sum")
    return total, int((shift_labels != -100).sum())


def token_nll_per_example(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``token_nll`` per example: (B,) summed next-token NLL [nats] and (B,) labelled-token counts, so that
    evaluations of different models on the same examples can be compared pair by pair."""
    shift_labels = labels[:, 1:]
    nll = nn.functional.cross_entropy(
        logits[:, :-1, :].float().transpose(1, 2), shift_labels, ignore_index=-100, reduction="none"
    )  # (B, L-1), 0 where ignored
    return nll.sum(dim=1), (shift_labels != -100).sum(dim=1)
