"""Scenario loading: defaults, shipped files, --set overrides, one-line errors, a hypothesis fuzz."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedsim.cli import main
from fedsim.core.system import SystemParams
from fedsim.errors import InputError
from fedsim.scenario import apply_overrides, load_scenario, parse_override, scenario_from_dict
from fedsim.scenario.dump import to_toml
from fedsim.scenario.load import read_toml
from fedsim.scenario.model import SPEC_PROPOSED_ROUNDS, Scenario
from fedsim.scenario.points import sweep_points

SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "scenarios").glob("*.toml"))


def test_defaults_are_the_spec_values():
    s = scenario_from_dict({"name": "x"})
    assert s.system == SystemParams()
    assert s.training.inline_rounds() == SPEC_PROPOSED_ROUNDS
    assert (s.training.batch_size, s.training.local_iterations, s.montecarlo.drops) == (16, 10, 100)
    assert s.schemes.names == ("proposed", "a", "b", "c", "d")


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenarios_validate(path):
    s = load_scenario(path)
    assert s.name == path.stem
    assert len(sweep_points(s.sweep.axes, s.sweep.mode)) >= 1


def test_shipped_set_is_complete():
    names = {p.stem for p in SCENARIOS}
    assert {
        "quickstart",
        "fig5_bandwidth",
        "fig6_client_flops",
        "fig7_server_compute",
        "fig8_power",
        "table4_convergence",
        "montecarlo_placement",
    } <= names


@pytest.mark.parametrize(
    "text, key, value",
    [
        ("system.p_max_w=0.1", "system.p_max_w", 0.1),
        ("system.bandwidth_main_hz=1e6", "system.bandwidth_main_hz", 1e6),
        ("montecarlo.drops=7", "montecarlo.drops", 7),
        ("system.fading=true", "system.fading", True),
        ("schemes.names=['proposed', 'a']", "schemes.names", ["proposed", "a"]),
        ("model.id=gpt2-medium", "model.id", "gpt2-medium"),
        ('model.id = "gpt2"', "model.id", "gpt2"),
    ],
)
def test_parse_override_reads_toml_values(text, key, value):
    assert parse_override(text) == (key, value)


@pytest.mark.parametrize("text", ["no_equals_sign", "=3", ""])
def test_parse_override_rejects_malformed(text):
    with pytest.raises(InputError, match="KEY=VALUE"):
        parse_override(text)


def test_overrides_go_through_validation():
    fig5 = SCENARIOS[[p.stem for p in SCENARIOS].index("fig5_bandwidth")]
    assert load_scenario(fig5, ["montecarlo.drops=3", "system.p_max_w=0.1"]).system.p_max_w == 0.1
    with pytest.raises(InputError, match=r"system\.p_max_w: Input should be greater than 0"):
        load_scenario(fig5, ["system.p_max_w=-1"])
    with pytest.raises(InputError, match=r"system\.nope: unknown key \(allowed: .*p_max_w"):
        load_scenario(fig5, ["system.nope=1"])
    with pytest.raises(InputError, match=r"montecarlo\.drops"):
        load_scenario(fig5, ["montecarlo.drops=many"])
    with pytest.raises(InputError, match=r"name: is a value, not a table"):
        load_scenario(fig5, ["name.x=1"])


def test_every_sweep_point_is_validated():
    with pytest.raises(InputError, match=r"sweep point 2 \(system\.num_clients=0\)"):
        scenario_from_dict({"name": "x", "sweep": {"axes": {"system.num_clients": [2, 3, 0]}}})
    with pytest.raises(InputError, match="zip mode needs axes of equal length"):
        scenario_from_dict(
            {
                "name": "x",
                "sweep": {"mode": "zip", "axes": {"system.p_max_w": [0.1], "system.radius_m": [1.0, 2.0]}},
            }
        )


def test_sweep_points_product_and_zip():
    axes = {"a.x": [1, 2], "a.y": [3, 4]}
    assert sweep_points(axes, "product") == [
        {"a.x": 1, "a.y": 3},
        {"a.x": 1, "a.y": 4},
        {"a.x": 2, "a.y": 3},
        {"a.x": 2, "a.y": 4},
    ]
    assert sweep_points(axes, "zip") == [{"a.x": 1, "a.y": 3}, {"a.x": 2, "a.y": 4}]
    assert sweep_points({}, "product") == [{}]


def test_records_resolve_against_the_scenario_folder(tmp_path):
    (tmp_path / "s.toml").write_text('name = "r"\n[training]\nrecords = ["recs/a.json"]\n')
    s = load_scenario(tmp_path / "s.toml")
    assert s.training.records == (str((tmp_path / "recs" / "a.json").resolve()),)


def test_inline_rounds_and_records_are_exclusive():
    with pytest.raises(InputError, match="either rounds_by_rank or records"):
        scenario_from_dict({"name": "x", "training": {"records": ["a.json"], "rounds_by_rank": {"1": 10}}})
    with pytest.raises(InputError, match=r"ranks \[3\] have no E\(r\)"):
        scenario_from_dict({"name": "x", "training": {"ranks": [1, 3]}})


def test_resolved_toml_round_trips():
    s = load_scenario(SCENARIOS[0])
    assert scenario_from_dict(tomllib.loads(to_toml(s.model_dump(mode="json")))) == s


def test_engine_round_timing_needs_a_deterministic_engine():
    with pytest.raises(InputError, match="engine_round"):
        scenario_from_dict(
            {"name": "x", "montecarlo": {"timing": "engine_round"}, "engine": {"failure_prob": 0.1}}
        )


def test_cli_bad_scenario_exits_2_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[system]\nradius_m = -5\n')
    out = tmp_path / "out"
    assert main(["run", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "system.radius_m" in err[0]
    assert not out.exists()
    assert main(["run", str(tmp_path / "missing.toml"), "--out", str(out)]) == 2
    assert main(["validate", str(bad)]) == 2
    assert not out.exists()


def test_cli_validate_prints_resolved(capsys):
    assert main(["validate", str(SCENARIOS[0]), "--set", "montecarlo.drops=3"]) == 0
    text = capsys.readouterr().out
    assert "drops = 3" in text and "# OK:" in text


# --- fuzz: random keys, types and values give a Scenario or one InputError, never a traceback ---
KNOWN = [
    "name",
    "system",
    "model",
    "training",
    "schemes",
    "engine",
    "sweep",
    "axes",
    "montecarlo",
    "live",
    "outputs",
    "drops",
    "base_seed",
    "p_max_w",
    "num_clients",
    "rounds_by_rank",
    "records",
    "ranks",
    "names",
    "mode",
    "timing",
    "figures",
    "formats",
    "id",
    "seq_len",
    "training",
    "enabled",
    "1",
    "system.p_max_w",
    "system.num_clients",
    "fading_every_round",
    "failure_prob",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.sampled_from(["proposed", "gpt2", "zip", "engine_round", "x"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KNOWN), st.text(max_size=6)), inner, max_size=4),
    ),
    max_leaves=12,
)
tables = st.dictionaries(st.one_of(st.sampled_from(KNOWN), st.text(max_size=6)), values, max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=tables, named=st.booleans())
def test_fuzz_scenario_tables(data, named):
    if named:
        data = {**data, "name": "fuzz"}
    try:
        assert isinstance(scenario_from_dict(data), Scenario)
    except InputError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=150, deadline=None)
@given(
    overrides=st.lists(
        st.one_of(
            st.text(max_size=30),
            st.builds(
                lambda k, v: f"{k}={v}",
                st.sampled_from(
                    KNOWN
                    + [
                        "system.p_max_w",
                        "sweep.axes",
                        "montecarlo.drops",
                        "training.rounds_by_rank.2",
                        "engine.x",
                    ]
                ),
                st.text(max_size=12),
            ),
        ),
        max_size=3,
    )
)
def test_fuzz_overrides(overrides):
    try:
        scenario_from_dict(apply_overrides({"name": "fuzz"}, overrides))
    except InputError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=80))
def test_fuzz_toml_text(text, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "s.toml"
    path.write_text(text, encoding="utf-8")
    try:
        load_scenario(path)
    except InputError as exc:
        assert "\n" not in str(exc)
    try:
        read_toml(path)
    except InputError:
        pass


def test_cli_point_that_cannot_be_built_exits_2_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "k.toml"
    bad.write_text('name = "k"\n[montecarlo]\ndrops = 1\n[sweep.axes]\n"system.num_clients" = [5, 30]\n')
    out = tmp_path / "out"
    assert main(["run", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "sweep point 1 (system.num_clients=30)" in err and "subchannels" in err
    assert not out.exists()
    unknown = tmp_path / "m.toml"
    unknown.write_text('name = "m"\n[model]\nid = "no-such-model"\n')
    assert main(["run", str(unknown), "--out", str(out)]) == 2
    assert not out.exists()


def test_validate_keys_lists_every_field_with_help(capsys):
    from fedsim.scenario.describe import describe

    assert main(["validate", "--keys"]) == 0
    text = capsys.readouterr().out
    keys = [row[0] for row in describe()]
    assert "system.p_max_w" in keys and "montecarlo.timing" in keys and "[live.training]" in keys
    assert all(row[3] for row in describe()), "every key carries help text"
    assert "per-client transmit power cap" in text
    assert main(["validate"]) == 2


def test_a_misspelt_section_is_reported_before_a_missing_field(tmp_path):
    # Prepare: both an unknown section and no name
    path = tmp_path / "s.toml"
    path.write_text("[sytem]\nnum_clients = 3\n")
    # Execute / Assert: the message names the misspelt key first and lists the allowed sections
    with pytest.raises(InputError, match=r"sytem: unknown key \(allowed: .*system.*\) \[and 1 more\]"):
        load_scenario(path)
