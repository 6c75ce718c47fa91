"""Full training checkpoints: config, step, curve, every client and server LoRA + optimiser, data order,
and the torch RNG. Written atomically, so a run killed mid-write keeps its previous checkpoint.

The file is a one-line header ``fedsim-checkpoint/2 <sha256>`` followed by the ``torch.save`` bytes it
hashes, so a truncated or damaged checkpoint is recognised (``CorruptCheckpoint``) instead of crashing the
loader; ``train`` then sets it aside and starts over. Files without the header (older fedsim) are still read.
A live co-simulation's checkpoint (``fedsim.learn.live_trainer``) adds the engine's per-round log under ``live``.
Whether a checkpoint belongs to a run is decided by ``fedsim.learn.config.config_diff``, the rule study
records use too.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch

from fedsim.atomic import atomic_write_bytes, remove_stale_temps, set_aside
from fedsim.errors import InputError
from fedsim.learn.config import config_diff

MAGIC = b"fedsim-checkpoint/2 "

# Fields that may differ between a run and its resumption (they do not change the curve already made).
_RESUMABLE = {"steps", "checkpoint_every", "checkpoint_path", "target_ppl", "test_samples", "generate_mrs",
              "max_new_tokens"}  # fmt: skip


def save_checkpoint(path: str | Path, config: dict, step: int, *, curve: list[dict], system_state: dict,
                    extra: dict | None = None) -> None:  # fmt: skip
    """Atomically write the whole training state to ``path`` (checksum header + torch format); ``extra``'s
    entries (plain Python values, e.g. the live run's engine log under ``live``) join the payload."""
    path = Path(path)
    payload = {
        **(extra or {}),
        "config": config,
        "step": step,
        "curve": curve,
        "system": system_state,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    atomic_write_bytes(path, MAGIC + hashlib.sha256(body).hexdigest().encode("ascii") + b"\n" + body)


class CorruptCheckpoint(InputError):
    """A checkpoint file that is truncated, damaged or not a checkpoint at all."""


def read_payload(path: Path) -> dict:
    """The verified payload of the checkpoint at ``path``; CorruptCheckpoint if it does not verify."""
    raw = path.read_bytes()
    if raw.startswith(MAGIC):
        digest, _, body = raw[len(MAGIC) :].partition(b"\n")
        if hashlib.sha256(body).hexdigest().encode("ascii") != digest:
            raise CorruptCheckpoint(f"checkpoint {path}: checksum does not match (truncated or damaged)")
        source = io.BytesIO(body)
    else:
        source = io.BytesIO(raw)  # written by an older fedsim: no checksum, torch's own checks only
    try:
        payload = torch.load(source, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
        raise CorruptCheckpoint(f"checkpoint {path}: cannot be read ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or not {"config", "step", "curve", "system"} <= payload.keys():
        raise CorruptCheckpoint(f"checkpoint {path}: not a fedsim checkpoint")
    return payload


def load_checkpoint(path: str | Path, config: dict) -> dict:
    """Read a checkpoint, verify it, and check it belongs to ``config`` (up to the resumable fields)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path}: file not found")
    payload = read_payload(path)
    # a decaying learning rate is laid out over ``steps``: extending such a run would change its past
    resumable = _RESUMABLE if config.get("lr_schedule", "constant") == "constant" else _RESUMABLE - {"steps"}
    diff = config_diff(payload["config"], config, resumable)
    if diff:
        raise InputError(f"checkpoint {path}: made with a different configuration ({', '.join(diff)})")
    return payload


def resume_point(path: Path | None, config: dict) -> dict | None:
    """The payload to resume from, or None to start afresh: no checkpoint, or a damaged one (set aside with
    one line on stderr). A checkpoint of another configuration stays an InputError."""
    if path is None:
        return None
    remove_stale_temps(path.parent)  # a checkpoint write cut short by a kill
    if not path.is_file():
        return None
    try:
        return load_checkpoint(path, config)
    except CorruptCheckpoint as bad:
        set_aside(path.parent, path, f"{bad}; training starts over")
        return None


def restore_rng(payload: dict) -> None:
    torch.set_rng_state(payload["torch_rng"])
    if payload.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
