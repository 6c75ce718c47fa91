"""Which finished live arm runs a rerun reuses: the arms and ``vary`` values only pick runs (a study can be run
one seed at a time into one folder), while each run's own training config must match its record."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fedsim.experiments.live.arms import config_differs
from fedsim.experiments.live.runs import prepare_live_folder
from fedsim.scenario import load_scenario
from fedsim.scenario.arms import arm_configs

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["splitft_study", "splitft_compute_bound"])
def test_every_committed_arm_run_matches_its_scenarios_config(name):
    scenario = load_scenario(ROOT / "scenarios" / f"{name}.toml")
    checked = 0
    for run, _, cfg in arm_configs(scenario.live):
        folder = ROOT / "results" / name / "live" / run
        if (folder / "summary.json").is_file():
            assert config_differs(folder, cfg) is None, run
            checked += 1
    assert checked >= 1


def test_a_run_trained_with_another_lr_is_named_as_such(tmp_path):
    scenario = load_scenario(ROOT / "scenarios" / "splitft_compute_bound.toml")
    run, _, cfg = arm_configs(scenario.live)[0]
    folder = tmp_path / run
    shutil.copytree(ROOT / "results" / "splitft_compute_bound" / "live" / run, folder)
    assert config_differs(folder, cfg) is None
    assert config_differs(folder, cfg.model_copy(update={"lr": 3e-3})) == "trained with other settings (lr)"
    for record in folder.glob("smollm2*.json"):
        record.unlink()
    assert config_differs(folder, cfg) == "its record is missing"


def test_changing_arms_or_vary_keeps_the_finished_runs_and_changing_training_removes_them(tmp_path):
    scenario = load_scenario(ROOT / "scenarios" / "splitft_compute_bound.toml")
    live = tmp_path / "live"
    prepare_live_folder(live, scenario)
    (live / "run").mkdir()
    one_seed = scenario.live.model_copy(update={"vary": {"partition": ["iid"], "seed": [0]}})
    prepare_live_folder(live, scenario.model_copy(update={"live": one_seed}))
    fewer_arms = scenario.live.model_copy(update={"arms": {"balance": scenario.live.arms["balance"]}})
    prepare_live_folder(live, scenario.model_copy(update={"live": fewer_arms}))
    assert (live / "run").is_dir()
    assert json.loads((live / "inputs.json").read_text())["live"]["arms"].keys() == {"balance"}
    faster = scenario.live.training.model_copy(update={"lr": 3e-3})
    prepare_live_folder(live, scenario.model_copy(update={"live": scenario.live.model_copy(update={"training": faster})}))
    assert not (live / "run").exists()
    assert (tmp_path / "set-aside" / "live.1" / "run").is_dir()  # set aside, never deleted


@pytest.mark.parametrize("name", ["splitft_study", "splitft_compute_bound", "splitft_uplink_bound"])
def test_every_committed_live_folder_reads_as_unchanged_against_its_scenario(name, tmp_path):
    live = tmp_path / "live"
    shutil.copytree(ROOT / "results" / name / "live", live, ignore=shutil.ignore_patterns("*.pt"))
    runs = sorted(p.name for p in live.iterdir() if p.is_dir())
    prepare_live_folder(live, load_scenario(ROOT / "scenarios" / f"{name}.toml"))
    assert runs and sorted(p.name for p in live.iterdir() if p.is_dir()) == runs
    assert not (tmp_path / "set-aside").exists()


def test_a_training_field_added_later_at_its_default_keeps_the_finished_runs(tmp_path):
    """inputs.json written before ``eval_order`` existed: read through today's model it is unchanged (the
    old whole-text comparison wiped every finished run when a field was added)."""
    scenario = load_scenario(ROOT / "scenarios" / "splitft_compute_bound.toml")
    live = tmp_path / "live"
    prepare_live_folder(live, scenario)
    (live / "run").mkdir()
    inputs = json.loads((live / "inputs.json").read_text())
    assert inputs["live"]["training"].pop("eval_order") == "first"
    (live / "inputs.json").write_text(json.dumps(inputs))
    prepare_live_folder(live, scenario)
    assert (live / "run").is_dir()
    mr_spread = scenario.live.training.model_copy(update={"eval_order": "mr_spread"})
    (live / "inputs.json").write_text(json.dumps(inputs))
    prepare_live_folder(live, scenario.model_copy(update={"live": scenario.live.model_copy(update={"training": mr_spread})}))
    assert not (live / "run").exists()
