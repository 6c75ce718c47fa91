"""Read a scenario TOML, apply ``--set a.b=value`` overrides, validate; every problem is one InputError line."""

from __future__ import annotations

import copy
import glob
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from fedsim.errors import InputError
from fedsim.scenario.model import Scenario
from fedsim.scenario.points import set_dotted, sweep_points

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b=value`` -> ("a.b", value); the value is read as TOML (``1e6``, ``true``, ``[1, 2]``,
    ``"x"``), and a bare word that is no TOML value is taken as a string."""
    key, sep, raw = str(text).partition("=")
    key = key.strip()
    if not sep or not key:
        raise InputError(f"--set {text!r}: expected KEY=VALUE, e.g. system.p_max_w=0.1")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except (tomllib.TOMLDecodeError, ValueError):
        value = raw.strip()
    return key, value


def apply_overrides(data: dict[str, Any], overrides: typing.Iterable[str]) -> dict[str, Any]:
    """A deep copy of ``data`` with every ``KEY=VALUE`` override set."""
    out = copy.deepcopy(data)
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(out, key, value)
    return out


def _unwrap(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``X``, ``X | None`` or ``Optional[X]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _unwrap(arg)
            if found is not None:
                return found
    return None


def _allowed_keys(loc: tuple[Any, ...]) -> list[str] | None:
    """Field names of the model that holds ``loc``'s last key, for 'unknown key' messages."""
    model: type[BaseModel] | None = Scenario
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if model else None
        model = _unwrap(field.annotation) if field else None
    return sorted(model.model_fields) if model else None


# Which error a one-line message shows first: a misspelt key, then a bad value, then a missing field.
_ERROR_ORDER = {"extra_forbidden": 0, "missing": 2}


def _one_line(exc: ValidationError, source: str) -> str:
    errors = sorted(exc.errors(), key=lambda e: _ERROR_ORDER.get(e.get("type"), 1))
    first = errors[0]
    loc = tuple(first.get("loc", ()))
    where = ".".join(str(p) for p in loc) or "(top level)"
    if first.get("type") == "extra_forbidden":
        allowed = _allowed_keys(loc)
        msg = "unknown key" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
    else:
        msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        value = first.get("input")
        if not isinstance(value, (dict, list, tuple)) and first.get("type") != "missing":
            msg += f" (got {value!r})"
    more = f" [and {len(errors) - 1} more]" if len(errors) > 1 else ""
    return f"{source}: {where}: {msg}{more}".replace("\n", " ")


def _validate(data: Any, source: str) -> Scenario:
    if not isinstance(data, dict):
        raise InputError(f"{source}: a scenario must be a table of sections")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise InputError(_one_line(exc, source)) from None
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:  # validators on exotic input
        raise InputError(f"{source}: {type(exc).__name__}: {exc}".replace("\n", " ")) from None


def scenario_from_dict(data: dict[str, Any], source: str = "scenario") -> Scenario:
    """Validate a scenario table and every one of its sweep points."""
    scenario = _validate(data, source)
    for i, point in enumerate(sweep_points(scenario.sweep.axes, scenario.sweep.mode)):
        moved = copy.deepcopy(data)
        for key, value in point.items():
            set_dotted(moved, key, value)
        _validate(moved, f"{source}: sweep point {i} ({_point_text(point)})")
    return scenario


def scenario_at(scenario, point: dict[str, Any]):
    """The scenario with one sweep point's values set (validated again; the sweep itself is kept)."""
    if not point:
        return scenario
    data = scenario.model_dump(mode="python")
    for key, value in point.items():
        set_dotted(data, key, value)
    data["sweep"] = {"axes": {}, "mode": "product"}  # a point is not a sweep
    return scenario_from_dict(data, f"sweep point ({', '.join(f'{k}={v!r}' for k, v in point.items())})")


def _point_text(point: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in point.items())


def _resolve_listed(data: dict[str, Any], where: str, base: Path, expand) -> None:
    """Replace the list at ``where`` (``section.key``) by its paths, each entry resolved against the scenario
    file's folder ``base`` and passed to ``expand(entry, full path)`` for the paths it stands for; entries that
    are not strings stay, so that validation names them."""
    section, key = where.split(".")
    table = data.get(section)
    if not (isinstance(table, dict) and isinstance(table.get(key), list)):
        return
    paths: list[Any] = []
    for p in table[key]:
        if not isinstance(p, str):
            paths.append(p)
            continue
        paths.extend(expand(p, Path(p) if Path(p).is_absolute() else (base / p).resolve()))
    table[key] = paths


def _resolve_records(data: dict[str, Any], base: Path) -> None:
    """Record paths relative to the scenario file's folder; glob patterns (``*``, ``?``, ``[``) expand to
    the sorted matching files (InputError when a pattern matches none)."""

    def files(p: str, full: Path) -> list[str]:
        if not any(ch in p for ch in "*?["):
            return [str(full)]
        matches = sorted(glob.glob(str(full)))
        if not matches:
            raise InputError(f"training.records: pattern {p!r} matches no file (relative to {base})")
        return matches

    _resolve_listed(data, "training.records", base, files)


def _resolve_reuse(data: dict[str, Any], base: Path) -> None:
    """``study.reuse_records`` folders relative to the scenario file's folder; each must exist."""

    def folder(p: str, full: Path) -> list[str]:
        if not full.is_dir():
            raise InputError(f"study.reuse_records: {p!r} is not a folder (relative to {base})")
        return [str(full)]

    _resolve_listed(data, "study.reuse_records", base, folder)


def read_toml(path: str | Path) -> dict[str, Any]:
    """The raw table of a TOML file; InputError if missing or malformed."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise InputError(f"{path}: scenario file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: invalid TOML: {exc}") from None


def load_scenario(path: str | Path, overrides: typing.Iterable[str] = ()) -> Scenario:
    """Read ``path``, apply ``KEY=VALUE`` overrides, validate. Record paths resolve against the file's folder."""
    data = apply_overrides(read_toml(path), overrides)
    _resolve_records(data, Path(path).resolve().parent)
    _resolve_reuse(data, Path(path).resolve().parent)
    return scenario_from_dict(data, str(path))
