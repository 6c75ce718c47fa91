"""Write a scenario (a plain dict) back as TOML text, for ``fedsim validate`` and the results folder."""

from __future__ import annotations

import json
import math
import re
from typing import Any

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: Any) -> str:
    text = str(key)
    return text if _BARE.match(text) else json.dumps(text)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None)
        return "{" + (f" {items} " if items else "") + "}"
    return json.dumps(str(value))


def _is_table(value: Any) -> bool:
    # Dicts with non-string keys (rank -> rounds) or dotted keys (sweep axes) read best inline.
    return isinstance(value, dict) and all(isinstance(k, str) for k in value) and not value.get("__inline__")


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """TOML text of a nested dict; None values are left out (TOML has no null)."""
    lines: list[str] = []
    tables: list[tuple[str, dict]] = []
    for key, value in data.items():
        if value is None:
            continue
        if _is_table(value) and key != "axes":
            tables.append((f"{prefix}{_key(key)}", value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    out = "\n".join(lines)
    for name, table in tables:
        body = to_toml(table, f"{name}.")
        out += (
            ("\n\n" if out else "")
            + f"[{name}]"
            + (f"\n{body}" if body and not body.startswith("[") else f"\n\n{body}" if body else "")
        )
    return out
