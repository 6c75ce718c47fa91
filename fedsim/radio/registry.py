"""The registry of radio models, in the style of the scheme registry (``fedsim.optimize.schemes``).

A scenario's ``[radio] model`` names a radio model in one of three ways, tried in this order:

1. a registered name (``register_radio``): the built-ins ``"paper"`` and ``"nr"``;
2. an import path ``"package.module:attribute"`` (a class, instantiated without arguments, or an object);
3. the name of a package entry point in the group ``fedsim.radios``.

A radio model is any object with ``name``, ``description`` and ``draw_drop(system, radio, rng) -> Drop``
(``fedsim.radio.base.RadioModel``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re

from fedsim.errors import InputError

ENTRY_POINT_GROUP = "fedsim.radios"
BUILTIN_RADIOS = ("paper", "nr")
_NAME = re.compile(r"^[A-Za-z0-9_.+-]{1,40}$")

_REGISTRY: dict[str, object] = {}
_RESOLVED: dict[str, object] = {}


def _checked(radio: object, where: str):
    """``radio`` (instantiated if a class) once it has a valid name, a description and ``draw_drop``."""
    if isinstance(radio, type):
        try:
            radio = radio()
        except TypeError as exc:
            raise InputError(
                f"{where}: cannot instantiate the radio class without arguments: {exc}"
            ) from None
    missing = [a for a in ("name", "description", "draw_drop") if not hasattr(radio, a)]
    if missing or not callable(radio.draw_drop):
        raise InputError(
            f"{where}: not a radio model (needs name, description and draw_drop(system, radio, rng); "
            f"missing {', '.join(missing) or 'a callable draw_drop'})"
        )
    if not isinstance(radio.name, str) or not _NAME.match(radio.name):
        raise InputError(f"{where}: radio name must match [A-Za-z0-9_.+-]{{1,40}}, got {radio.name!r}")
    return radio


def register_radio(radio, *, replace: bool = False):
    """Register a radio model (or a class, instantiated without arguments) under its ``name``.

    Usable as a class decorator; returns its argument. The built-in names can never be replaced.
    """
    obj = _checked(radio, f"register_radio({radio!r})")
    if obj.name in _REGISTRY and (not replace or obj.name in BUILTIN_RADIOS):
        raise InputError(f"radio model {obj.name!r} is already registered")
    _REGISTRY[obj.name] = obj
    return radio


def unregister_radio(name: str) -> None:
    """Remove a registered (non-built-in) radio model."""
    if name in BUILTIN_RADIOS:
        raise InputError(f"the built-in radio model {name!r} cannot be removed")
    _REGISTRY.pop(name, None)
    for ref in [ref for ref, r in _RESOLVED.items() if r.name == name]:
        del _RESOLVED[ref]


def _ensure_builtins() -> None:
    if "paper" not in _REGISTRY:
        from fedsim.radio.nr import NRRadio
        from fedsim.radio.paper import PaperRadio

        _REGISTRY["paper"], _REGISTRY["nr"] = PaperRadio(), NRRadio()


def registered_radios() -> dict[str, object]:
    """Every registered radio model by name, built-ins first."""
    _ensure_builtins()
    return dict(_REGISTRY)


def _from_import_path(ref: str):
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"radio model {ref!r}: cannot import module {module_name!r}: {exc}") from None
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise InputError(f"radio model {ref!r}: module {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    return _checked(target, f"radio model {ref!r}")


def _from_entry_point(ref: str):
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == ref:
            try:
                target = ep.load()
            except Exception as exc:  # a broken plug-in must name itself, whatever it raised
                raise InputError(
                    f"radio model {ref!r}: entry point {ep.value!r} failed to load: {exc}"
                ) from None
            return _checked(target, f"radio model {ref!r} (entry point {ep.value!r})")
    return None


def get_radio(ref):
    """The radio model named by ``ref``: an object, a registered name, ``"pkg.mod:attr"`` or an entry point."""
    if not isinstance(ref, str):
        return _checked(ref, f"radio model {ref!r}")
    _ensure_builtins()
    if ref in _REGISTRY:
        return _REGISTRY[ref]
    if ref not in _RESOLVED:
        found = _from_import_path(ref) if ":" in ref else _from_entry_point(ref)
        if found is None:
            raise InputError(
                f"unknown radio model {ref!r}: give a registered name ({', '.join(_REGISTRY)}), an import path "
                f"'package.module:Class', or an entry point in the group {ENTRY_POINT_GROUP!r}"
            )
        _RESOLVED[ref] = found
    return _RESOLVED[ref]
