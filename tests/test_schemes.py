"""The scheme protocol and registry: built-ins through it unchanged, user schemes by import path and by
entry point in ``fedsim run``, with the same common random numbers as the built-ins."""

from __future__ import annotations

import importlib.metadata
import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from optimize_helpers import make_problem

from fedsim.cli import main
from fedsim.errors import InputError
from fedsim.experiments.harness import seeds
from fedsim.optimize import SCHEMES, Problem, evaluate, get_scheme, optimize, register_scheme
from fedsim.optimize.bcd import run_bcd
from fedsim.optimize.scheme_spec import SCHEME_SPECS
from fedsim.optimize.schemes import describe, ordered, unregister_scheme
from fedsim.scenario import scenario_from_dict

# A user's scheme module, written to a temporary folder: "mirror" copies the proposed scheme's decisions
# (so on a common drop its delay equals proposed's exactly); "lucky" draws a random cut and rank from its
# own stream with the proposed subchannels and power.
USER_MODULE = """
import numpy as np
from dataclasses import replace
from fedsim.core.allocation import uniform_ranks
from fedsim.optimize import evaluate, optimize


class Mirror:
    name = "mirror"
    description = "copies the proposed scheme's decisions; randomises nothing"

    def allocate(self, problem, rng):
        return optimize(problem, "proposed")


class Lucky:
    name = "lucky"
    description = "proposed subchannels and power; random common cut and random rank"

    def allocate(self, problem, rng):
        base = optimize(problem, "proposed").allocation
        k, j = problem.drop.num_clients, problem.workload.num_layers
        cut = int(rng.integers(1, j + 1))
        rank = int(rng.choice(problem.ranks))
        alloc = replace(base, cuts=np.full(k, cut), ranks=uniform_ranks(k, j, rank))
        return evaluate(problem, alloc, self.name, status="converged")
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    name = f"user_schemes_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_MODULE), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for scheme in ("mirror", "lucky"):
        unregister_scheme(scheme)


def _problem(seed: int = 3) -> Problem:
    return make_problem(seed, rounds={1: 240.0, 4: 180.0, 8: 170.0}, num_clients=4)


def test_builtins_register_through_the_registry_unchanged():
    # Prepare
    problem = _problem()
    # Execute / Assert: the registry's scheme gives exactly run_bcd's result for every built-in
    for name in SCHEMES:
        scheme = get_scheme(name)
        assert scheme.name == name and scheme.description
        direct = run_bcd(problem, SCHEME_SPECS[name], name, rng=np.random.default_rng(7))
        via = optimize(problem, name, rng=np.random.default_rng(7))
        assert via.delays.total_s == direct.delays.total_s
        np.testing.assert_array_equal(via.allocation.owner_main, direct.allocation.owner_main)
        np.testing.assert_array_equal(via.allocation.psd_fed_w_hz, direct.allocation.psd_fed_w_hz)
    assert "random split" in describe("c") and describe("nope") == ""


def test_unknown_and_malformed_schemes_are_input_errors(user_module):
    with pytest.raises(InputError, match="unknown scheme 'zz'"):
        get_scheme("zz")
    with pytest.raises(InputError, match="cannot import module"):
        get_scheme("no_such_module_xyz:Thing")
    with pytest.raises(InputError, match="has no attribute 'Nope'"):
        get_scheme(f"{user_module}:Nope")
    with pytest.raises(InputError, match="already registered"):
        register_scheme(get_scheme("a"))

    class Bad:
        name = "bad name!"
        description = "x"

        def allocate(self, problem, rng):
            return None

    with pytest.raises(InputError, match="scheme name must match"):
        register_scheme(Bad)
    Bad.name = "bad"
    register_scheme(Bad)
    try:
        with pytest.raises(InputError, match="must return a fedsim.optimize.Result"):
            optimize(_problem(), "bad")
    finally:
        unregister_scheme("bad")
    with pytest.raises(ValueError, match="unknown scheme 'zz'"):
        scenario_from_dict({"name": "x", "schemes": {"names": ["proposed", "zz"]}})


def test_evaluate_matches_the_proposed_result():
    problem = _problem()
    best = optimize(problem, "proposed")
    again = evaluate(problem, best.allocation, "copy")
    assert again.delays.total_s == best.delays.total_s and again.status == "optimal"
    wrong_rank = best.allocation.ranks * 0 + 2
    from dataclasses import replace

    with pytest.raises(InputError, match="rank 2, which has no E"):
        evaluate(problem, replace(best.allocation, ranks=wrong_rank), "copy")


def test_user_scheme_streams_do_not_depend_on_the_other_schemes():
    a = seeds.scheme_rng(5, 1, 2, scheme="lucky").random()
    assert a == seeds.scheme_rng(5, 1, 2, scheme="lucky").random()
    assert a != seeds.scheme_rng(5, 1, 2, scheme="mirror").random()
    assert a != seeds.scheme_rng(5, 1, 2, scheme="a").random()


SCENARIO = """
name = "mine"
[schemes]
names = {names}
[sweep]
axes = {{ "system.bandwidth_main_hz" = [5e6, 20e6] }}
[montecarlo]
drops = 3
base_seed = 4
timing = "engine_round"
"""


def _run(tmp_path: Path, names: list[str], tag: str) -> tuple[pd.DataFrame, str]:
    path = tmp_path / f"{tag}.toml"
    path.write_text(SCENARIO.format(names=json.dumps(names)), encoding="utf-8")
    out = tmp_path / tag
    code = main(["run", str(path), "--executor", "serial", "--out", str(out), "--no-progress"])
    assert code == 0
    return pd.read_parquet(out / "rows.parquet"), (out / "summary.md").read_text(encoding="utf-8")


def test_user_scheme_by_import_path_runs_in_fedsim_run(tmp_path, user_module):
    # Execute
    rows, summary = _run(tmp_path, ["proposed", "a", f"{user_module}:Mirror", f"{user_module}:Lucky"], "p")
    alone, _ = _run(tmp_path, [f"{user_module}:Lucky"], "alone")
    # Assert: rows and summary name the user schemes; the drawn drop is common to all (mirror equals
    # proposed on every drop), and lucky's own stream does not depend on the schemes beside it
    assert ordered(rows["scheme"]) == ["proposed", "a", "mirror", "lucky"]
    assert len(rows) == 2 * 3 * 4
    by = rows.set_index(["point", "drop", "scheme"])["total_s"]
    for point in (0, 1):
        for drop in range(3):
            assert by[(point, drop, "mirror")] == by[(point, drop, "proposed")]
    np.testing.assert_array_equal(
        rows.loc[rows["scheme"] == "lucky", "total_s"].to_numpy(), alone["total_s"].to_numpy()
    )
    assert (rows.loc[rows["scheme"] == "lucky", "status"] == "converged").all()
    header = next(line for line in summary.splitlines() if re.match(r"\|\s*point\s*\|", line))
    assert re.search(r"\|\s*mirror\s*\|", header) and re.search(r"\|\s*lucky\s*\|", header)
    assert (tmp_path / "p" / "figures" / "delay_vs_axis.png").exists()


def test_user_scheme_by_entry_point_runs_in_fedsim_run(tmp_path, user_module, monkeypatch):
    # Prepare: a package entry point "mirror-ep" in the group fedsim.schemes
    ep = importlib.metadata.EntryPoint(
        name="mirror-ep", value=f"{user_module}:Mirror", group="fedsim.schemes"
    )
    real = importlib.metadata.entry_points

    def fake(**params):
        if params.get("group") == "fedsim.schemes":
            return importlib.metadata.EntryPoints([ep])
        return real(**params)

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    # Execute
    rows, summary = _run(tmp_path, ["proposed", "mirror-ep"], "ep")
    # Assert
    assert ordered(rows["scheme"]) == ["proposed", "mirror"]
    mirror = rows[rows["scheme"] == "mirror"]["total_s"].to_numpy()
    np.testing.assert_array_equal(mirror, rows[rows["scheme"] == "proposed"]["total_s"].to_numpy())
    assert re.search(r"\|\s*mirror\s*\|", summary)
