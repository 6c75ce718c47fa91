"""The public API: run returns the rows and folder; one drop of a sweep, by API and by CLI
(``--point P --drop D``), equals that row of the sweep."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fedsim import api
from fedsim.cli import main

SCENARIO = """
name = "api_small"
[schemes]
names = ["proposed", "a"]
[sweep]
axes = { "system.bandwidth_main_hz" = [5e6, 20e6] }
[montecarlo]
drops = 3
base_seed = 9
timing = "engine"
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    path = folder / "small.toml"
    path.write_text(SCENARIO, encoding="utf-8")
    scenario = api.load_scenario(path, ["montecarlo.drops=3"])
    rows, out = api.run(scenario, executor="serial", out=folder / "out", figures=False)
    return path, scenario, rows, out


def test_run_returns_the_saved_rows_and_folder(swept):
    _, scenario, rows, out = swept
    assert len(rows) == 2 * 3 * 2 and set(rows["scheme"]) == {"proposed", "a"}
    pd.testing.assert_frame_equal(rows, pd.read_parquet(out / "rows.parquet"))
    assert "Mean total delay" in (out / "summary.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("scheme", ["proposed", "a"])
def test_optimize_drop_equals_the_sweep_row(swept, scheme):
    _, scenario, rows, _ = swept
    for point, drop in ((0, 0), (1, 2)):
        row = rows[(rows["point"] == point) & (rows["drop"] == drop) & (rows["scheme"] == scheme)].iloc[0]
        result = api.optimize_drop(scenario, point=point, drop=drop, scheme=scheme)
        assert result.delays.total_s == row["analytic_total_s"]
        assert json.dumps([int(c) for c in result.allocation.cuts]) == row["cuts"]
        _, sim = api.simulate_drop(scenario, point=point, drop=drop, scheme=scheme)
        assert sim.total_s == row["total_s"]
    drop = api.draw(scenario, point=1, drop=2)
    np.testing.assert_array_equal(drop.positions_m, api.problem(scenario, point=1, drop=2).drop.positions_m)


def test_cli_point_drop_reproduces_the_sweep_row(swept, capsys):
    path, _, rows, _ = swept
    row = rows[(rows["point"] == 1) & (rows["drop"] == 2) & (rows["scheme"] == "a")].iloc[0]
    assert main(["optimize", str(path), "--point", "1", "--drop", "2", "--scheme", "a", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["point"] == 1 and record["drop"] == 2 and record["system"]["bandwidth_main_hz"] == 20e6
    assert record["delays"]["total_s"] == row["analytic_total_s"]
    assert main(["simulate", str(path), "--point", "1", "--drop", "2", "--scheme", "a", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["engine"]["total_s"] == row["total_s"]
    assert main(["optimize", str(path), "--point", "1", "--drop", "2"]) == 0
    assert "drop point 1 drop 2: K=5" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--seed", "3"], "--seed: with --point/--drop the settings come from SCENARIO"),
        (["--num-clients", "3"], "--num-clients: with --point/--drop"),
        (["--point", "5"], "point must be an integer in 0..1"),
    ],
)
def test_cli_point_drop_errors(swept, capsys, extra, match):
    path = swept[0]
    assert main(["optimize", str(path), "--drop", "1", *extra]) == 2
    assert match in capsys.readouterr().err


def test_point_drop_needs_a_scenario(capsys):
    assert main(["optimize", "--drop", "1"]) == 2
    assert "--point/--drop need a SCENARIO" in capsys.readouterr().err


def test_build_workload_is_the_sweeps_workload(swept):
    from fedsim.experiments.montecarlo.tasks import workload_of

    scenario = swept[1]
    w = api.build_workload("gpt2", seq_len=512, bits=32)
    ref = workload_of(scenario)
    np.testing.assert_array_equal(w.fwd_flops, ref.fwd_flops)
    np.testing.assert_array_equal(w.act_bits, ref.act_bits)
    with pytest.raises(api.InputError, match="seq_len"):
        api.build_workload("gpt2", seq_len=0)
