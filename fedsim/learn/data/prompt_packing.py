"""Shared-prompt packing for evaluation: the references of one prompt ride behind a single copy of it.

E2E has several human references per MR (about 9 per MR among the first 256 validation examples), and each
example is ``prompt + reference``. Under the causal mask the prompt's hidden states do not depend on what
follows, so they are the same in every example of that MR. A packed row holds the prompt once and then the
references ("continuations") one after another. Per token it carries a segment id (0: the prompt, k: the
k-th continuation of the row, -1: padding) and a position id. Each continuation's positions go on from the
end of the prompt, as in its own example, and ``fedsim.learn.split.parts.shared_prompt_mask`` lets a token
attend to the prompt and to the earlier tokens of its own continuation only. Every scored token so sees
exactly the context it has in its unpacked example, so the NLL is the same up to float summation order,
from about half the tokens.

Scored tokens are listed as (row, column of the position that predicts it, target id, example): a
continuation's first token is predicted from the prompt's last position, the others from the token before
them; ``examples`` gives each token's example (its position in ``indices``), so NLL can be summed per example.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

PAD_SEGMENT = -1


@dataclass
class PackedBatch:
    """Packed rows, right-padded to one width, and the tokens they score."""

    input_ids: torch.Tensor  # (R, T)
    attention_mask: torch.Tensor  # (R, T): 1 on real tokens
    position_ids: torch.Tensor  # (R, T): the token's position in its own unpacked example
    segments: torch.Tensor  # (R, T): 0 prompt, k >= 1 the row's k-th continuation, -1 padding
    rows: torch.Tensor  # (N,): row of each scored token
    cols: torch.Tensor  # (N,): column of the position whose logits predict it
    targets: torch.Tensor  # (N,): its token id
    examples: torch.Tensor  # (N,): the example it belongs to, as its position in ``indices``

    def to(self, device: torch.device | None) -> PackedBatch:
        return PackedBatch(**{name: value.to(device) for name, value in vars(self).items()})


@dataclass
class _Row:
    prompt: tuple[int, ...]
    ids: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)
    scored: list[tuple[int, int, int]] = field(default_factory=list)  # (predicting column, target id, example)
    continuations: int = 0

    def __post_init__(self) -> None:
        self.ids = list(self.prompt)
        self.positions = list(range(len(self.prompt)))
        self.segments = [0] * len(self.prompt)

    def add(self, ids: Sequence[int], labels: Sequence[int], example: int) -> None:
        self.continuations += 1
        start, prompt_len = len(self.ids), len(self.prompt)
        for j, (token, label) in enumerate(zip(ids, labels, strict=True)):
            if label != -100:
                self.scored.append((prompt_len - 1 if j == 0 else start + j - 1, int(label), example))
            self.ids.append(int(token))
            self.positions.append(prompt_len + j)
            self.segments.append(self.continuations)


def split_example(item: dict) -> tuple[tuple[int, ...], list[int], list[int]] | None:
    """(prompt ids, continuation ids, continuation labels) of one example, or None if it scores no token.

    The prompt is everything before the first labelled token (at least the first token, which no position
    predicts); the continuation runs from there to the last real token. ``item``: input_ids,
    attention_mask, labels, each (L,), right-padded, labels -100 where no loss is taken."""
    length = int(item["attention_mask"].sum())
    ids = item["input_ids"][:length].tolist()
    labels = item["labels"][:length].tolist()
    first = next((t for t in range(1, length) if labels[t] != -100), None)
    if first is None:
        return None
    return tuple(ids[:first]), ids[first:], labels[first:]


def pack_shared_prompts(dataset, indices: Sequence[int], *, max_tokens: int) -> list[PackedBatch]:
    """Batches of packed rows over ``dataset[i]`` for ``i`` in ``indices`` (examples as ``split_example``
    reads them); examples with the same prompt ids share a row while it holds at most ``max_tokens``
    tokens, and rows, sorted by length, share a batch while rows x width stays within ``max_tokens`` (a row
    or batch holds at least one). Deterministic: the order follows ``indices``."""
    groups: dict[tuple[int, ...], list[tuple[list[int], list[int], int]]] = {}
    for position, i in enumerate(indices):
        parts = split_example(dataset[int(i)])
        if parts is not None:
            groups.setdefault(parts[0], []).append((*parts[1:], position))
    rows: list[_Row] = []
    for prompt, continuations in groups.items():
        row = _Row(prompt)
        for ids, labels, position in continuations:
            if row.continuations and len(row.ids) + len(ids) > max_tokens:
                rows.append(row)
                row = _Row(prompt)
            row.add(ids, labels, position)
        rows.append(row)
    rows.sort(key=lambda r: len(r.ids))
    batches: list[list[_Row]] = []
    for row in rows:
        if batches and (len(batches[-1]) + 1) * len(row.ids) <= max_tokens:
            batches[-1].append(row)
        else:
            batches.append([row])
    return [_collate(batch) for batch in batches]


def _collate(rows: list[_Row]) -> PackedBatch:
    width = max(len(r.ids) for r in rows)

    def padded(values: list[int], fill: int) -> list[int]:
        return values + [fill] * (width - len(values))

    scored = [(b, col, target, example) for b, r in enumerate(rows) for col, target, example in r.scored]
    rows_, cols, targets, examples = zip(*scored, strict=True) if scored else ((), (), (), ())
    return PackedBatch(
        input_ids=torch.tensor([padded(r.ids, 0) for r in rows], dtype=torch.long),
        attention_mask=torch.tensor([padded([1] * len(r.ids), 0) for r in rows], dtype=torch.long),
        position_ids=torch.tensor([padded(r.positions, 0) for r in rows], dtype=torch.long),
        segments=torch.tensor([padded(r.segments, PAD_SEGMENT) for r in rows], dtype=torch.long),
        rows=torch.tensor(rows_, dtype=torch.long),
        cols=torch.tensor(cols, dtype=torch.long),
        targets=torch.tensor(targets, dtype=torch.long),
        examples=torch.tensor(examples, dtype=torch.long),
    )
