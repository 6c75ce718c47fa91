"""Every scenario key with its type, default and help text, generated from the typed models."""

from __future__ import annotations

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from fedsim.scenario.load import _unwrap
from fedsim.scenario.model import Scenario


def _type_name(annotation) -> str:
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    return text.replace("typing.", "")


def describe(model: type[BaseModel] = Scenario, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, description) for every leaf field, sections expanded."""
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        inner = _unwrap(field.annotation)
        if inner is not None and inner.model_fields:
            rows.append((f"[{key}]", "section", "", field.description or ""))
            rows += describe(inner, f"{key}.")
            continue
        if field.default is PydanticUndefined:
            default = "(required)" if field.default_factory is None else "(computed)"
        else:
            default = repr(field.default)
        rows.append((key, _type_name(field.annotation), default, field.description or ""))
    return rows


def describe_text() -> str:
    """The key reference as aligned text lines."""
    rows = describe()
    width = max(len(r[0]) for r in rows)
    lines = []
    for key, kind, default, help_text in rows:
        if kind == "section":
            lines.append(f"\n{key}  {help_text}")
        else:
            lines.append(f"  {key:<{width}}  {help_text} [{kind}; default {default}]")
    return "\n".join(lines).lstrip("\n")
