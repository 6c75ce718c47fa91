"""The generic registry behind schemes, radio models and model families (``fedsim.registry``), and the
run-time registrations it carries to spawned worker processes."""

from __future__ import annotations

import importlib.metadata
import textwrap
from dataclasses import dataclass

import pandas as pd
import pytest

from fedsim import registry as reg
from fedsim.errors import InputError
from fedsim.experiments.harness import executors
from fedsim.experiments.kinds import MONTECARLO
from fedsim.optimize.schemes import SCHEME_REGISTRY, register_scheme, unregister_scheme
from fedsim.registry import Registry, protocol_check
from fedsim.scenario import scenario_from_dict

PLUGIN = """
class Widget:
    name = "widget"
    description = "a widget from a user module"

    def spin(self, speed):
        return 2 * speed


class Sized:
    def __init__(self, size):
        self.name, self.description, self.size = f"sized{size}", f"a widget of size {size}", size

    def spin(self, speed):
        return self.size * speed


READY = Sized(3)
"""


class Gear:
    name = "gear"
    description = "a built-in gear"

    def spin(self, speed):
        return speed


@dataclass(frozen=True)
class Family:
    name: str
    types: tuple[str, ...]


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    name = f"widgets_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(reg, "_ALL", dict(reg._ALL))  # the test registries below stay out of export_all
    return name


def _widgets() -> Registry:
    return Registry(
        "widget",
        check=protocol_check("widget", "spin", "spin(speed)"),
        home=__name__,
        builtins=lambda: (Gear(),),
        protected=("gear",),
        entry_point_group="fedsim.widgets",
    )


def _families() -> Registry:
    def check(obj, where):
        if not isinstance(obj, Family):
            raise InputError(f"{where}: not a family")
        return obj

    return Registry("family", check=check, home=__name__, keys=lambda f: f.types, key_label="model type")


def _one_line_error(call, match: str) -> str:
    with pytest.raises(InputError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
    return str(info.value)


def test_builtins_load_lazily_and_are_protected(plugin):
    # Prepare
    loads = []
    widgets = Registry(
        "widget",
        check=protocol_check("widget", "spin", "spin(speed)"),
        home=__name__,
        builtins=lambda: loads.append(1) or (Gear(),),
        protected=("gear",),
    )
    # Execute / Assert: nothing loads until first use, and then once
    assert loads == []
    assert list(widgets.registered()) == ["gear"] and widgets.get("gear").spin(5) == 5
    widgets.registered()
    assert loads == [1]
    _one_line_error(lambda: widgets.register(Gear, replace=True), "widget 'gear' is already registered")
    _one_line_error(lambda: widgets.unregister("gear"), "the built-in widget 'gear' cannot be removed")


def test_register_resolve_and_unregister(plugin):
    widgets = _widgets()
    module = __import__(plugin)
    # a class registers as its instance; the class is returned (decorator use)
    assert widgets.register(module.Widget) is module.Widget
    assert widgets.get("widget").spin(2) == 4
    _one_line_error(lambda: widgets.register(module.Widget), "widget 'widget' is already registered")
    widgets.register(module.Widget, replace=True)
    # import paths: a class (instantiated) or an object, cached once resolved
    ready = widgets.get(f"{plugin}:READY")
    assert ready.size == 3 and widgets.get(f"{plugin}:READY") is ready
    assert [e.name for e in widgets.loaded()] == ["gear", "widget", "sized3"]
    widgets.unregister("sized3")  # also forgets the import path resolved to it
    assert [e.name for e in widgets.loaded()] == ["gear", "widget"]
    widgets.unregister("widget")
    assert widgets.find("widget") is None


def test_errors_are_one_line_naming_the_kind_and_what_is_allowed(plugin):
    widgets = _widgets()
    message = _one_line_error(lambda: widgets.get("nope"), "unknown widget 'nope'")
    assert "registered name (gear)" in message and "'package.module:Class'" in message
    assert "entry point in the group 'fedsim.widgets'" in message
    _one_line_error(
        lambda: widgets.get("no_such_mod_xyz:W"), "widget 'no_such_mod_xyz:W': cannot import module"
    )
    _one_line_error(lambda: widgets.get(f"{plugin}:Nope"), "has no attribute 'Nope'")
    _one_line_error(
        lambda: widgets.get(f"{plugin}:Sized"), "cannot instantiate the widget class without arguments"
    )
    _one_line_error(lambda: widgets.get("fedsim.errors:InputError"), "cannot instantiate|not a widget")
    _one_line_error(
        lambda: widgets.get(object()), r"not a widget \(needs name, description and spin\(speed\)"
    )

    class BadName(Gear):
        name = "two words"

    _one_line_error(lambda: widgets.register(BadName), r"widget name must match \[A-Za-z0-9_.\+-\]\{1,40\}")

    class Undescribed(Gear):
        name, description = "blank", "  "

    _one_line_error(lambda: widgets.register(Undescribed), "widget 'blank' needs a description")

    class Impostor(Gear):  # another class calling itself by a registered name
        pass

    module = __import__(plugin)
    module.Impostor = Impostor
    _one_line_error(
        lambda: widgets.get(f"{plugin}:Impostor"), "is called 'gear', the name of a registered widget"
    )


def test_entry_points_resolve_and_name_themselves_when_broken(plugin, monkeypatch):
    # Prepare: two entry points in the group, one broken
    eps = importlib.metadata.EntryPoints(
        [
            importlib.metadata.EntryPoint(name="ep-widget", value=f"{plugin}:Widget", group="fedsim.widgets"),
            importlib.metadata.EntryPoint(name="broken", value=f"{plugin}:Missing", group="fedsim.widgets"),
        ]
    )
    real = importlib.metadata.entry_points
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda **p: eps if p.get("group") == "fedsim.widgets" else real(**p),
    )
    widgets = _widgets()
    # Execute / Assert
    assert widgets.get("ep-widget").name == "widget"
    _one_line_error(lambda: widgets.get("broken"), "widget 'broken': entry point .* failed to load")


def test_a_registry_with_several_keys_per_entry(plugin):
    families = _families()
    neo = Family("neo", ("gpt_neo", "gpt_neox"))
    families.register(neo)
    assert families.find("gpt_neox") is neo and families.find("llama") is None
    families.register(Family("neo", ("gpt_neo", "gpt_neox")))  # an equal entry again: no conflict
    message = _one_line_error(
        lambda: families.register(Family("other", ("gpt_neo",))), r"model types \['gpt_neo'\] already have"
    )
    assert message == "model types ['gpt_neo'] already have a family (neo)"
    families.register(Family("other", ("gpt_neo",)), replace=True)
    assert families.find("gpt_neo").name == "other" and families.find("gpt_neox") == neo
    _one_line_error(lambda: families.register("gpt2"), "not a family")


def test_export_carries_importable_entries_and_names_the_rest(plugin):
    # Prepare: a parent registry with an importable class, an object with state, and a local class
    module = __import__(plugin)
    parent = _widgets()

    class Local(Gear):
        name = "local"

    parent.register(module.Widget)
    parent.register(module.Sized(7))
    parent.register(Local)
    # Execute: a fresh registry of the same kind (a spawned worker's) installs the parent's exports
    exports = parent.export()
    child = _widgets()
    child.install(exports)
    # Assert
    assert [e.key for e in exports] == ["widget", "sized7", "local"]
    assert child.get("widget").spin(3) == 6 and child.get("sized7").spin(2) == 14
    message = _one_line_error(lambda: child.get("local"), "must be importable")
    assert message.startswith("widget 'local' was registered in the parent process, but its class")
    assert "is defined in a function" in message
    Local.__module__, Local.__qualname__ = "__main__", "Local"
    assert "defined in __main__" in parent.export()[-1].reason
    # a worker's own registration (fork) wins over the export
    again = _widgets()
    again.register(Local)
    again.install(exports)
    assert again.get("local").name == "local"


# --- spawned sweep workers see schemes registered at run time -----------------------------------------

SCENARIO = {
    "name": "spawned",
    "sweep": {"axes": {"system.bandwidth_main_hz": [5e6, 20e6]}},
    "montecarlo": {"drops": 1, "base_seed": 4, "timing": "engine_round"},
}
SCHEME_MODULE = """
from fedsim.optimize import optimize


class Copycat:
    name = "copycat"
    description = "the proposed scheme's decisions under another name; randomises nothing"

    def allocate(self, problem, rng):
        return optimize(problem, "proposed")
"""


def _rows(done) -> pd.DataFrame:
    rows = [row for _, _, unit in sorted(done, key=lambda d: d[:2]) for row in unit]
    return pd.DataFrame(rows)


def test_a_runtime_scheme_reaches_spawned_workers(tmp_path, monkeypatch):
    # Prepare: a user module registered by name in this (parent) process only
    name = f"copycat_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(SCHEME_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    register_scheme(__import__(name).Copycat)
    try:
        scenario = scenario_from_dict({**SCENARIO, "schemes": {"names": ["proposed", "copycat"]}})
        units = [(0, 0), (1, 0)]
        # Execute
        spawned = _rows(executors.run_process(scenario, units, workers=1, kind=MONTECARLO, start_method="spawn"))
        serial = _rows(executors.run_serial(scenario, units, kind=MONTECARLO))
    finally:
        unregister_scheme("copycat")
    # Assert: the same rows, and copycat's delays are proposed's on the common drop
    pd.testing.assert_frame_equal(spawned, serial)
    by = spawned.set_index(["point", "scheme"])["total_s"]
    assert by[(0, "copycat")] == by[(0, "proposed")] and by[(1, "copycat")] == by[(1, "proposed")]


def test_a_scheme_defined_in_a_function_is_a_one_line_error_in_spawned_workers():
    class Inline:
        name = "inline"
        description = "defined inside a test function, so no worker can import it"

        def allocate(self, problem, rng):
            raise AssertionError("never runs")

    register_scheme(Inline)
    try:
        scenario = scenario_from_dict({**SCENARIO, "schemes": {"names": ["inline"]}})
        assert SCHEME_REGISTRY.export()[-1].payload is None
        with pytest.raises(InputError, match="must be importable") as info:
            list(executors.run_process(scenario, [(0, 0)], workers=1, kind=MONTECARLO, start_method="spawn"))
    finally:
        unregister_scheme("inline")
    assert "\n" not in str(info.value) and "scheme 'inline' was registered in the parent" in str(info.value)
