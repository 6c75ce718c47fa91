"""The E2E NLG dataset as causal-LM training examples: ``"<mr> ||| <ref><eos>"`` with the loss on the reference.

The project ships the original release (``fedsim/data/e2e/e2e-dataset.zip``, CC BY-SA 4.0, README beside it),
so a fresh clone works offline; another zip or an extracted folder can be given instead.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from fedsim.errors import InputError

DEFAULT_E2E_ZIP = Path(__file__).resolve().parents[2] / "data" / "e2e" / "e2e-dataset.zip"  # fedsim/data/e2e
SPLIT_FILES = {"train": "trainset.csv", "validation": "devset.csv", "test": "testset_w_refs.csv"}
SEPARATOR = " |||"  # ends the prompt; the reference is tokenised with its own leading space
IGNORE_INDEX = -100  # the label value torch's cross-entropy (and transformers) skips


def load_e2e(path: str | Path | None = None) -> dict[str, list[tuple[str, str]]]:
    """The E2E splits as ``{"train": [(mr, ref), ...], "validation": [...], "test": [...]}``.

    path: the dataset zip, or a folder holding trainset.csv, devset.csv and testset_w_refs.csv (directly or in
    an ``e2e-dataset/`` subfolder); default: the copy shipped with fedsim. Rows keep the file order
    (42,061 / 4,672 / 4,693 pairs for the official release).
    """
    path = Path(path).expanduser() if path is not None else DEFAULT_E2E_ZIP
    if not path.exists():
        raise InputError(
            f"e2e data: {path} does not exist; give the E2E zip or a folder with {', '.join(SPLIT_FILES.values())}"
        )
    if path.is_dir():
        return {
            split: _read_pairs(_find_in_dir(path, name).read_bytes(), name)
            for split, name in SPLIT_FILES.items()
        }
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            return {
                split: _read_pairs(zf.read(_find_in_zip(names, name, path)), name)
                for split, name in SPLIT_FILES.items()
            }
    except zipfile.BadZipFile as exc:
        raise InputError(f"e2e data: {path} is neither a folder nor a valid zip ({exc})") from exc


def _find_in_dir(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / "e2e-dataset" / name):
        if candidate.is_file():
            return candidate
    raise InputError(f"e2e data: {name} not found in {folder} (nor in {folder / 'e2e-dataset'})")


def _find_in_zip(names: list[str], name: str, path: Path) -> str:
    hits = [n for n in names if n == name or n.endswith("/" + name)]
    if not hits:
        raise InputError(f"e2e data: {name} not found inside {path}")
    return hits[0]


def _read_pairs(raw: bytes, name: str) -> list[tuple[str, str]]:
    rows = csv.reader(io.StringIO(raw.decode("utf-8-sig")))
    header = [h.strip().lower() for h in next(rows, [])]
    if "mr" not in header or "ref" not in header:
        raise InputError(f"e2e data: {name} must have columns mr, ref; found {header}")
    i_mr, i_ref = header.index("mr"), header.index("ref")
    return [(row[i_mr].strip(), row[i_ref].strip()) for row in rows if row]


def prompt_text(mr: str) -> str:
    """The prompt a model sees for a meaning representation (generation continues after it)."""
    return mr + SEPARATOR


def encode_pair(tokenizer, mr: str, ref: str | None, *, max_len: int) -> tuple[list[int], int]:
    """Token ids of ``prompt + " " + ref + EOS`` truncated to ``max_len``, and the prompt's length in tokens.

    Prompt and reference are tokenised separately so the prompt/reference boundary is exact. With
    ``ref=None`` only the prompt is returned (for generation).
    """
    prompt_ids = tokenizer(prompt_text(mr))["input_ids"]
    if ref is None:
        return prompt_ids[:max_len], min(len(prompt_ids), max_len)
    target_ids = tokenizer(" " + ref, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (prompt_ids + target_ids)[:max_len]
    return ids, min(len(prompt_ids), max_len)


class E2EExamples(Dataset):
    """(mr, ref) pairs as fixed-length causal-LM examples.

    Item i is a dict of int64 tensors of shape (max_len,): ``input_ids`` (right-padded with the pad id),
    ``attention_mask`` (1 on real tokens), ``labels`` (= input_ids on the reference tokens and EOS,
    -100 on the prompt and on padding). Examples longer than ``max_len`` are truncated from the right.
    Tokenisation happens on first access and is cached.
    """

    def __init__(self, pairs: Sequence[tuple[str, str]], tokenizer, max_len: int):
        if max_len < 2:
            raise InputError(f"max_len: must be >= 2, got {max_len}")
        if tokenizer.eos_token_id is None:
            raise InputError("tokenizer: needs an EOS token to end the reference")
        self.pairs = list(pairs)
        self.tokenizer = tokenizer
        self.max_len = int(max_len)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._cache: dict[int, tuple[list[int], int]] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def encoded(self, index: int) -> tuple[list[int], int]:
        """Unpadded token ids and prompt length of example ``index``."""
        if index not in self._cache:
            mr, ref = self.pairs[index]
            self._cache[index] = encode_pair(self.tokenizer, mr, ref, max_len=self.max_len)
        return self._cache[index]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ids, prompt_len = self.encoded(index)
        n, pad = len(ids), self.max_len - len(ids)
        input_ids = torch.tensor(ids + [self.pad_id] * pad, dtype=torch.long)
        attention_mask = torch.zeros(self.max_len, dtype=torch.long)
        attention_mask[:n] = 1
        labels = torch.full((self.max_len,), IGNORE_INDEX, dtype=torch.long)
        labels[prompt_len:n] = input_ids[prompt_len:n]
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def make_loader(
    dataset: Dataset,
    indices: Sequence[int],
    batch_size: int,
    *,
    generator: torch.Generator,
    shuffle: bool = True,
) -> DataLoader:
    """A DataLoader over ``dataset[indices]``: reshuffled each epoch by ``generator``, full batches only.

    drop_last keeps every step's batch size at ``batch_size`` (the delay model assumes a constant b).
    """
    indices = [int(i) for i in indices]
    if batch_size < 1:
        raise InputError(f"batch_size: must be >= 1, got {batch_size}")
    if len(indices) < batch_size:
        raise InputError(
            f"batch_size: {batch_size} is larger than the {len(indices)} examples of this client"
        )
    return DataLoader(
        Subset(dataset, indices), batch_size=batch_size, shuffle=shuffle, drop_last=True, generator=generator
    )


def group_by_mr(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """``[(mr, [ref, ...]), ...]`` in first-seen order: E2E scores each MR against all its references."""
    groups: dict[str, list[str]] = {}
    for mr, ref in pairs:
        groups.setdefault(mr, []).append(ref)
    return list(groups.items())


def mr_spread_order(pairs: Sequence[tuple[str, str]]) -> list[int]:
    """Indices of ``pairs`` with one reference of every MR (in first-seen order) before any MR's second, then
    the second of each, and so on: the first N of them hold min(N, number of MRs) MRs, where the file order
    holds about N / 8 (E2E lists an MR's references together)."""
    seen: dict[str, int] = {}
    keyed = []
    for i, (mr, _) in enumerate(pairs):
        keyed.append((seen.get(mr, 0), i))
        seen[mr] = keyed[-1][0] + 1
    return [i for _, i in sorted(keyed)]
