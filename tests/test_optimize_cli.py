"""``fedsim optimize``: human output, a JSON record consistent with the library, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedsim.cli import main
from fedsim.commands.optimize import optimize_drop, parse_rounds
from fedsim.core.system import SystemParams
from fedsim.errors import InputError


def test_human_output(capsys):
    assert main(["optimize", "--seed", "3", "--num-clients", "4"]) == 0
    out = capsys.readouterr().out
    assert "K=4" in out and "scheme proposed: status converged" in out
    assert "main subchannel owners:" in out and "total T" in out


def test_json_matches_library(capsys, gpt2_workload):
    assert main(["optimize", "--seed", "5", "--scheme", "b", "--json", "--bandwidth-main-hz", "2e7"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["scheme"] == "b" and record["system"]["bandwidth_main_hz"] == 2e7
    _, result = optimize_drop(
        SystemParams(bandwidth_main_hz=2e7),
        gpt2_workload,
        16,
        local_iterations=10,
        rounds_by_rank=parse_rounds("1,2,4,6,8", None),
        seed=5,
        scheme="b",
    )
    assert record["delays"]["total_s"] == pytest.approx(result.delays.total_s, rel=1e-12)
    assert record["problem"]["rounds_by_rank"]["8"] == 170.0
    assert len(record["problem"]["drop"]["main"]["gain"]) == 5


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--num-clients", "0"], "--num-clients"),
        (["--num-clients", "30"], "num_subchannels_main must be >= num_clients"),
        (["--ranks", "3"], "--rounds"),
        (["--ranks", "1,2", "--rounds-by-rank", "100"], "--rounds-by-rank has 1 values"),
        (["--model", "no-such-model"], "no-such-model"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, argv, match):
    assert main(["optimize", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and match in err


def test_same_seed_same_drop_for_every_scheme(gpt2_workload):
    rounds = parse_rounds("1,2,4,6,8", None)
    d1, _ = optimize_drop(
        SystemParams(),
        gpt2_workload,
        16,
        local_iterations=10,
        rounds_by_rank=rounds,
        seed=11,
        scheme="proposed",
    )
    d2, _ = optimize_drop(
        SystemParams(), gpt2_workload, 16, local_iterations=10, rounds_by_rank=rounds, seed=11, scheme="a"
    )
    np.testing.assert_array_equal(d1.positions_m, d2.positions_m)


def test_parse_rounds_rejects_garbage():
    with pytest.raises(InputError, match="--ranks"):
        parse_rounds("a,b", None)
    assert parse_rounds("2,4", "10,5") == {2: 10.0, 4: 5.0}


def test_scenario_file_and_set_override_supply_the_settings(capsys, gpt2_workload):
    from pathlib import Path

    # Prepare
    path = Path(__file__).resolve().parents[1] / "scenarios" / "fig5_bandwidth.toml"
    argv = ["optimize", str(path), "--seed", "2", "--json", "--set", "system.num_clients=3"]
    # Execute
    assert main(argv) == 0
    record = json.loads(capsys.readouterr().out)
    # Assert: the scenario's system with the override, same result as the library on those settings
    assert record["system"]["num_clients"] == 3
    _, result = optimize_drop(
        SystemParams(num_clients=3),
        gpt2_workload,
        16,
        local_iterations=10,
        rounds_by_rank=parse_rounds("1,2,4,6,8", None),
        seed=2,
    )
    assert record["delays"]["total_s"] == pytest.approx(result.delays.total_s, rel=1e-12)


def test_set_without_scenario_is_a_one_line_error(capsys):
    assert main(["optimize", "--set", "system.num_clients=3"]) == 2
    assert "--set needs a SCENARIO" in capsys.readouterr().err
