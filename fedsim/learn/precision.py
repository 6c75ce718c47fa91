"""Numeric precision of the training forward passes, and what a run measures about its own speed and memory.

``precision = "bf16"`` runs every training forward pass under ``torch.autocast`` with bfloat16 (the LoRA
weights, optimiser states and gradients stay fp32); on a CUDA device this is the paper-scale setting, on a
CPU it runs but is no faster. ``"fp32"`` (the default) leaves everything in fp32.
"""

from __future__ import annotations

import contextlib
import resource
import sys

import torch

PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device | str | None, precision: str):
    """The context for a training forward pass on ``device`` at ``precision``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    kind = torch.device(device).type if device is not None else "cpu"
    return torch.autocast(device_type=kind, dtype=torch.bfloat16)


def reset_peak_memory(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device | str | None) -> float:
    """Peak memory of this run: CUDA's max allocated bytes on a GPU, else the process's peak resident set."""
    if device is not None and torch.device(device).type == "cuda":
        return float(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return float(rss if sys.platform == "darwin" else rss * 1024)
