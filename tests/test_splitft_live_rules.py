"""The adaptive-cut rules of issue 23 in a live run on a tiny model (`fedsim run`, real training timed by the
engine): the score rule on the EMA of a fixed probe set writes its quality signal and measured noise; the
optimiser rule moves the cuts where the delay model's per-client-cut optimiser puts them for the drop."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_splitft_study import TRAINING, _toml

ARMS = {
    "probe": {"cuts": [2, 2, 2], "adaptive_cuts": {"cut_min": 1, "cut_max": 3, "gamma": 1.0, "epsilon": 0.0,
                                                   "probe_size": 3, "ema_weight": 0.5}},
    "optimiser": {"cuts": [2, 2, 2], "adaptive_cuts": {"rule": "optimiser", "cut_min": 1, "cut_max": 3}},
}  # fmt: skip


def test_probe_and_optimiser_rules_in_a_live_run(tmp_path):
    from fedsim.cli import main

    training = {**TRAINING, "partition": "iid"}
    scenario = _toml(tmp_path / "rules.toml", ARMS, training)
    text = scenario.read_text().replace("vary = { dirichlet_alpha = [0.5, 5.0] }\n", "")
    scenario.write_text(text.replace("[system]\n", "[system]\nserver_cycles = 1e8\n"))  # a slow server
    out = tmp_path / "out"
    assert main(["run", str(scenario), "--out", str(out), "--no-progress"]) == 0
    live = out / "live"
    summary = pd.read_csv(live / "arms_summary.csv").set_index("arm")
    assert (summary["rounds_completed"] == 4).all()
    # the score rule on the probe: every round's probe and EMA loss per client, and the noise of each signal
    probe_run = live / "probe"
    quality = pd.read_csv(probe_run / "quality.csv")
    assert len(quality) == 4 * 3 and quality["probe_loss"].notna().all()
    ema = quality.pivot(index="round", columns="client", values="ema_loss").to_numpy()
    loss = quality.pivot(index="round", columns="client", values="probe_loss").to_numpy()
    np.testing.assert_allclose(ema[1:], 0.5 * loss[1:] + 0.5 * ema[:-1], rtol=1e-12)
    noise = pd.read_csv(probe_run / "quality_noise.csv")
    assert {"probe_loss_step_std", "ema_loss_step_std", "batch_rel_step_std", "ema_rel_step_std"} <= set(
        noise.columns
    )
    assert len(noise) == 3 and noise["ema_rel_step_std"].notna().all()
    # the optimiser rule: its moves are logged with the delay model's predicted round time, charged by the engine
    opt_run = live / "optimiser"
    changes = pd.read_csv(opt_run / "cut_changes.csv")
    assert len(changes) > 0 and changes["reason"].str.contains("optimiser").all()
    assert (changes["predicted_s"] > 0).all()
    end = json.loads(summary.loc["optimiser", "cuts_end"])
    assert all(1 <= c <= 3 for c in end) and end != [2, 2, 2]
    rounds = pd.read_csv(opt_run / "rounds.csv")
    assert len(rounds) == 4
    # each round's time per engine phase: the moves and the compute, and the probe arm's probe passes
    phases = pd.read_csv(opt_run / "phases.csv")
    assert {"forward", "upload_activation", "move_block_to_client"} <= set(phases["phase"])
    assert set(phases["round"]) == {0, 1, 2, 3} and (phases["max_actor_s"] <= phases["busy_s"] + 1e-15).all()
    probe_phases = pd.read_csv(probe_run / "phases.csv")
    assert {"probe_forward", "upload_probe_activation", "probe_server_forward"} <= set(probe_phases["phase"])
    assert "probe_forward" not in set(phases["phase"])
    assert pd.read_csv(opt_run / "quality.csv")["probe_loss"].isna().all()  # no probe set in this arm


@pytest.mark.parametrize(
    "arm,message",
    [
        ({"adaptive_cuts": {"ema_weight": 0.0}}, "adaptive_cuts.ema_weight"),
        ({"adaptive_cuts": {"ema_weight": 1.5}}, "adaptive_cuts.ema_weight"),
        ({"adaptive_cuts": {"probe_size": -1}}, "adaptive_cuts.probe_size"),
        ({"adaptive_cuts": {"rule": "best"}}, "adaptive_cuts.rule"),
        ({"rank_cut": 2, "rank_cut_side": "client", "adaptive_cuts": {"rule": "optimiser"}}, "adaptive_cuts.rule"),
    ],
)
def test_bad_rule_settings_in_a_scenario_are_one_line_exit_2_nothing_written(tmp_path, capsys, arm, message):
    from fedsim.cli import main

    scenario = _toml(tmp_path / "bad.toml", {"bad": {"cuts": [2, 2, 2], **arm}})
    out = tmp_path / "out"
    code = main(["run", str(scenario), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()
