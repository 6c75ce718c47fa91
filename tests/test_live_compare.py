"""Comparing live arms over seeds (``fedsim.experiments.live.compare``): interpolated time to a target, the
common target per seed, the paired change against the baseline with its t-CI, and the per-phase round time."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fedsim.experiments.live.compare import collect, paired, phase_seconds, time_to_ppl, times_to_target


def test_time_to_ppl_interpolates_in_log_ppl_between_evaluations():
    evals = pd.DataFrame({"sim_time_s": [0.0, 10.0, 20.0], "val_ppl": [20.0, 10.0, 5.0]})
    assert time_to_ppl(evals, 20.0) == 0.0
    assert time_to_ppl(evals, 10.0) == pytest.approx(10.0)
    # log PPL halfway between 10 and 5: sqrt(50), at 15 s
    assert time_to_ppl(evals, math.sqrt(50.0)) == pytest.approx(15.0)
    assert math.isnan(time_to_ppl(evals, 4.9))


def _study():
    """Two seeds x two arms in one partition; the baseline converges slower in simulated time."""
    summary, curve = [], []
    for seed in (0, 1):
        for arm, speed, final in (("splitlora_fixed", 1.0, 6.0 + seed), ("balance", 2.0, 5.0)):
            run = f"{arm}_s{seed}"
            summary.append({"run": run, "arm": arm, "partition": "iid", "seed": seed, "final_val_ppl": final,
                            "sim_total_s": 40.0 / speed})  # fmt: skip
            ppl = [20.0, 12.0, 8.0, final]
            curve += [{"run": run, "step": 5 * i, "val_ppl": p, "sim_time_s": 10.0 * i / speed}
                      for i, p in enumerate(ppl)]  # fmt: skip
    return pd.DataFrame(summary), pd.DataFrame(curve)


def test_the_common_target_is_the_worst_final_ppl_of_the_seed_and_every_run_reaches_it():
    summary, curve = _study()
    out = times_to_target(summary, curve).set_index("run")
    assert out.loc["balance_s0", "common_target_ppl"] == 6.0 and out.loc["balance_s1", "common_target_ppl"] == 7.0
    assert out["sim_time_to_common_s"].notna().all()
    assert out.loc["splitlora_fixed_s0", "sim_time_to_common_s"] == pytest.approx(30.0)
    # balance on seed 0: 8 at 10 s, 5 at 15 s; log-linear to 6
    frac = math.log(8 / 6) / math.log(8 / 5)
    assert out.loc["balance_s0", "sim_time_to_common_s"] == pytest.approx(10.0 + 5.0 * frac)


def test_paired_changes_against_the_baseline_with_the_t_interval_over_seeds():
    summary, curve = _study()
    table = times_to_target(summary, curve)
    row = paired(table, "final_val_ppl").iloc[0]
    changes = np.array([100 * (5 / 6 - 1), 100 * (5 / 7 - 1)])
    assert row["arm"] == "balance" and row["partition"] == "iid" and row["seeds"] == 2
    assert row["change_pct"] == pytest.approx(changes.mean())
    half = stats.t.ppf(0.975, 1) * changes.std(ddof=1) / math.sqrt(2)
    assert row["ci_pct"] == pytest.approx(half)
    assert row["excludes_0"] == (abs(changes.mean()) > half)
    total = paired(table, "sim_total_s").iloc[0]
    assert total["change_pct"] == pytest.approx(-50.0) and total["ci_pct"] == 0.0 and total["excludes_0"]
    one = paired(table[table["seed"] == 0], "sim_total_s").iloc[0]
    assert one["seeds"] == 1 and math.isnan(one["ci_pct"]) and not one["excludes_0"]


def test_phase_seconds_sum_the_slowest_actor_per_group_and_average_over_rounds():
    phases = pd.DataFrame(
        [
            {"run": "a", "round": 0, "phase": "forward", "max_actor_s": 2.0},
            {"run": "a", "round": 0, "phase": "backward", "max_actor_s": 3.0},
            {"run": "a", "round": 0, "phase": "upload_activation", "max_actor_s": 1.0},
            {"run": "a", "round": 1, "phase": "forward", "max_actor_s": 4.0},
            {"run": "a", "round": 1, "phase": "move_block_to_client", "max_actor_s": 0.5},
            {"run": "a", "round": 1, "phase": "aggregate", "max_actor_s": 9.0},  # no delay term: left out
        ]
    )
    row = phase_seconds(phases).set_index("run").loc["a"]
    assert row["client compute"] == pytest.approx((5.0 + 4.0) / 2)
    assert row["activation upload"] == pytest.approx(0.5) and row["block moves"] == pytest.approx(0.25)


def test_collect_reads_only_finished_runs(tmp_path):
    done, running = tmp_path / "done", tmp_path / "running"
    done.mkdir(), running.mkdir()
    (done / "summary.json").write_text(json.dumps({"run": "done", "arm": "balance", "final_val_ppl": 5.0}))
    (done / "curve.json").write_text(json.dumps([{"run": "done", "step": 0, "val_ppl": 9.0, "sim_time_s": 0}]))
    pd.DataFrame({"round": [0], "client": [0], "cut": [2]}).to_csv(done / "cuts.csv", index=False)
    (running / "curve.json").write_text("[]")
    data = collect(tmp_path)
    assert list(data["summary"]["run"]) == ["done"] and list(data["cuts"]["run"]) == ["done"]
    assert data["phases"].empty
