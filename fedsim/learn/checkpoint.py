"""Full training checkpoints: config, step, curve, every client and server LoRA + optimiser, data order,
and the torch RNG. Written atomically, so a run killed mid-write keeps its previous checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from fedsim.atomic import atomic_path
from fedsim.errors import InputError

# Fields that may differ between a run and its resumption (they do not change the curve already made).
_RESUMABLE = {"steps", "checkpoint_every", "checkpoint_path", "target_ppl", "test_samples", "generate_mrs",
              "max_new_tokens"}  # fmt: skip


def save_checkpoint(path: str | Path, config: dict, step: int, curve: list[dict], system_state: dict) -> None:
    """Atomically write the whole training state to ``path`` (torch format)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "config": config,
        "step": step,
        "curve": curve,
        "system": system_state,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path, config: dict) -> dict:
    """Read a checkpoint and check it belongs to ``config`` (up to the resumable fields)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path}: file not found")
    payload = torch.load(path, weights_only=True, map_location="cpu")
    saved = {k: v for k, v in payload["config"].items() if k not in _RESUMABLE}
    wanted = {k: v for k, v in config.items() if k not in _RESUMABLE}
    if saved != wanted:
        diff = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
        raise InputError(f"checkpoint {path}: made with a different configuration ({', '.join(diff)})")
    return payload


def restore_rng(payload: dict) -> None:
    torch.set_rng_state(payload["torch_rng"])
    if payload.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
