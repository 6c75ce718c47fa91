"""Fault injection: kills at random moments, damaged parts, a second writer, a full disk, signals.

Every case ends with the same check: the rows after resuming equal those of an uninterrupted run, with no
row lost or duplicated, no traceback and no temporary file. Counts go into ``FaultTable`` (run with ``-s``
to see fault | tries | rows lost | rows duplicated | tracebacks).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import time

import numpy as np
import pandas as pd
import pytest
from fault_helpers import (
    FaultTable,
    fork_fedsim,
    fork_killed_in_write,
    fork_lock_holder,
    kill,
    part_count,
    processes_mentioning,
    row_faults,
    run_args,
    spawn_fedsim,
    temp_files,
    tracebacks,
    verify_parts,
    wait_for,
    write_scenario,
)

from fedsim.cli import main

DROPS = 20
UNITS = 2 * DROPS  # two sweep points


@pytest.fixture(scope="module", autouse=True)
def _print_table():
    yield
    print("\n" + FaultTable.text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The scenario file and the rows of an uninterrupted run."""
    folder = tmp_path_factory.mktemp("reference")
    scenario = write_scenario(folder, DROPS)
    assert main(run_args(scenario, folder / "out", "--executor", "serial")) == 0
    return scenario, pd.read_parquet(folder / "out" / "rows.parquet")


def _resume_and_check(scenario, out, expected, fault: str, capsys, *logs: str) -> str:
    """Rerun the killed/damaged folder to the end; assert it equals the uninterrupted rows; count faults."""
    status = main(run_args(scenario, out, "--executor", "serial"))
    err = capsys.readouterr().err
    rows = pd.read_parquet(out / "rows.parquet")
    faults = row_faults(rows, expected)
    FaultTable.add(fault, **faults, tracebacks=tracebacks(err, *logs))
    assert status == 0, err
    assert faults == {"lost": 0, "duplicated": 0}
    pd.testing.assert_frame_equal(rows, expected)
    assert tracebacks(err, *logs) == 0
    assert temp_files(out) == []
    return err


def test_sigkill_at_20_seeded_moments_then_resume_gives_the_uninterrupted_rows(reference, tmp_path, capsys):
    scenario, expected = reference
    rng = np.random.default_rng(1212)
    # a kill moment = after the k-th finished unit, plus a random fraction of a unit's time
    moments = list(zip(rng.integers(0, UNITS, 20), rng.uniform(0.0, 0.02, 20), strict=True))
    mid_run = 0
    for i, (after_units, extra_s) in enumerate(moments):
        out, log = tmp_path / f"kill{i}", tmp_path / f"kill{i}.log"
        child = fork_fedsim(run_args(scenario, out, "--executor", "serial"), log)
        wait_for(lambda o=out, k=after_units, c=child: part_count(o) >= k or not c.is_alive())
        time.sleep(extra_s)
        kill(child)
        mid_run += not (out / "rows.parquet").exists()
        verify_parts(out)  # whatever the moment, every part left behind is whole
        _resume_and_check(scenario, out, expected, "SIGKILL during a sweep (serial)", capsys, log.read_text())
    assert mid_run >= 1  # the kills did interrupt runs


def test_sigkill_inside_a_part_write_leaves_no_half_part(reference, tmp_path, capsys):
    scenario, expected = reference
    for nth in (1, 7, UNITS):
        out, log = tmp_path / f"w{nth}", tmp_path / f"w{nth}.log"
        child = fork_killed_in_write(run_args(scenario, out, "--executor", "serial"), log, nth)
        child.join()
        assert child.exitcode == -signal.SIGKILL
        assert part_count(out) == nth - 1 and len(temp_files(out)) == 1  # the temp file SIGKILL left
        verify_parts(out)
        _resume_and_check(
            scenario, out, expected, "SIGKILL between write and rename", capsys, log.read_text()
        )


def test_sigkill_process_executor_leaves_no_workers_and_resumes(reference, tmp_path, capsys):
    scenario, expected = reference
    for i, after_units in enumerate((2, 25)):
        out = tmp_path / f"proc{i}"
        proc = spawn_fedsim(run_args(scenario, out, "--executor", "process", "--workers", "2"))
        wait_for(lambda o=out, k=after_units, p=proc: part_count(o) >= k or p.poll() is not None)
        proc.kill()  # the main process only, as `kill -9 PID` does
        _, err = proc.communicate()
        assert wait_for(lambda o=out: not processes_mentioning(str(o)), 30), "orphaned workers"
        verify_parts(out)
        _resume_and_check(scenario, out, expected, "SIGKILL during a sweep (process pool)", capsys, err)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_stop_cleanly_and_say_how_to_resume(reference, tmp_path, capsys, sig, code):
    scenario, expected = reference
    out = tmp_path / "sig"
    proc = spawn_fedsim(run_args(scenario, out, "--executor", "process", "--workers", "2"))
    assert wait_for(lambda: part_count(out) >= 2 or proc.poll() is not None)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # Ctrl-C: the whole process group, workers included
    else:
        proc.send_signal(sig)  # `kill PID`: the main process only
    _, err = proc.communicate()
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == code, err
    assert "interrupted by" in err and "to resume" in err and str(out) in err
    assert tracebacks(err) == 0 and temp_files(out) == []
    assert wait_for(lambda: not processes_mentioning(str(out)), 30), "orphaned workers"
    verify_parts(out)
    _resume_and_check(scenario, out, expected, f"{signal.Signals(sig).name} during a sweep", capsys, err)


def _damage(out, capsys):
    parts = out / "parts"
    text = (parts / "p0_d3.json").read_text()
    (parts / "p0_d3.json").write_text(text[: len(text) // 2])  # truncated
    data = json.loads((parts / "p1_d5.json").read_text())
    data["rows"][1]["total_s"] *= 1.5  # garbled but valid JSON: only the checksum sees it
    (parts / "p1_d5.json").write_text(json.dumps(data))
    (parts / "p0_d7.json").write_bytes(b"\x00\xff" * 100)  # garbage
    (parts / "p1_d2.json").write_text(json.dumps(data["rows"]))  # old format: no checksum


def test_truncated_garbled_old_and_foreign_parts_are_set_aside_and_redone(reference, tmp_path, capsys):
    scenario, expected = reference
    out = tmp_path / "out"
    assert main(run_args(scenario, out, "--executor", "serial")) == 0
    (tmp_path / "other").mkdir()
    other = write_scenario(tmp_path / "other", DROPS)
    other.write_text(other.read_text().replace("base_seed = 5", "base_seed = 6"))
    assert main(run_args(other, tmp_path / "foreign", "--executor", "serial")) == 0
    capsys.readouterr()
    _damage(out, capsys)
    shutil.copy(tmp_path / "foreign" / "parts" / "p1_d9.json", out / "parts" / "p1_d9.json")
    err = _resume_and_check(scenario, out, expected, "truncated/garbled/old/foreign parts", capsys)
    notes = [line for line in err.splitlines() if "set aside as" in line]
    assert len(notes) == 5, err
    for name, why in (("p0_d3", "not valid JSON"), ("p1_d5", "checksum"), ("p0_d7", "not valid JSON"),
                      ("p1_d2", "older fedsim"), ("p1_d9", "another scenario")):  # fmt: skip
        assert any(f"{name}.json: " in line and why in line for line in notes), (name, err)
    assert len(list((out / "set-aside").iterdir())) == 5  # renamed, not deleted


def test_damaged_scenario_json_is_set_aside_and_parts_checked_by_their_key(reference, tmp_path, capsys):
    scenario, expected = reference
    out = tmp_path / "out"
    assert main(run_args(scenario, out, "--executor", "serial")) == 0
    (out / "parts" / "p0_d0.json").unlink()
    (out / "scenario.json").write_text('{"name": "fau')
    capsys.readouterr()
    err = _resume_and_check(scenario, out, expected, "truncated scenario.json", capsys)
    assert "scenario.json: not valid JSON" in err


def test_a_second_writer_is_refused_and_a_dead_holder_taken_over(reference, tmp_path, capsys):
    scenario, expected = reference
    out = tmp_path / "out"
    holder = fork_lock_holder(out, tmp_path / "ready")
    try:
        assert wait_for(lambda: (tmp_path / "ready").exists())
        assert main(run_args(scenario, out, "--executor", "serial")) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"PID {holder.pid}" in err and "in use by another fedsim run" in err
        assert not (out / "parts").exists()  # the refused run wrote nothing
    finally:
        kill(holder)  # dies holding the lock: its name stays behind in .fedsim-lock.json
    err = _resume_and_check(scenario, out, expected, "second writer; dead holder", capsys)
    assert f"taking over the lock of PID {holder.pid}" in err


class _FailingFile:
    """A file whose writes stop half-way with an OSError, as a disk that fills up does."""

    def __init__(self, fh, code: int):
        self.fh, self.code = fh, code

    def write(self, data: bytes) -> int:
        self.fh.write(data[: len(data) // 2])
        self.fh.flush()
        raise OSError(self.code, "injected", self.fh.name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left"), (errno.EACCES, "permission denied"),
                                         (errno.EROFS, "read-only file system")])  # fmt: skip
def test_a_failing_disk_gives_one_line_and_no_partial_file(
    reference, tmp_path, capsys, monkeypatch, code, words
):
    import fedsim.atomic

    scenario, expected = reference
    out = tmp_path / "out"
    writes = {"n": 0}

    def open_failing_on_part_9(path, mode="r", *args, **kwargs):
        fh = open(path, mode, *args, **kwargs)
        if "w" in mode and "/parts/" in str(path):
            writes["n"] += 1
            if writes["n"] == 9:
                return _FailingFile(fh, code)
        return fh

    monkeypatch.setattr(fedsim.atomic, "open", open_failing_on_part_9, raising=False)
    assert main(run_args(scenario, out, "--executor", "serial")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and words in err and "p0_d8.json" in err, err
    assert part_count(out) == 8 and temp_files(out) == [] and not (out / "rows.parquet").exists()
    verify_parts(out)
    # the table: rows.parquet fails half-written
    monkeypatch.undo()

    def parquet_failing(frame, path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"PAR1" + b"\0" * 100)
        raise OSError(code, "injected", str(path))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", parquet_failing)
    assert main(run_args(scenario, out, "--executor", "serial")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and words in err and "rows.parquet" in err, err
    assert temp_files(out) == [] and not (out / "rows.parquet").exists()
    monkeypatch.undo()
    _resume_and_check(scenario, out, expected, f"{errno.errorcode[code]} on write", capsys, err)
