"""A ``[live]`` section's arms expanded: every arm x ``vary`` combination as a named, validated TrainConfig
(pure configuration; the runs themselves are ``fedsim.experiments.live.arms``)."""

from __future__ import annotations

import itertools
import re

from fedsim.errors import InputError
from fedsim.learn.config import TrainConfig


def arm_configs(live) -> list[tuple[str, dict, TrainConfig]]:
    """(run name, tags {arm, vary values}, TrainConfig) per arm x vary combination, validated (cuts against
    the model's J and memory, from its config when a copy is here); a bad one raises ValueError naming
    the arm."""
    from fedsim.learn.split.layout import check_model

    if not live.arms:
        return []
    base = live.training.model_dump()
    keys = list(live.vary)
    out = []
    for combo in itertools.product(*(live.vary[k] for k in keys)):
        values = dict(zip(keys, combo, strict=True))
        for arm, overrides in live.arms.items():
            name = re.sub(r"[^A-Za-z0-9_.-]", "", arm + "".join(f"_{k}{v}" for k, v in values.items()))
            try:
                cfg = TrainConfig.parse({**base, **overrides, **values})
                check_model(cfg)  # J and memory from the model's own config (no download)
            except InputError as exc:
                raise ValueError(f"live.arms.{arm}: {exc}") from None
            out.append((name, {"arm": arm, **values}, cfg))
    return out
