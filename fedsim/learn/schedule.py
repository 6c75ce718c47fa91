"""Learning-rate schedules: a linear warm-up, then constant, cosine or linear decay to zero.

Each optimiser follows the schedule over its own steps (a client's and the main server's optimiser step once
per local iteration, so both follow the run's step count). The step count and base rate live in the
optimiser's parameter group (``iteration``, ``base_lr``), so they are saved with its state and a resumed
run continues the same schedule.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch

SCHEDULES = ("constant", "cosine", "linear")


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, kind: str) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based) of ``total_steps``.

    Warm-up: (step + 1) / warmup_steps for the first ``warmup_steps`` steps (torch's ``LinearLR`` from
    1/W to 1); then 1 (constant), 0.5 (1 + cos(pi t)) (cosine, torch's ``CosineAnnealingLR`` to 0) or 1 - t
    (linear, ``LinearLR`` to 0), t = (step - W) / (total_steps - W) clipped to [0, 1].
    """
    if kind not in SCHEDULES:
        raise ValueError(f"lr_schedule: must be one of {SCHEDULES}, got {kind!r}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "constant":
        return 1.0
    span = max(total_steps - warmup_steps, 1)
    t = min(step - warmup_steps, span) / span
    return 0.5 * (1.0 + math.cos(math.pi * t)) if kind == "cosine" else 1.0 - t


def schedule_of(cfg) -> Callable[[int], float]:
    """The step -> lr factor function of a ``TrainConfig`` (picklable)."""
    return functools.partial(
        lr_factor, total_steps=cfg.steps, warmup_steps=cfg.warmup_steps, kind=cfg.lr_schedule
    )


def scheduled_step(optimizer: torch.optim.Optimizer, schedule: Callable[[int], float]) -> None:
    """One optimiser step at the schedule's rate for this optimiser's step count, then count it."""
    for group in optimizer.param_groups:
        group["lr"] = group.setdefault("base_lr", group["lr"]) * schedule(group.setdefault("iteration", 0))
    optimizer.step()
    for group in optimizer.param_groups:
        group["iteration"] += 1
