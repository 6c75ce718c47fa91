"""Validation = run: whatever ``fedsim validate`` accepts, ``fedsim run``'s preflight accepts too; inf and nan
are refused by every numeric scenario field at validation."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from fedsim.cli import main
from fedsim.core.system import SystemParams
from fedsim.errors import InputError
from fedsim.experiments.montecarlo.tasks import preflight
from fedsim.scenario import scenario_from_dict
from fedsim.scenario.model import Scenario


def _models(model: type[BaseModel], seen: set) -> set:
    """Every pydantic model class reachable from ``model`` through its fields."""
    if model in seen:
        return seen
    seen.add(model)
    for field in model.model_fields.values():
        for arg in _args(field.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                _models(arg, seen)
    return seen


def _args(annotation) -> list:
    import typing

    out = [annotation]
    for arg in typing.get_args(annotation):
        out += _args(arg)
    return out


def _float_fields(model: type[BaseModel]) -> list[str]:
    return [name for name, f in model.model_fields.items() if float in _args(f.annotation)]


def test_every_scenario_model_refuses_inf_and_nan():
    models = _models(Scenario, set())
    assert SystemParams in models and len(models) >= 10
    for model in models:
        assert model.model_config.get("allow_inf_nan") is False, model.__name__


SECTIONS = {
    "system": SystemParams,
    "engine": Scenario.model_fields["engine"].annotation,
    "model": Scenario.model_fields["model"].annotation,
    "outputs": Scenario.model_fields["outputs"].annotation,
}


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize(
    "key", [f"{section}.{name}" for section, model in SECTIONS.items() for name in _float_fields(model)]
)
def test_non_finite_float_is_a_validation_error(key, value):
    section, name = key.split(".")
    with pytest.raises(InputError, match=rf"{section}\.{name}: .*finite"):
        scenario_from_dict({"name": "x", section: {name: value}})


def test_inf_from_toml_fails_validate_with_one_line(tmp_path, capsys):
    path = tmp_path / "inf.toml"
    path.write_text('name = "inf"\n[system]\nbandwidth_main_hz = inf\n')
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "system.bandwidth_main_hz" in err and "finite" in err


# Values a user (or a typo) can put into a numeric field: ordinary, extreme, subnormal, negative, non-finite.
_FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 5e-324, 1e-300, 1e-9, 1.0, 1e9, 1e300, 1.7e308, -1e300]),
    st.floats(min_value=1e-6, max_value=1e12),
)
_INTS = st.one_of(st.integers(-5, 2**40), st.sampled_from([0, 1, 2, 20, 10_000, 10_001, 2**63 - 1]))
_SYSTEM = {
    name: (_INTS if f.annotation is int else _FLOATS)
    for name, f in SystemParams.model_fields.items()
    if f.annotation in (int, float)
}
_OTHER = {
    ("model", "seq_len"): st.integers(-1, 1024),  # the context of gpt2; longer is the model's check (below)
    ("model", "bits"): st.integers(-1, 80),
    ("model", "bwd_factor"): _FLOATS,
    ("training", "batch_size"): _INTS,
    ("training", "local_iterations"): _INTS,
    ("montecarlo", "base_seed"): _INTS,
}


@st.composite
def scenario_tables(draw) -> dict:
    data: dict = {"name": "prop", "schemes": {"names": ["proposed"]}, "montecarlo": {"drops": 1}}
    for name in draw(st.lists(st.sampled_from(sorted(_SYSTEM)), max_size=6, unique=True)):
        data.setdefault("system", {})[name] = draw(_SYSTEM[name])
    for section, name in draw(st.lists(st.sampled_from(sorted(_OTHER)), max_size=3, unique=True)):
        data.setdefault(section, {})[name] = draw(_OTHER[(section, name)])
    if draw(st.booleans()):
        data["training"] = {**data.get("training", {}), "rounds_by_rank": {4: draw(_FLOATS)}, "ranks": [4]}
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario_tables())
@example(  # found by this test: numpy's normal() refused a shadowing std of -0.0, which >= 0 accepts
    {"name": "prop", "schemes": {"names": ["proposed"]}, "montecarlo": {"drops": 1},
     "system": {"bandwidth_fed_hz": 1.0, "shadowing_sigma_db": -0.0}}  # fmt: skip
)
def test_what_validation_accepts_the_run_preflight_accepts(data):
    try:
        scenario = scenario_from_dict(data)
    except InputError:
        return  # refused at validation, as it should be for what the run cannot use
    preflight(scenario)  # must not raise: not InputError, and no traceback of any kind


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    scenario_tables(),
    st.sampled_from(["gpt2", "smollm2-135m", "no-such-model"]),
    st.integers(-1, 1 << 20),
    st.sampled_from([["q", "v"], ["q"], ["c_attn"], ["nope"]]),
)
def test_fedsim_validate_exit_0_means_run_preflight_passes(tmp_path, data, model, seq_len, targets):
    from fedsim.scenario import load_scenario
    from fedsim.scenario.dump import to_toml

    data["model"] = {**data.get("model", {}), "id": model, "seq_len": seq_len, "lora_targets": targets}
    path = tmp_path / "s.toml"
    try:
        path.write_text(to_toml(data))
    except (ValueError, TypeError, OverflowError):
        return  # not expressible in TOML
    if main(["validate", str(path)]) != 0:
        return
    preflight(load_scenario(path))
