"""Write a scenario (a plain dict) back as TOML text, for ``fedsim validate`` and the results folder."""

from __future__ import annotations

from typing import Any

import tomli_w


def toml_ready(value: Any) -> Any:
    """``value`` as TOML can hold it: None left out (TOML has no null), keys as strings (rank -> rounds
    tables have int keys), tuples as lists."""
    if isinstance(value, dict):
        return {str(k): toml_ready(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [toml_ready(v) for v in value if v is not None]
    return value


def to_toml(data: dict[str, Any]) -> str:
    """TOML text of a nested dict (``tomli_w``); None values are left out. TypeError on values TOML has
    no type for."""
    return tomli_w.dumps(toml_ready(data)).rstrip("\n")
