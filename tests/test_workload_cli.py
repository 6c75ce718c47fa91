"""``fedsim workload`` through the real CLI entry point."""

from __future__ import annotations

import json

import pytest

from fedsim.cli import main


def test_workload_json_has_golden_numbers(capsys):
    assert main(["workload", "--model", "gpt2", "--seq-len", "512", "--json", "--rank", "8"]) == 0
    info = json.loads(capsys.readouterr().out)
    w = info["workload"]
    assert round(w["fwd_flops"][0] / 1e9, 3) == 8.057
    assert round(w["lora_fwd_flops_per_rank"][0] / 1e6, 3) == 3.146
    assert round(w["head_fwd_flops"] / 1e9, 2) == 39.53
    assert w["act_bits"] == [12_582_912] * 12
    assert w["lora_bits_per_rank"] == [98_304] * 12
    assert info["rank"] == 8 and info["totals"]["lora_bits_all_blocks"] == 8 * 12 * 98_304
    assert info["parameters"]["mha"] == 2_362_368
    assert info["mode"] == "analytic" and info["bits"] == 32


def test_workload_table_is_readable(capsys):
    assert main(["workload", "--model", "smollm2-135m", "--seq-len", "128", "--bits", "16"]) == 0
    out = capsys.readouterr().out
    assert "fwd GFLOP" in out and "LoRA kbit" in out
    assert out.count("\n") >= 30 + 4  # 30 blocks, header lines, head and totals
    assert "head" in out and "total" in out


def test_workload_table3_mode(capsys):
    assert main(["workload", "--model", "gpt2", "--mode", "table3", "--json"]) == 0
    assert round(json.loads(capsys.readouterr().out)["workload"]["fwd_flops"][0] / 1e9, 2) == 35.43


@pytest.mark.parametrize(
    ("argv", "word"),
    [
        (["--model", "gpt5"], "gpt5"),
        (["--seq-len", "0"], "seq-len"),
        (["--seq-len", "-3"], "seq-len"),
        (["--bits", "4"], "bits"),
        (["--rank", "0"], "rank"),
        (["--mode", "exact"], "mode"),
    ],
)
def test_workload_bad_input_exits_2_with_one_line(capsys, argv, word):
    assert main(["workload", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("fedsim workload: error:") and word in err
