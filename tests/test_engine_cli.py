"""``fedsim simulate``: optimise one drop, run the engine, print or emit JSON."""

from __future__ import annotations

import json

import pytest

from fedsim.cli import main

SMALL = [
    "--seed",
    "3",
    "--num-clients",
    "3",
    "--ranks",
    "1,4",
    "--rounds-by-rank",
    "6,5",
    "--local-iterations",
    "2",
]


def _json(capsys, *extra: str) -> dict:
    assert main(["simulate", *SMALL, "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_paper_mode_engine_total_equals_the_analytical_total(capsys):
    record = _json(capsys)
    eng = record["engine"]
    assert eng["total_s"] == pytest.approx(eng["analytic_total_s"], rel=1e-9)
    assert eng["rounds_completed"] == len(eng["round_rows"]) == int(record["delays"]["rounds"] + 0.999)
    assert {p["phase"] for p in eng["phases"]} >= {
        "forward",
        "upload_activation",
        "server_forward",
        "backward",
    }


def test_engine_switches_change_the_clock(capsys):
    base = _json(capsys, "--rounds", "2")["engine"]["total_s"]
    slower = _json(capsys, "--rounds", "2", "--download", "--downlink-bandwidth-hz", "1e6")["engine"]
    assert slower["total_s"] > base
    assert any(p["phase"] == "download_gradient" for p in slower["phases"])


def test_text_output_names_the_engine_total(capsys):
    assert main(["simulate", *SMALL, "--rounds", "1", "--trace"]) == 0
    out = capsys.readouterr().out
    assert "engine total" in out and "ratio 1.000000" in out and "upload_activation" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--failure-prob", "2"], "--failure-prob"),
        (["--set", "engine.download=true"], "--set needs a SCENARIO"),
        (["--rounds", "-1"], "--rounds"),
    ],
)
def test_bad_options_exit_2_with_one_line(capsys, argv, message):
    assert main(["simulate", *SMALL, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_scenario_file_supplies_the_settings(capsys):
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.toml"
    argv = ["simulate", str(path), "--seed", "0", "--rounds", "1", "--json", "--set", "engine.download=true"]
    assert main(argv) == 0
    eng = json.loads(capsys.readouterr().out)["engine"]
    assert eng["total_s"] > eng["analytic_total_s"]  # the download is charged, the model neglects it


def test_a_sweep_drop_is_traced_when_a_trace_csv_is_asked_for(tmp_path, capsys):
    # Prepare: fedsim run's scenarios leave the trace off (fast sweeps); --trace-csv asks for one
    from pathlib import Path

    import pandas as pd

    path = Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.toml"
    csv = tmp_path / "trace.csv"
    argv = ["simulate", str(path), "--point", "0", "--drop", "1", "--rounds", "1", "--json"]
    # Execute
    assert main([*argv, "--trace-csv", str(csv)]) == 0
    traced = json.loads(capsys.readouterr().out)
    assert main(argv) == 0
    plain = json.loads(capsys.readouterr().out)
    # Assert: rows for every charged event, the same clock to rounding, and the JSON says which ran
    trace = pd.read_csv(csv)
    assert {"forward", "upload_activation", "server_forward", "backward", "upload_lora"} <= set(trace["phase"])
    assert traced["engine_config"]["trace"] and not plain["engine_config"]["trace"]
    assert traced["engine"]["total_s"] == pytest.approx(plain["engine"]["total_s"], rel=1e-9)
    assert trace["end_s"].max() == pytest.approx(traced["engine"]["total_s"], rel=1e-9)
