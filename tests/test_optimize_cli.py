"""``fedsim optimize``: human output, a JSON record consistent with the library, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedsim.cli import main
from fedsim.commands.optimize import optimize_drop, parse_rounds
from fedsim.errors import InputError
from fedsim.system import SystemParams


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
        SystemParams(bandwidth_main_hz=2e7), gpt2_workload, 16, 10, parse_rounds("1,2,4,6,8", None), 5, "b"
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
        (["--ranks", "1,2", "--rounds", "100"], "--rounds has 1 values"),
        (["--model", "no-such-model"], "no-such-model"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, argv, match):
    assert main(["optimize", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and match in err


def test_same_seed_same_drop_for_every_scheme(gpt2_workload):
    rounds = parse_rounds("1,2,4,6,8", None)
    d1, _ = optimize_drop(SystemParams(), gpt2_workload, 16, 10, rounds, 11, "proposed")
    d2, _ = optimize_drop(SystemParams(), gpt2_workload, 16, 10, rounds, 11, "a")
    np.testing.assert_array_equal(d1.positions_m, d2.positions_m)


def test_parse_rounds_rejects_garbage():
    with pytest.raises(InputError, match="--ranks"):
        parse_rounds("a,b", None)
    assert parse_rounds("2,4", "10,5") == {2: 10.0, 4: 5.0}
