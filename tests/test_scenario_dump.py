"""Scenario -> TOML (``fedsim.scenario.dump``): what is written reads back as the same data."""

from __future__ import annotations

import math

import pytest
import tomllib
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsim.scenario import load_scenario, scenario_from_dict
from fedsim.scenario.dump import to_toml, toml_ready

_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | _TEXT
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(_TEXT | st.integers(0, 64), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_TEXT, _VALUES, max_size=5))
def test_dump_then_load_gives_the_same_data(data):
    # Execute
    back = tomllib.loads(to_toml(data))
    # Assert: equal once None is left out, keys are strings and tuples lists
    assert back == toml_ready(data)


def test_what_toml_cannot_hold():
    assert tomllib.loads(to_toml({"a": math.inf, "b": -math.inf})) == {"a": math.inf, "b": -math.inf}
    assert math.isnan(tomllib.loads(to_toml({"x": math.nan}))["x"])
    assert to_toml({"rounds": {1: 240.0, 8: None}}) == "[rounds]\n1 = 240.0"
    with pytest.raises(TypeError):
        to_toml({"x": object()})


def test_every_shipped_scenario_round_trips():
    from pathlib import Path

    for path in sorted(Path("scenarios").glob("*.toml")):
        scenario = load_scenario(path)
        assert scenario_from_dict(tomllib.loads(to_toml(scenario.model_dump(mode="json")))) == scenario, path
