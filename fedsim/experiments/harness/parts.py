"""Part files: the rows of one finished sweep unit (point, drop), in a form that proves itself on reading.

A part is one JSON object::

    {"fedsim_part": 1, "point": 3, "drop": 7, "scenario_key": "<sha256>", "rows_sha256": "<sha256>",
     "rows": [...]}

``scenario_key`` is the sha256 of the resolved scenario without the keys a run may resume across (so a
part from another scenario is recognised), and ``rows_sha256`` the sha256 of the rows in canonical JSON (so
a truncated, garbled or edited part is recognised). ``check_part`` returns the rows, or says in a few words
why the file cannot be trusted; the store then sets it aside and recomputes the unit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

FORMAT = 1


def canonical(data: Any) -> str:
    """JSON text that depends only on the value (sorted keys, no spaces; NaN/inf as JSON5 tokens).

    Floats print as their shortest round-trip repr, so ``canonical(json.loads(text))`` reproduces the
    text a writer hashed.
    """
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=True)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def scenario_key(comparable: dict[str, Any]) -> str:
    """The key every part of one scenario carries: sha256 of its resumable-key-free resolved form."""
    return sha256_text(canonical(comparable))


def encode_part(point: int, drop: int, key: str, *, rows: list[dict]) -> str:
    """The text of a part file."""
    body = {
        "fedsim_part": FORMAT,
        "point": int(point),
        "drop": int(drop),
        "scenario_key": key,
        "rows_sha256": sha256_text(canonical(rows)),
        "rows": rows,
    }
    return json.dumps(body, allow_nan=True) + "\n"


class BadPart(ValueError):
    """A part file that cannot be trusted; the message says why in a few words."""


def check_part(path: Path, point: int, drop: int, *, key: str) -> list[dict]:
    """The rows of the part at ``path`` if it is whole, intact and of unit (point, drop) of scenario ``key``."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadPart("not valid JSON (truncated or garbled)") from None
    if isinstance(data, list):
        raise BadPart("has no checksum (written by an older fedsim)")
    if (
        not isinstance(data, dict)
        or data.get("fedsim_part") != FORMAT
        or not isinstance(data.get("rows"), list)
    ):
        raise BadPart("not a fedsim part file")
    if data.get("rows_sha256") != sha256_text(canonical(data["rows"])):
        raise BadPart("checksum of its rows does not match (changed or damaged)")
    if data.get("scenario_key") != key:
        raise BadPart("belongs to another scenario")
    if (data.get("point"), data.get("drop")) != (point, drop):
        raise BadPart(f"holds unit p{data.get('point')}_d{data.get('drop')}, not its file name's")
    if not all(isinstance(row, dict) for row in data["rows"]):
        raise BadPart("rows are not tables")
    return data["rows"]
