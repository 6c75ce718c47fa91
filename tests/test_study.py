"""The convergence study: one training run per sweep point through the sweep runner and store; killed
studies resume to the same records; E(r) per target and over seeds; Table IV statistics."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from study_helpers import tiny_study

from fedsim.experiments.study.tables import last_fraction_change_pct, t_interval, table_iv
from fedsim.learn.records import ConvergenceRecord, rounds_by_rank, rounds_to_target

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, steps: int) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(tiny_study(steps))
    return path


def _run(scenario: Path, out: Path, *extra: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    executor = kw.pop("executor", "serial")
    cmd = [sys.executable, "-m", "fedsim", "run", str(scenario), "--executor", executor, "--out", str(out),
           "--no-progress", *extra]  # fmt: skip
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def _records(out: Path) -> dict[str, list[dict]]:
    return {p.name: json.loads(p.read_text())["curve"] for p in sorted((out / "records").glob("*.json"))}


def test_study_runs_rows_tables_figures_and_resumes_after_a_kill(tmp_path):
    scenario = _write(tmp_path, steps=8)
    full = tmp_path / "full"
    proc = _run(scenario, full, "--workers", "2", executor="process")  # the killed run below is serial
    output = proc.communicate(timeout=600)[0].decode()
    assert proc.returncode == 0, output
    rows = pd.read_parquet(full / "rows.parquet")
    assert len(rows) == 4 and set(rows["rank"]) == {1, 4} and set(rows["seed"]) == {0, 1}
    assert {"rounds_to_ppl_60000", "rounds_to_ppl_50000", "rounds_interp_to_ppl_50000", "eval_noise_pct",
            "test_ppl"} <= set(rows.columns)  # fmt: skip
    assert (full / "tables" / "table4.md").exists() and (full / "figures" / "fig3_val_ppl.png").exists()
    assert "Table IV" in output
    expected = _records(full)
    # the tidy curves table holds every evaluation of every record, in the records' order
    curves = pd.read_csv(full / "tables" / "curves.csv")
    evals = {(r["rank"], r["seed"]): [p["val_ppl"] for p in json.loads((full / r["record"]).read_text())["curve"]
                                      if "val_ppl" in p] for _, r in rows.iterrows()}  # fmt: skip
    assert len(curves) == sum(len(v) for v in evals.values())
    for (rank, seed), ppls in evals.items():
        got = curves[(curves["rank"] == rank) & (curves["seed"] == seed)].sort_values("step")["val_ppl"]
        np.testing.assert_allclose(got.to_numpy(), ppls, rtol=1e-12)
    assert len(expected) == 4

    # kill the same study (SIGKILL) once a mid-run checkpoint exists, then resume: identical curves
    killed = tmp_path / "killed"
    proc = _run(scenario, killed)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        ckpts = list((killed / "checkpoints").glob("*.pt")) if (killed / "checkpoints").exists() else []
        if (
            len(list((killed / "records").glob("*.json")) if (killed / "records").exists() else []) >= 1
            and ckpts
        ):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the study finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = set(_records(killed))
    assert 1 <= len(done_before) < 4
    # interim results of the stopped study: only the finished runs, nothing trained
    proc = _run(scenario, killed, "--set", "study.existing_only=true")
    output = proc.communicate(timeout=600)[0].decode()
    assert proc.returncode == 0, output
    assert len(pd.read_parquet(killed / "rows.parquet")) == len(done_before)
    assert set(_records(killed)) == done_before
    proc = _run(scenario, killed)
    output = proc.communicate(timeout=600)[0].decode()
    assert proc.returncode == 0, output
    assert _records(killed) == expected
    resumed = pd.read_parquet(killed / "rows.parquet").drop(columns=["wall_s"])
    pd.testing.assert_frame_equal(resumed, rows.drop(columns=["wall_s"]))


def _record(rank, seed, ppls, target=None, every=2, local_iterations=2, config_override=None):
    curve = [
        {"step": i * every, "round": i * every / local_iterations, "val_ppl": p} for i, p in enumerate(ppls)
    ]
    return ConvergenceRecord(model="m", scheme="split_fed", rank=rank, num_clients=3, batch_size=4,
                             local_iterations=local_iterations, seq_len=64, target_ppl=target,
                             rounds_to_target=rounds_to_target(curve, target), curve=curve,
                             config=config_override or {"seed": seed})  # fmt: skip


def test_interpolated_rounds_to_target_by_hand():
    from fedsim.learn.records import rounds_to_target_interpolated

    curve = [{"step": 0, "round": 0.0, "val_ppl": 9.0}, {"step": 8, "round": 4.0, "val_ppl": 6.0},
             {"step": 16, "round": 8.0, "val_ppl": 4.0}]  # fmt: skip
    # ln 6 - ln 5 = 0.1823216, ln 6 - ln 4 = 0.4054651: 4 + 4 * 0.4496604 rounds
    assert rounds_to_target_interpolated(curve, 5.0) == pytest.approx(5.7986416, abs=1e-6)
    assert rounds_to_target_interpolated(curve, 6.0) == pytest.approx(4.0)  # on an evaluation: exact
    assert rounds_to_target_interpolated(curve, 10.0) == 0.0
    assert rounds_to_target_interpolated(curve, 3.9) is None
    assert rounds_to_target(curve, 5.0) == 8.0  # the grid answer bounds it from above


def test_rounds_by_rank_recomputes_the_target_and_aggregates_seeds():
    recs = [
        _record(1, 0, [9, 7, 5, 4.0]),  # <= 5 at step 4 -> round 2
        _record(1, 1, [9, 6, 4.9, 4.0]),  # round 2
        _record(1, 2, [9, 8, 7, 4.5]),  # round 3
        _record(8, 0, [9, 5, 4, 3.5]),  # round 1
        _record(8, 1, [9, 6, 6, 6.0]),  # never reaches 5
    ]
    assert rounds_by_rank(recs, 5.0, "mean") == {1: pytest.approx(7 / 3)}  # rank 8: one seed missed it
    assert rounds_by_rank(recs, 5.0, "max") == {1: 3.0}
    assert rounds_by_rank(recs, 5.0, "median") == {1: 2.0}
    assert rounds_by_rank(recs, 6.0, "mean") == {1: pytest.approx((2 + 1 + 3) / 3), 8: 1.0}
    with pytest.raises(Exception, match="two records for rank 1 and seed 0"):
        rounds_by_rank(recs + [_record(1, 0, [9, 5])], 5.0)


def test_rounds_by_rank_interpolates_between_evaluations_when_asked():
    from fedsim.learn.records import rounds_by_rank_per_seed, rounds_to_target_interpolated

    recs = [_record(1, 0, [9, 7, 5, 4.0]), _record(1, 1, [9, 6, 4.9, 4.0]), _record(4, 0, [9, 6.0, 4.0, 3.0])]
    # rank 4 seed 0 crosses 5 between round 1 (PPL 6) and round 2 (PPL 4): ln(6/5) / ln(6/4) of the way
    assert rounds_to_target_interpolated(recs[2].curve, 5.0) == pytest.approx(1 + math.log(6 / 5) / math.log(6 / 4))
    want = {1: [rounds_to_target_interpolated(r.curve, 5.0) for r in recs[:2]],
            4: [rounds_to_target_interpolated(recs[2].curve, 5.0)]}  # fmt: skip
    assert rounds_by_rank_per_seed(recs, 5.0, interpolate=True) == want
    assert rounds_by_rank(recs, 5.0, "mean", interpolate=True) == {
        1: pytest.approx(sum(want[1]) / 2), 4: pytest.approx(want[4][0])
    }
    # never above the grid's answer (the first evaluated round at or below the target is an upper bound)
    grid = rounds_by_rank(recs, 5.0, "mean")
    assert all(rounds_by_rank(recs, 5.0, "mean", interpolate=True)[r] <= grid[r] for r in grid)


def test_records_interpolate_needs_a_target(tmp_path):
    from fedsim import api
    from fedsim.errors import InputError

    text = (ROOT / "scenarios" / "fig5_bandwidth_measured.toml").read_text()
    no_target = tmp_path / "no_target.toml"
    no_target.write_text(text.replace("target_ppl = 5.0", "").replace('"../results/', f'"{ROOT}/results/'))
    with pytest.raises(InputError, match="records_interpolate needs records and target_ppl"):
        api.load_scenario(no_target, ["training.records_interpolate=true"])
    with pytest.raises(InputError, match="records_interpolate needs records and target_ppl"):
        api.load_scenario(ROOT / "scenarios" / "fig5_bandwidth.toml", ["training.records_interpolate=true"])


def test_records_glob_in_a_scenario_feeds_e_of_r(tmp_path):
    from fedsim.experiments.montecarlo.tasks import rounds_by_rank_of
    from fedsim.scenario import load_scenario

    folder = tmp_path / "recs"
    for rank, seed, ppls in [(1, 0, [9, 5, 4]), (1, 1, [9, 7, 4]), (4, 0, [9, 4, 3]), (4, 1, [9, 4.5, 3])]:
        _record(rank, seed, ppls).save(folder / f"m_split_fed_r{rank}_s{seed}.json")
    path = tmp_path / "s.toml"
    path.write_text('name = "x"\n[training]\nrecords = ["recs/*.json"]\ntarget_ppl = 4.5\n'
                    'records_aggregate = "max"\nlocal_iterations = 2\n')  # fmt: skip
    table, source = rounds_by_rank_of(load_scenario(path))
    assert table == {1: 2.0, 4: 1.0}
    assert source == "m:split_fed@ppl4.5 (max of 2 seeds)"
    path.write_text('name = "x"\n[training]\nrecords = ["nothing/*.json"]\n')
    with pytest.raises(Exception, match="matches no file"):
        load_scenario(path)


def test_table_iv_gap_is_the_paired_t_interval():
    rng = np.random.default_rng(3)
    rows = []
    for seed in range(5):
        base = 4 + rng.normal(0, 0.2)
        for scheme, shift in (("split_fed", 0.05), ("centralized", 0.0)):
            rows.append({"rank": 8, "seed": seed, "training_scheme": scheme, "final_val_ppl": base + shift
                         + rng.normal(0, 0.01), "test_ppl": base, "bleu": 50.0, "rouge_l": 60.0})  # fmt: skip
    frame = pd.DataFrame(rows)
    table = table_iv(frame).iloc[0]
    sf = frame[frame.training_scheme == "split_fed"].sort_values("seed")["final_val_ppl"].to_numpy()
    c = frame[frame.training_scheme == "centralized"].sort_values("seed")["final_val_ppl"].to_numpy()
    d = sf - c
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert table["gap_final_val_ppl"] == pytest.approx(d.mean())
    assert table["gap_final_val_ppl_lo"] == pytest.approx(d.mean() - half)
    assert table["gap_final_val_ppl_hi"] == pytest.approx(d.mean() + half)
    lo, hi = stats.ttest_1samp(d, 0).confidence_interval(0.95)
    assert (table["gap_final_val_ppl_lo"], table["gap_final_val_ppl_hi"]) == pytest.approx((lo, hi))
    assert table["split_fed_final_val_ppl_std"] == pytest.approx(np.std(sf, ddof=1))
    assert math.isnan(t_interval([1.0])[1])


def test_flatness_measures_the_last_fifth_of_steps():
    curve = [{"step": s, "val_ppl": p} for s, p in [(0, 10), (40, 5), (80, 4.0), (100, 3.96)]]
    assert last_fraction_change_pct(curve, 0.2) == pytest.approx(1.0)  # 4.0 at step 80 -> 3.96 at 100


def test_eval_halves_pool_to_the_full_perplexity():
    import torch

    from fedsim.learn.config import TrainConfig
    from fedsim.learn.federated.systems import build_system
    from fedsim.learn.setup import load
    from fedsim.learn.train import evaluate_validation, perplexity

    torch.manual_seed(0)
    cfg = TrainConfig(model="tiny-gpt2", num_clients=2, batch_size=2, seq_len=24, eval_samples=9, cut=1,
                      train_samples=20, test_samples=0, generate_mrs=0)  # fmt: skip
    model, _, data = load(cfg, progress=False)
    system = build_system(model, cfg, data.train, partition=data.partition)
    both = evaluate_validation(system, data, 4, halves=True)
    assert both["val_ppl"] == pytest.approx(perplexity(system, data, 4), rel=1e-6)
    assert (
        min(both["val_ppl_a"], both["val_ppl_b"])
        <= both["val_ppl"]
        <= max(both["val_ppl_a"], both["val_ppl_b"])
    )
    assert evaluate_validation(system, data, 4) == {"val_ppl": pytest.approx(both["val_ppl"], rel=1e-6)}


def test_a_record_older_than_a_new_trainconfig_field_still_counts_as_the_same_run(tmp_path):
    from fedsim.errors import InputError
    from fedsim.experiments.study.runs import _check_same_run
    from fedsim.learn.config import TrainConfig

    cfg = TrainConfig(model="tiny-gpt2", lr=0.003)
    old = cfg.model_dump()
    newest = sorted(old)[-1]
    old.pop(newest)  # written before that field existed: it counts as its default
    record = _record(1, 0, [9, 5], config_override=old)
    _check_same_run(record, cfg, tmp_path / "r.json")
    record.config = dict(old, lr=0.001)
    with pytest.raises(InputError, match="another configuration \\(lr\\)"):
        _check_same_run(record, cfg, tmp_path / "r.json")


def test_a_study_takes_matching_records_from_reuse_records_instead_of_training(tmp_path, monkeypatch):
    from fedsim import api
    from fedsim.errors import InputError
    from fedsim.experiments.study import runs

    first = tmp_path / "first.toml"
    first.write_text(tiny_study(steps=2, seeds=(0,), ranks=(1, 4)))
    api.run(api.load_scenario(first), executor="serial", out=tmp_path / "a", figures=False, progress=False)
    # the second study: rank 4 equals a run of the first (taken), rank 2 is new (trained), and rank 1 at
    # another lr is another run (trained, not taken)
    second = tmp_path / "second.toml"
    second.write_text(
        tiny_study(steps=2, seeds=(0,), ranks=(1, 2, 4), name="second").replace(
            "[study.training]", 'reuse_records = ["a/records"]\nlr_by_rank = {1 = 0.001, 2 = 0.003, 4 = 0.003}\n'
            "[study.training]"
        )
    )
    trained = []
    real_train = runs._train
    monkeypatch.setattr(runs, "_train", lambda cfg, threads: trained.append(cfg.rank) or real_train(cfg, threads))
    rows, folder = api.run(api.load_scenario(second), executor="serial", out=tmp_path / "b", figures=False,
                           progress=False)  # fmt: skip
    assert sorted(trained) == [1, 2] and len(rows) == 3
    taken = ConvergenceRecord.load(next((folder / "records").glob("*_r4_*.json")))
    original = ConvergenceRecord.load(next((tmp_path / "a" / "records").glob("*_r4_*.json")))
    assert taken.curve == original.curve and taken.config == original.config
    assert taken.source.endswith(f"; reused from a/records/{next((tmp_path / 'a' / 'records').glob('*_r4_*.json')).name}")
    # the results folder names the reused folder relative to itself, never by this machine's absolute path
    written = json.loads((folder / "scenario.json").read_text())["study"]["reuse_records"]
    assert written == ["../a/records"] and (folder / written[0]).resolve() == (tmp_path / "a" / "records").resolve()
    # a folder that is not there is named in one line
    bad = tmp_path / "bad.toml"
    bad.write_text(second.read_text().replace('["a/records"]', '["nowhere/records"]'))
    with pytest.raises(InputError, match="study.reuse_records: 'nowhere/records' is not a folder"):
        api.load_scenario(bad)
