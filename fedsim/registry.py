"""One registry for every extension point: allocation schemes, radio models and model families.

A ``Registry`` holds objects of one *kind* under string keys (an object's ``name``, or several keys such
as a model family's model types). A reference ``ref`` is resolved in this order:

1. a registered key (the built-ins are loaded on first use from the ``builtins`` loader);
2. an import path ``"package.module:attribute"`` (a class, instantiated without arguments, or an object);
3. the name of a package entry point in the registry's group (pyproject:
   ``[project.entry-points."fedsim.schemes"] mine = "mypkg.alloc:MyScheme"``).

Every error is one ``InputError`` line naming the kind, the reference and what is allowed. Built-in keys
listed as ``protected`` can be neither replaced nor removed (their results are the reference).

Objects registered at run time live in this process only. ``export`` and ``install`` carry them to worker
processes that start fresh (spawn, Ray): an importable object travels by reference (its module and class,
like pickle), one defined in ``__main__`` or inside a function cannot, and using it there is a one-line
error saying so.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pickle
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from fedsim.errors import InputError

# Modules that moved when the layers were drawn (old path -> new): import paths that scenario files and
# users wrote before keep resolving, without the old package importing the new one.
MOVED_MODULES = {"fedsim.radio.proxy": "fedsim.optimize.proxy"}

T = TypeVar("T")
NAME = re.compile(r"^[A-Za-z0-9_.+-]{1,40}$")
NAME_RULE = "[A-Za-z0-9_.+-]{1,40}"


def protocol_check(kind: str, method: str, signature: str) -> Callable[[object, str], object]:
    """A check for objects with ``name``, ``description`` and a callable ``method`` (schemes, radios)."""

    def check(obj: object, where: str) -> object:
        missing = [a for a in ("name", "description", method) if not hasattr(obj, a)]
        if missing or not callable(getattr(obj, method)):
            raise InputError(
                f"{where}: not a {kind} (needs name, description and {signature}; missing "
                f"{', '.join(missing) or 'a callable ' + method})"
            )
        if not isinstance(obj.description, str) or not obj.description.strip():
            raise InputError(f"{where}: {kind} {obj.name!r} needs a description (what it does)")
        return obj

    return check


@dataclass(frozen=True)
class Export:
    """One run-time registration as it travels to a worker process.

    Attributes:
        kind: the registry's kind; home: the module that owns the registry (imported by the worker).
        key: the key it was registered under; payload: the pickled object (by reference), or None when
            it cannot travel; reason: why not (e.g. "it is defined in __main__").
    """

    kind: str
    home: str
    key: str
    payload: bytes | None
    reason: str = ""


_ALL: dict[str, Registry] = {}  # every registry created, by kind


class Registry(Generic[T]):
    """Objects of one kind by key, resolvable by key, import path or entry point (module docstring).

    Args:
        kind: what an entry is, in messages ("scheme", "radio model", "family adapter").
        check: ``check(obj, where) -> obj`` raises InputError (prefixed with ``where``) unless ``obj`` is a
            valid entry; classes are instantiated without arguments before it is called.
        home: the module that creates the registry (workers import it to find the registry).
        builtins: called once, on first use, for the built-in entries (lazily: they may import heavy code).
        protected: keys that can be neither replaced nor removed.
        entry_point_group: the package entry-point group searched for unknown keys (None: none).
        keys: an entry's keys (default ``(entry.name,)``); key_label: what a key is, in messages.
    """

    def __init__(
        self,
        kind: str,
        *,
        check: Callable[[object, str], T],
        home: str,
        builtins: Callable[[], Iterable[T]] | None = None,
        protected: tuple[str, ...] = (),
        entry_point_group: str | None = None,
        keys: Callable[[T], tuple[str, ...]] = lambda entry: (entry.name,),
        key_label: str = "name",
    ) -> None:
        self.kind, self.home = kind, home
        self.protected, self.entry_point_group = protected, entry_point_group
        self._check, self._builtins, self._keys, self.key_label = check, builtins, keys, key_label
        self._entries: dict[str, T] = {}
        self._resolved: dict[str, T] = {}  # import paths and entry points already loaded
        self._unavailable: dict[str, str] = {}  # key -> why a parent's registration could not travel
        self._loaded = builtins is None
        self._builtin_keys: set[str] = set(protected)
        _ALL[kind] = self

    # --- checking -------------------------------------------------------------------------------------

    def checked(self, obj: object, where: str) -> T:
        """``obj`` (instantiated if a class) once it is a valid entry with valid keys."""
        if isinstance(obj, type):
            try:
                obj = obj()
            except TypeError as exc:
                raise InputError(
                    f"{where}: cannot instantiate the {self.kind} class without arguments: {exc}"
                ) from None
        obj = self._check(obj, where)
        for key in self._keys(obj):
            if not isinstance(key, str) or not NAME.match(key):
                raise InputError(f"{where}: {self.kind} {self.key_label} must match {NAME_RULE}, got {key!r}")
        return obj

    # --- registering ----------------------------------------------------------------------------------

    def _ensure_builtins(self) -> None:
        if not self._loaded:
            self._loaded = True
            for entry in self._builtins():
                for key in self._keys(entry):
                    self._entries[key] = entry
                    self._builtin_keys.add(key)

    def register(self, obj, *, replace: bool = False):
        """Register an entry (or a class, instantiated without arguments) under its keys; return ``obj``.

        Usable as a class decorator. A key held by another entry raises unless ``replace``; a protected key
        always raises.
        """
        self._ensure_builtins()
        entry = self.checked(obj, f"register {self.kind} {obj!r}")
        keys = self._keys(entry)
        taken = [
            k
            for k in keys
            if k in self.protected or (k in self._entries and not replace and self._entries[k] != entry)
        ]
        if taken:
            if self.key_label == "name":
                raise InputError(f"{self.kind} {taken[0]!r} is already registered")
            raise InputError(
                f"{self.key_label}s {taken} already have a {self.kind} ({self._entries[taken[0]].name})"
            )
        for key in keys:
            self._entries[key] = entry
            self._unavailable.pop(key, None)
        return obj

    def unregister(self, key: str) -> None:
        """Remove a registered (non-protected) key, and any import path or entry point resolved to it."""
        if key in self.protected:
            raise InputError(f"the built-in {self.kind} {key!r} cannot be removed")
        self._entries.pop(key, None)
        for ref in [ref for ref, entry in self._resolved.items() if key in self._keys(entry)]:
            del self._resolved[ref]

    def registered(self) -> dict[str, T]:
        """Every registered entry by key, built-ins first."""
        self._ensure_builtins()
        return dict(self._entries)

    def loaded(self) -> list[T]:
        """Every entry this process knows: registered, then resolved from import paths and entry points."""
        return list(self.registered().values()) + list(self._resolved.values())

    # --- resolving ------------------------------------------------------------------------------------

    def _from_import_path(self, ref: str) -> T:
        module_name, _, attr = ref.partition(":")
        module_name = MOVED_MODULES.get(module_name, module_name)
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise InputError(f"{self.kind} {ref!r}: cannot import module {module_name!r}: {exc}") from None
        target = module
        for part in attr.split("."):
            if not hasattr(target, part):
                raise InputError(f"{self.kind} {ref!r}: module {module_name!r} has no attribute {attr!r}")
            target = getattr(target, part)
        return self.checked(target, f"{self.kind} {ref!r}")

    def _from_entry_point(self, ref: str) -> T | None:
        if self.entry_point_group is None:
            return None
        for ep in importlib.metadata.entry_points(group=self.entry_point_group):
            if ep.name == ref:
                try:
                    target = ep.load()
                except Exception as exc:  # a broken plug-in must name itself, whatever it raised
                    raise InputError(
                        f"{self.kind} {ref!r}: entry point {ep.value!r} failed to load: {exc}"
                    ) from None
                return self.checked(target, f"{self.kind} {ref!r} (entry point {ep.value!r})")
        return None

    def _unavailable_error(self, ref: str) -> InputError:
        return InputError(
            f"{self.kind} {ref!r} was registered in the parent process, but {self._unavailable[ref]}: a "
            f"{self.kind} used by worker processes must be importable (define it in a module, or name it "
            f"'package.module:Class')"
        )

    def find(self, ref: str) -> T | None:
        """The entry ``ref`` names (registered key, import path or entry point), or None when none does."""
        self._ensure_builtins()
        if ref in self._entries:
            return self._entries[ref]
        if ref in self._unavailable:
            raise self._unavailable_error(ref)
        if ref not in self._resolved:
            found = self._from_import_path(ref) if ":" in ref else self._from_entry_point(ref)
            if found is None:
                return None
            # an import path may name a registered entry's class again, not take another entry's key
            clash = [
                k
                for k in self._keys(found)
                if k in self._entries and type(self._entries[k]) is not type(found)
            ]
            if clash:
                raise InputError(
                    f"{self.kind} {ref!r} is called {clash[0]!r}, the name of a registered {self.kind}"
                )
            self._resolved[ref] = found
        return self._resolved[ref]

    def get(self, ref) -> T:
        """The entry ``ref`` names: an object (checked), a registered key, ``"pkg.mod:attr"`` or an entry point.

        Raises InputError naming the reference and what is allowed.
        """
        if not isinstance(ref, str):
            return self.checked(ref, f"{self.kind} {ref!r}")
        found = self.find(ref)
        if found is None:
            group = (
                f", or an entry point in the group {self.entry_point_group!r}"
                if self.entry_point_group
                else ""
            )
            raise InputError(
                f"unknown {self.kind} {ref!r}: give a registered {self.key_label} ({', '.join(self._entries)}), "
                f"an import path 'package.module:Class'{group}"
            )
        return found

    # --- carrying run-time registrations to worker processes -----------------------------------------

    def export(self) -> list[Export]:
        """The entries registered at run time (not built-in), each pickled by reference when it can travel."""
        if not self._loaded:  # nothing was registered yet (registering loads the built-ins first)
            return []
        out = []
        for key, entry in self._entries.items():
            if key in self._builtin_keys:
                continue
            cls = type(entry)
            where = f"{cls.__module__}.{cls.__qualname__}"
            if cls.__module__ in ("__main__", "__mp_main__"):
                out.append(
                    Export(self.kind, self.home, key, None, f"its class {where} is defined in __main__")
                )
            elif "<locals>" in cls.__qualname__:
                out.append(
                    Export(self.kind, self.home, key, None, f"its class {where} is defined in a function")
                )
            else:
                try:
                    out.append(Export(self.kind, self.home, key, pickle.dumps(entry)))
                except Exception as exc:  # anything unpicklable inside the object
                    out.append(Export(self.kind, self.home, key, None, f"it cannot be pickled ({exc})"))
        return out

    def install(self, exports: Iterable[Export]) -> None:
        """Register a parent's exports here (this worker's own registrations, e.g. after fork, are kept)."""
        self._ensure_builtins()
        for item in exports:
            if item.key in self._entries:
                continue
            if item.payload is None:
                self._unavailable[item.key] = item.reason
                continue
            entry = pickle.loads(item.payload)
            for key in self._keys(entry):
                self._entries.setdefault(key, entry)


def export_all() -> list[Export]:
    """The run-time registrations of every registry in this process (see ``Registry.export``)."""
    return [item for registry in list(_ALL.values()) for item in registry.export()]


def install_all(exports: Iterable[Export]) -> None:
    """Install a parent's ``export_all()`` in this (worker) process, importing each registry's module."""
    for item in exports:
        importlib.import_module(item.home)
        _ALL[item.kind].install([item])
