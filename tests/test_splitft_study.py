"""SplitFT live arms end to end on a tiny model: `fedsim run` writes rows, cut trajectories, figure, table;
bad SplitFT input in a scenario is one line, exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fedsim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
TRAINING = {
    "model": "tiny-gpt2",
    "num_clients": 3,
    "steps": 4,
    "local_iterations": 1,
    "eval_every": 2,
    "seq_len": 32,
    "batch_size": 2,
    "train_samples": 36,
    "eval_samples": 6,
    "test_samples": 4,
    "generate_mrs": 1,
    "max_new_tokens": 4,
    "partition": "length_dirichlet",
    "rank": 4,
    "cut": 2,
    "target_ppl": 1000.0,
}
ARMS = {
    "same_cut": {"cuts": [2, 2, 2]},
    "adaptive_rcut": {"cuts": [2, 2, 2], "rank_cut": 2,
                      "adaptive_cuts": {"cut_min": 1, "cut_max": 3, "gamma": 0.0, "epsilon": 0.05}},
}  # fmt: skip


def _toml(path: Path, arms: dict, training: dict = TRAINING) -> Path:
    lines = ['name = "tinyarms"', "[montecarlo]", "drops = 0", "[system]", "client_cycles_min = 0.5e9",
             "client_cycles_max = 4e9", "[live]", "vary = { dirichlet_alpha = [0.5, 5.0] }",
             "[live.training]"]  # fmt: skip
    lines += [f"{k} = {json.dumps(v)}" for k, v in training.items()]
    for name, over in arms.items():
        lines.append(f"[live.arms.{name}]")
        for k, v in over.items():
            if isinstance(v, dict):
                lines.append(f"{k} = {{ " + ", ".join(f"{a} = {json.dumps(b)}" for a, b in v.items()) + " }")
            else:
                lines.append(f"{k} = {json.dumps(v)}")
    lines += ["[outputs]", 'formats = ["png"]']
    path.write_text("\n".join(lines) + "\n")
    return path


def test_live_arms_run_end_to_end(tmp_path):
    from fedsim.cli import main

    scenario = _toml(tmp_path / "arms.toml", ARMS)
    assert len(load_scenario(scenario).live.arms) == 2
    out = tmp_path / "out"
    assert main(["run", str(scenario), "--out", str(out), "--no-progress"]) == 0
    summary = pd.read_csv(out / "live" / "arms_summary.csv")
    assert sorted(summary["run"]) == sorted(
        ["same_cut_dirichlet_alpha0.5", "adaptive_rcut_dirichlet_alpha0.5",
         "same_cut_dirichlet_alpha5.0", "adaptive_rcut_dirichlet_alpha5.0"]
    )  # fmt: skip
    assert (summary["rounds_completed"] == 4).all() and summary["final_val_ppl"].notna().all()
    assert (summary["bits_up"] > 0).all() and summary["test_ppl"].notna().all()
    same = summary[summary["arm"] == "same_cut"]
    assert (same["cut_changes"] == 0).all() and (same["cuts_end"] == "[2, 2, 2]").all()
    adaptive = summary[summary["arm"] == "adaptive_rcut"]
    assert (adaptive["cut_changes"] > 0).all()  # heterogeneous compute moves cuts (gamma = 0)
    cuts = pd.read_csv(out / "live" / "arms_cuts.csv")
    assert set(cuts.columns) >= {"run", "arm", "round", "client", "cut", "dirichlet_alpha"}
    changes = pd.read_csv(next((out / "live").glob("adaptive_rcut_dirichlet_alpha0.5/cut_changes.csv")))
    assert {"round", "client", "old", "new", "reason"} <= set(changes.columns)
    assert (out / "figures" / "splitft.png").exists() and (out / "figures" / "splitft_table.md").exists()


@pytest.mark.parametrize(
    "arm,message",
    [
        ({"cuts": [1, 4, 2]}, "cuts"),  # J = 4 blocks: a cut must leave the server one
        ({"rank_cut": 0}, "rank_cut"),
        ({"adaptive_cuts": {"every": 0}}, "every"),
        ({"adaptive_cuts": {"memory_bytes": [1e9, 1e4, 1e9]}}, "memory_bytes"),
    ],
)
def test_bad_splitft_scenario_is_one_line_exit_2_nothing_written(tmp_path, capsys, arm, message):
    from fedsim.cli import main

    scenario = _toml(tmp_path / "bad.toml", {"bad": arm})
    out = tmp_path / "out"
    code = main(["run", str(scenario), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err
    assert not out.exists()


def _config_folder(path: Path, family: str, blocks: int) -> Path:
    from transformers import GPT2Config, LlamaConfig

    if family == "gpt2":
        config = GPT2Config(n_layer=blocks, n_embd=64, n_head=4, n_positions=128)
    else:
        config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=blocks,
                             num_attention_heads=4, num_key_value_heads=2, vocab_size=50257)  # fmt: skip
    config.save_pretrained(path)
    return path


@pytest.mark.parametrize("family,blocks", [("gpt2", 5), ("llama", 3)])
def test_cuts_are_checked_against_the_blocks_in_a_model_folders_config(tmp_path, capsys, family, blocks):
    from fedsim.cli import main
    from fedsim.learn.split.layout import local_model_config

    folder = _config_folder(tmp_path / "my-model", family, blocks)
    assert local_model_config(str(folder)).num_hidden_layers == blocks
    training = {**TRAINING, "model": str(folder)}
    ok = _toml(tmp_path / "ok.toml", {"ok": {"cuts": [1, blocks - 1, 2]}}, training)
    assert len(load_scenario(ok).live.arms) == 1  # a cut J - 1 leaves the server a block: accepted
    bad = _toml(tmp_path / "bad.toml", {"bad": {"cuts": [1, blocks, 2]}}, training)
    out = tmp_path / "out"
    code = main(["run", str(bad), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and not out.exists()
    assert "cuts" in err and f"1..{blocks - 1}" in err and f"J = {blocks}" in err


def test_a_model_with_no_local_copy_is_left_to_the_build_time_check():
    from fedsim.learn.split.layout import local_model_config

    assert local_model_config("no-such-org/no-such-model-fedsim") is None


def test_cuts_are_checked_against_a_hub_id_in_the_local_hugging_face_cache(tmp_path):
    """A hub id with a copy in the local HF cache (``HF_HUB_CACHE``; offline) is checked against its own J
    when the scenario loads. In a child process: huggingface_hub reads its cache folder once, at import."""
    import os
    import subprocess
    import sys
    import textwrap

    cache = tmp_path / "hub"
    repo = cache / "models--acme--tiny-llama"
    _config_folder(repo / "snapshots" / "0123abcd", "llama", 4)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    training = {**TRAINING, "model": "acme/tiny-llama"}
    ok = _toml(tmp_path / "ok.toml", {"ok": {"cuts": [1, 3, 2]}}, training)
    bad = _toml(tmp_path / "bad.toml", {"bad": {"cuts": [1, 4, 2]}}, training)
    code = textwrap.dedent(
        f"""
        from fedsim.learn.split.layout import local_model_config
        from fedsim.scenario import load_scenario
        from fedsim.errors import InputError
        assert local_model_config("acme/tiny-llama").num_hidden_layers == 4
        assert len(load_scenario({str(ok)!r}).live.arms) == 1
        try:
            load_scenario({str(bad)!r})
        except InputError as exc:
            print(exc)
        """
    )
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "cuts" in done.stdout and "1..3" in done.stdout and "J = 4" in done.stdout


@pytest.mark.slow
def test_a_committed_splitft_arm_reproduces_on_this_machine_and_the_committed_rows(tmp_path):
    """One arm of the committed study (adaptive cuts, alpha = 1: cut moves, block transfers) run twice from
    the same seed at 1 thread gives identical files (same machine, threads and kernels: bit for bit); against
    the committed rows (recorded on another CPU) every cut, cut change, round and count is equal and every
    float within the measured kernel tolerance."""
    import torch
    from kernel_tolerance import SMOLLM_ARM_RTOL, assert_rows_close, assert_values_close

    from fedsim import api

    committed = ROOT / "results" / "splitft_study" / "live" / "adaptive_dirichlet_alpha1.0"
    arm = "{cuts = [2, 2, 2, 2, 2], adaptive_cuts = {every = 1, gamma = 0.5, epsilon = 0.1, cut_min = 1, cut_max = 6}}"
    scenario = api.load_scenario(
        ROOT / "scenarios" / "splitft_study.toml",
        [f"live.arms={{adaptive = {arm}}}", "live.vary={dirichlet_alpha = [1.0]}"],
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the committed run's setting
    try:
        for out in ("a", "b"):
            api.run(scenario, executor="serial", out=tmp_path / out, figures=False, progress=False)
    finally:
        torch.set_num_threads(threads)
    first, second = (tmp_path / out / "live" / committed.name for out in ("a", "b"))
    for name in ("rounds.csv", "cuts.csv", "cut_changes.csv", "curve.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    for name in ("rounds.csv", "cuts.csv", "cut_changes.csv"):
        assert_rows_close(pd.read_csv(first / name), pd.read_csv(committed / name), SMOLLM_ARM_RTOL)
    for name in ("curve.json", "summary.json"):
        mine, theirs = (json.loads((f / name).read_text()) for f in (first, committed))
        if name == "summary.json":
            mine.pop("wall_s"), theirs.pop("wall_s")
        assert_values_close(mine, theirs, SMOLLM_ARM_RTOL)
