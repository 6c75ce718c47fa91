"""Sweep machinery: seeds (common random numbers), tasks, store/resume, executors, kill-and-resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedsim.core.system import draw_drop
from fedsim.errors import InputError
from fedsim.experiments.harness import seeds
from fedsim.experiments.harness.store import ResultsStore, git_revision
from fedsim.experiments.montecarlo.tasks import run_task, run_unit
from fedsim.experiments.runner import plan_units, run_sweep
from fedsim.scenario import scenario_from_dict

ROOT = Path(__file__).resolve().parents[1]
SMALL = {
    "name": "small",
    "schemes": {"names": ["proposed", "a", "c"]},
    "sweep": {"axes": {"system.bandwidth_main_hz": [5e6, 20e6]}},
    "montecarlo": {"drops": 3, "base_seed": 11, "timing": "engine_round"},
}


def small(**changes) -> object:
    data = json.loads(json.dumps(SMALL))
    for section, values in changes.items():
        data.setdefault(section, {}).update(values) if isinstance(values, dict) else data.update(
            {section: values}
        )
    return scenario_from_dict(data)


def test_seeds_give_common_random_numbers():
    s = small()
    a = draw_drop(s.system, seeds.drop_rng(11, 1, 2))
    b = draw_drop(s.system, seeds.drop_rng(11, 1, 2))
    c = draw_drop(s.system, seeds.drop_rng(11, 1, 3))
    np.testing.assert_array_equal(a.positions_m, b.positions_m)
    assert not np.allclose(a.positions_m, c.positions_m)
    draws = {k: seeds.scheme_rng(11, 1, 2, scheme=k).random() for k in ("a", "b", "c", "d")}
    assert len(set(draws.values())) == 4
    assert seeds.engine_rng(11, 0, 0).random() == seeds.engine_rng(11, 0, 0).random()


def test_on_first_use_makes_its_generator_only_when_drawn_from_and_draws_the_same():
    made = []

    def make():
        made.append(1)
        return seeds.engine_rng(11, 2, 3)

    lazy = seeds.OnFirstUse(make)
    assert made == []
    drawn = [lazy.random(4), lazy.integers(0, 9, size=3), lazy.spawn(1)[0].random(2)]
    ref = seeds.engine_rng(11, 2, 3)
    expected = [ref.random(4), ref.integers(0, 9, size=3), ref.spawn(1)[0].random(2)]
    assert made == [1]
    for got, want in zip(drawn, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_task_row_is_tidy_and_engine_matches_eq17():
    rows = run_unit(small(), 1, 0)
    assert [r["scheme"] for r in rows] == ["proposed", "a", "c"]
    for r in rows:
        assert r["point"] == 1 and r["drop"] == 0 and r["system.bandwidth_main_hz"] == 20e6
        assert json.loads(r["seed"]) == [11, 1, 0]
        assert r["rounds_source"] == "spec_proposed" and r["rounds"] in (240, 204, 180, 174, 170)
        # paper mode: the event-timed total equals the analytical eq. (17)
        assert r["total_s"] == pytest.approx(r["analytic_total_s"], rel=1e-9)
    assert rows[0]["total_s"] <= rows[1]["total_s"]  # proposed beats random baseline a on this drop


def test_one_engine_round_times_e_rounds_equals_the_full_engine():
    full = run_task(small(montecarlo={"timing": "engine"}), 0, 1, scheme="proposed")[0]
    one = run_task(small(), 0, 1, scheme="proposed")[0]
    assert one["total_s"] == pytest.approx(full["total_s"], rel=1e-9)
    assert one["energy_j"] == pytest.approx(full["energy_j"], rel=1e-9)
    assert full["rounds_completed"] == one["rounds_completed"]


def _run(scenario, root, executor="serial", **kwargs) -> pd.DataFrame:
    store = ResultsStore(root)
    store.prepare(scenario, fresh=kwargs.pop("fresh", False))
    return run_sweep(scenario, store, executor=executor, progress=False, **kwargs)


@pytest.fixture(scope="module")
def serial_rows(tmp_path_factory) -> pd.DataFrame:
    return _run(small(), tmp_path_factory.mktemp("serial"))


def test_plan_and_store_layout(serial_rows, tmp_path):
    s = small()
    assert plan_units(s) == [(p, d) for p in range(2) for d in range(3)]
    assert len(serial_rows) == 2 * 3 * 3
    assert list(
        serial_rows[["point", "drop"]].drop_duplicates().itertuples(index=False, name=None)
    ) == plan_units(s)


def test_process_executor_gives_identical_rows(serial_rows, tmp_path):
    rows = _run(small(), tmp_path, executor="process", workers=2)
    pd.testing.assert_frame_equal(rows, serial_rows)
    assert (tmp_path / "rows.parquet").exists() and (tmp_path / "rows.csv").exists()
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["base_seed"] == 11 and "fedsim_version" in meta and "git_revision" in meta
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "rows.parquet"), serial_rows)


def test_batch_size_sends_short_units_in_batches_and_long_ones_alone():
    from fedsim.experiments.harness.executors import BATCHES_PER_WORKER, MAX_BATCH, batch_size

    assert batch_size(30, 2) == 1  # a study's few long training runs: one per task
    assert batch_size(1000, 2) == MAX_BATCH  # fig5's 1000 drops
    for units in range(1, 3000, 7):
        for workers in (1, 2, 16):
            size = batch_size(units, workers)
            assert 1 <= size <= MAX_BATCH
            assert size == 1 or -(-units // size) >= workers * BATCHES_PER_WORKER


def test_process_executor_in_batches_gives_the_serial_rows(tmp_path):
    """80 units on 2 workers go 2 at a time (``batch_size``): every unit once, the serial rows."""
    scenario = small(schemes={"names": ["a", "b"]}, montecarlo={"drops": 40})
    serial = _run(scenario, tmp_path / "serial", executor="serial")
    rows = _run(scenario, tmp_path / "process", executor="process", workers=2)
    pd.testing.assert_frame_equal(rows, serial)
    assert len(list((tmp_path / "process" / "parts").glob("p*_d*.json"))) == 80


def test_ray_executor_gives_identical_rows(serial_rows, tmp_path):
    ray = pytest.importorskip("ray")
    try:
        rows = _run(small(), tmp_path, executor="ray", workers=2)
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(rows, serial_rows)


def test_resume_skips_finished_units_and_fresh_starts_over(serial_rows, tmp_path):
    s = small()
    _run(s, tmp_path)
    parts = tmp_path / "parts"
    (parts / "p0_d1.json").unlink()
    (parts / "p1_d2.json").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in parts.iterdir()}
    marked = json.loads((parts / "p0_d2.json").read_text())
    marked["rows"][0]["status"] = "edited"  # an edit the checksum catches
    (parts / "p0_d2.json").write_text(json.dumps(marked))
    rows = _run(s, tmp_path)
    pd.testing.assert_frame_equal(rows, serial_rows)
    after = {p.name: p.stat().st_mtime_ns for p in parts.iterdir()}
    assert {n for n in before if before[n] != after[n]} == {"p0_d2.json"}  # finished units are not redone
    assert sorted(p.name for p in (tmp_path / "set-aside").iterdir()) == ["p0_d2.json.1"]
    fresh = _run(s, tmp_path, fresh=True)
    pd.testing.assert_frame_equal(fresh, serial_rows)


def test_store_refuses_rows_of_another_scenario(tmp_path):
    _run(small(montecarlo={"drops": 1}), tmp_path)
    with pytest.raises(InputError, match="different scenario"):
        ResultsStore(tmp_path).prepare(small(system={"p_max_w": 0.1}))
    # more drops of the same scenario extend the run
    rows = _run(small(montecarlo={"drops": 2}), tmp_path)
    assert sorted(set(rows["drop"])) == [0, 1]


def test_sigkill_halfway_then_rerun_gives_the_uninterrupted_rows(tmp_path):
    scenario_file = tmp_path / "kill.toml"
    scenario_file.write_text(
        'name = "kill"\n[schemes]\nnames = ["proposed", "a"]\n[montecarlo]\ndrops = 24\nbase_seed = 3\n'
        'timing = "engine_round"\n[sweep.axes]\n"system.p_max_w" = [0.1, 0.2]\n'
    )
    out = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fedsim",
            "run",
            str(scenario_file),
            "--out",
            str(out),
            "--executor",
            "serial",
            "--no-figures",
            "--no-progress",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((out / "parts").glob("p*_d*.json"))) >= 3 if (out / "parts").exists() else False:
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = len(list((out / "parts").glob("p*_d*.json")))
    assert 3 <= done < 48, "the run should have been killed halfway"
    assert not (out / "rows.parquet").exists()
    from fedsim.scenario import load_scenario

    scenario = load_scenario(scenario_file)
    resumed = _run(scenario, out)
    uninterrupted = _run(scenario, tmp_path / "whole")
    pd.testing.assert_frame_equal(resumed, uninterrupted)
    assert len(resumed) == 2 * 24 * 2


def test_replay_from_convergence_records(tmp_path):
    from fedsim.cli import main
    from fedsim.learn.records import ConvergenceRecord

    for rank, rounds in ((2, 30.0), (8, 20.0)):
        curve = [{"step": s, "round": s / 10, "val_ppl": 9.0 - s / 50} for s in (0, 100, 200, 300)]
        ConvergenceRecord("gpt2", "split_fed", rank, 5, 16, 10, 512, 5.0, rounds, curve, "test").save(
            tmp_path / "recs" / f"r{rank}.json"
        )
    (tmp_path / "s.toml").write_text(
        'name = "rec"\n[training]\nrecords = ["recs/r2.json", "recs/r8.json"]\n[schemes]\nnames = ["proposed"]\n'
        '[montecarlo]\ndrops = 2\ntiming = "engine_round"\n[outputs]\nformats = ["png"]\n'
    )
    out = tmp_path / "out"
    assert (
        main(["run", str(tmp_path / "s.toml"), "--out", str(out), "--executor", "serial", "--no-progress"])
        == 0
    )
    rows = pd.read_parquet(out / "rows.parquet")
    assert set(rows["rounds"]) <= {30.0, 20.0} and set(rows["rounds_source"]) == {"gpt2:split_fed"}
    assert (out / "figures" / "convergence.png").exists() and (out / "figures" / "delay_cdf.png").exists()


def test_same_drops_across_points_reuses_placements():
    common = small(montecarlo={"same_drops_across_points": True, "drops": 1})
    a, b = run_unit(common, 0, 0), run_unit(common, 1, 0)
    assert a[0]["seed"] == b[0]["seed"] == json.dumps([11, 0, 0])
    # same placement, 4x the main-link bandwidth: the proposed scheme's delay cannot grow
    assert b[0]["total_s"] <= a[0]["total_s"]
    per_point = small(montecarlo={"drops": 1})
    assert run_unit(per_point, 1, 0)[0]["seed"] == json.dumps([11, 1, 0])


def test_git_revision_is_dirty_for_code_not_for_results(tmp_path):
    # a resumed committed study rewrites its tracked results/<name>/meta.json: that is not modified code
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "pkg").mkdir()
    (tmp_path / "results" / "study").mkdir(parents=True)
    (tmp_path / "pkg" / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "study" / "meta.json").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    head = git_revision(tmp_path / "pkg")
    assert head is not None and len(head) == 40
    (tmp_path / "results" / "study" / "meta.json").write_text('{"resumed": true}\n')
    assert git_revision(tmp_path / "pkg") == head  # from a subfolder too: the pathspecs are the top's
    (tmp_path / "pkg" / "code.py").write_text("x = 2\n")
    assert git_revision(tmp_path / "pkg") == head + "+dirty"
