"""The live co-simulation of a scenario: real (tiny) split-LoRA training driven by the engine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedsim.core.delay import delays
from fedsim.experiments.harness.store import ResultsStore
from fedsim.experiments.live import runs as live_mod
from fedsim.scenario import load_scenario, scenario_from_dict

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "name": "tinylive",
    "montecarlo": {"drops": 0},
    "live": {
        "ranks": [2, 4],
        "training": {
            "model": "tiny-gpt2",
            "num_clients": 2,
            "steps": 4,
            "local_iterations": 2,
            "eval_every": 2,
            "seq_len": 32,
            "batch_size": 2,
            "train_samples": 32,
            "eval_samples": 8,
            "cut": 1,
        },
    },
    "outputs": {"figures": ["convergence", "table4"], "formats": ["png"]},
}


def test_live_rounds_are_timed_like_eq17(tmp_path, monkeypatch):
    scenario = scenario_from_dict(TINY)
    store = ResultsStore(tmp_path)
    store.prepare(scenario)
    captured = {}
    original = live_mod._allocation

    def keep(scenario_, drop, workload, cfg):  # remember what the engine timed, to recompute it by eq. (17)
        alloc = original(scenario_, drop, workload, cfg)
        captured[cfg.rank] = (drop, workload, alloc)
        return alloc

    monkeypatch.setattr(live_mod, "_allocation", keep)
    lines = live_mod.run_live(scenario, store, progress=False)
    assert any("Live co-simulation" in line for line in lines)
    summary = pd.read_csv(tmp_path / "live" / "summary.csv")
    assert list(summary["rank"]) == [2, 4] and (summary["rounds_completed"] == 2).all()
    for rank, (drop, workload, alloc) in captured.items():
        assert alloc.cuts.tolist() == [1, 1] and np.all(alloc.ranks == rank)
        expected = delays(drop, workload, alloc, batch_size=2, local_iterations=2, rounds=2).total_s
        got = summary.loc[summary["rank"] == rank, "sim_total_s"].item()
        assert got == pytest.approx(expected, rel=1e-9)  # paper-mode engine == eq. (17), with real training
    curve = pd.read_csv(tmp_path / "live" / "curve.csv")
    for _, part in curve.groupby("rank"):
        assert part["sim_time_s"].is_monotonic_increasing and part["val_ppl"].notna().sum() >= 2
    record = json.loads(next((tmp_path / "live" / "rank2").glob("*_r2.json")).read_text())
    assert record["rank"] == 2 and record["curve"]
    # a rerun finds both ranks done and does not train again
    monkeypatch.setattr(live_mod, "_run_rank", lambda *a, **k: pytest.fail("rank recomputed"))
    live_mod.run_live(scenario, store, progress=False)


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path):
    from fedsim.cli import main

    scenario = ROOT / "scenarios" / "quickstart.toml"
    assert load_scenario(scenario).live.training.model == "smollm2-135m"
    out = tmp_path / "qs"
    assert main(["run", str(scenario), "--out", str(out), "--no-progress"]) == 0
    names = {p.name for p in (out / "figures").iterdir()}
    assert {"delay_vs_axis.png", "delay_vs_axis.pdf", "convergence.png", "table4.md"} <= names
    rows = pd.read_parquet(out / "rows.parquet")
    means = rows.groupby("scheme")["total_s"].mean()
    assert means["proposed"] < means.drop("proposed").min()
    live = pd.read_csv(out / "live" / "summary.csv")
    assert (live["final_val_ppl"] < 0.5 * live["first_val_ppl"]).all()  # 20.3 -> 4.7 measured
    assert (live["bleu"] > 20).all() and (live["rouge_l"] > 40).all()  # format learned: 51.6 / 71.8 measured


def test_changed_live_inputs_rerun_the_live_part(tmp_path, monkeypatch):
    scenario = scenario_from_dict(TINY)
    store = ResultsStore(tmp_path)
    store.prepare(scenario)
    calls = []

    def fake(scenario_, store_, rank, progress):
        calls.append(rank)
        folder = store_.root / "live" / f"rank{rank}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "curve.json").write_text(json.dumps([{"rank": rank, "step": 0, "val_ppl": 9.0}]))
        (folder / "summary.json").write_text(json.dumps({"model": "m", "rank": rank}))

    monkeypatch.setattr(live_mod, "_run_rank", fake)
    live_mod.run_live(scenario, store, progress=False)
    live_mod.run_live(scenario, store, progress=False)
    assert calls == [2, 4]  # the second call reuses both ranks
    changed = scenario_from_dict({**TINY, "system": {"p_max_w": 0.1}})
    live_mod.run_live(changed, store, progress=False)
    assert calls == [2, 4, 2, 4]


def test_live_run_honours_the_upload_reading_and_workload_settings(tmp_path, monkeypatch):
    # Prepare: reading D2 (LoRA upload every local iteration) and a backward/forward ratio of 3
    data = json.loads(json.dumps(TINY))
    data["live"]["ranks"] = [2]
    data["training"] = {"upload_every_local_iteration": True}
    data["model"] = {"bwd_factor": 3.0}
    scenario = scenario_from_dict(data)
    store = ResultsStore(tmp_path)
    store.prepare(scenario)
    captured = {}
    original = live_mod._allocation

    def keep(scenario_, drop, workload, cfg):
        captured["timed"] = (drop, workload, original(scenario_, drop, workload, cfg))
        return captured["timed"][2]

    monkeypatch.setattr(live_mod, "_allocation", keep)
    # Execute
    live_mod.run_live(scenario, store, progress=False)
    # Assert: the engine timed reading D2 with [model]'s backward factor, as the optimiser models it
    drop, workload, alloc = captured["timed"]
    np.testing.assert_allclose(workload.bwd_flops, 3.0 * workload.fwd_flops)
    got = pd.read_csv(tmp_path / "live" / "summary.csv")["sim_total_s"].item()
    d2 = delays(
        drop, workload, alloc, batch_size=2, local_iterations=2, rounds=2, upload_every_local_iteration=True
    ).total_s
    d1 = delays(drop, workload, alloc, batch_size=2, local_iterations=2, rounds=2).total_s
    assert got == pytest.approx(d2, rel=1e-9) and abs(d2 - d1) > 1e-6 * d1
