"""Command-line options generated from a pydantic model's fields (help text = field description).

``add_model_options(group, Model, prefix)`` adds ``--field-name`` per field (bools as
``--x/--no-x``), ``model_from_args(args, Model, prefix, base)`` builds the model from the options the
user gave on top of ``base``; a validation error becomes one InputError line naming the option.
"""

from __future__ import annotations

import argparse
import types
import typing

from pydantic import BaseModel, ValidationError

from fedsim.errors import InputError


def flag(name: str) -> str:
    """``field_name`` -> ``--field-name``."""
    return "--" + name.replace("_", "-")


def _scalar_type(annotation) -> type:
    """The scalar type of a field annotation, unwrapping ``X | None``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else str
    return annotation if annotation in (bool, int, float, str) else str


def add_model_options(group, model: type[BaseModel], prefix: str) -> None:
    """One option per field of ``model``; parsed values land in ``args.<prefix>_<field>`` (None = not given)."""
    for name, field in model.model_fields.items():
        kind = _scalar_type(field.annotation)
        default = "none" if field.default is None else field.default
        text = f"{field.description} (default {default})"
        if kind is bool:
            group.add_argument(
                flag(name),
                dest=f"{prefix}_{name}",
                action=argparse.BooleanOptionalAction,
                default=None,
                help=text,
            )
        else:
            group.add_argument(
                flag(name), dest=f"{prefix}_{name}", type=kind, default=None, metavar=name.upper(), help=text
            )


def model_from_args(args, model: type[BaseModel], prefix: str, *, base: BaseModel | None = None) -> BaseModel:
    """``model`` from the given options on top of ``base`` (or the defaults), validated."""
    values = base.model_dump() if base is not None else {}
    values.update(
        {
            n: getattr(args, f"{prefix}_{n}")
            for n in model.model_fields
            if getattr(args, f"{prefix}_{n}", None) is not None
        }
    )
    try:
        return model(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = flag(str(err["loc"][0])) if err["loc"] else prefix
        raise InputError(f"{where}: {err['msg']}") from None


def add_overrides_option(parser, example: str = "system.p_max_w=0.1") -> None:
    """The repeatable ``--set KEY=VALUE`` scenario override (parsed as TOML, validated with the file)."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a scenario field, e.g. --set {example} (TOML value; repeatable)",
    )
