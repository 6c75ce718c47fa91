"""The registry of radio models (a ``fedsim.registry.Registry``, like the scheme registry).

A scenario's ``[radio] model`` names a radio model in one of three ways, tried in this order:

1. a registered name (``register_radio``): the built-ins ``"paper"`` and ``"nr"``;
2. an import path ``"package.module:attribute"`` (a class, instantiated without arguments, or an object);
3. the name of a package entry point in the group ``fedsim.radios``.

A radio model is any object with ``name``, ``description`` and ``draw_drop(system, radio, rng) -> Drop``
(``fedsim.core.link.RadioModel``).
"""

from __future__ import annotations

from fedsim.registry import Registry, protocol_check

ENTRY_POINT_GROUP = "fedsim.radios"
BUILTIN_RADIOS = ("paper", "nr")


def _builtins() -> tuple:
    from fedsim.radio.nr import NRRadio
    from fedsim.radio.paper import PaperRadio

    return PaperRadio(), NRRadio()


RADIO_REGISTRY = Registry(
    "radio model",
    check=protocol_check("radio model", "draw_drop", "draw_drop(system, radio, rng)"),
    home=__name__,
    builtins=_builtins,
    protected=BUILTIN_RADIOS,
    entry_point_group=ENTRY_POINT_GROUP,
)


def register_radio(radio, *, replace: bool = False):
    """Register a radio model (or a class, instantiated without arguments) under its ``name``.

    Usable as a class decorator; returns its argument. The built-in names can never be replaced.
    """
    return RADIO_REGISTRY.register(radio, replace=replace)


def unregister_radio(name: str) -> None:
    """Remove a registered (non-built-in) radio model."""
    RADIO_REGISTRY.unregister(name)


def registered_radios() -> dict[str, object]:
    """Every registered radio model by name, built-ins first."""
    return RADIO_REGISTRY.registered()


def get_radio(ref):
    """The radio model named by ``ref``: an object, a registered name, ``"pkg.mod:attr"`` or an entry point."""
    return RADIO_REGISTRY.get(ref)
