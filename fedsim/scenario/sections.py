"""Components of a scenario that other packages own, imported when they exist.

The engine (``fedsim.engine.EngineConfig``) and the learning code (``fedsim.learn.config.TrainConfig``)
own their typed configs; a scenario embeds them as its ``[engine]`` and ``[live.training]`` sections.
Until a package is installed, a strict empty stand-in keeps the scenario loadable (any key is then an
error naming the section), so nothing downstream silently ignores a setting.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Unavailable(BaseModel):
    """Stand-in for a section whose owning package is not installed: accepts no keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


try:  # pragma: no cover - depends on which packages have landed
    from fedsim.engine.config import EngineConfig
except ImportError:  # pragma: no cover
    EngineConfig = _Unavailable  # type: ignore[misc,assignment]

try:  # pragma: no cover
    from fedsim.learn.config import TrainConfig
except ImportError:  # pragma: no cover
    TrainConfig = _Unavailable  # type: ignore[misc,assignment]

__all__ = ["EngineConfig", "TrainConfig"]
