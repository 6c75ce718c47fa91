"""The atomic writers: whole file or old file, never a half; cannot-write errors as one line; signals held."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys

import pytest

from fedsim.atomic import (
    WriteError,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temps,
    temp_name,
)
from fedsim.interrupt import Interrupted, interruptible, signals_held


def test_writes_whole_files_and_leaves_no_temp(tmp_path):
    atomic_write_json(tmp_path / "a" / "x.json", {"v": [1.5, float("nan")]})
    atomic_write_text(tmp_path / "y.txt", "héllo\n")
    atomic_write_bytes(tmp_path / "z.bin", b"\x00\x01")
    assert json.loads((tmp_path / "a" / "x.json").read_text())["v"][0] == 1.5
    assert (tmp_path / "y.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "z.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["x.json", "y.txt", "z.bin"]


@pytest.mark.parametrize("failure", [RuntimeError("bug"), KeyboardInterrupt()])
def test_a_failing_writer_keeps_the_old_file(tmp_path, failure):
    target = tmp_path / "t.txt"
    target.write_text("old")

    def half_then_fail(tmp):
        tmp.write_text("new, but only ha")
        raise failure

    with pytest.raises(type(failure)), atomic_path(target) as tmp:
        half_then_fail(tmp)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["t.txt"]


@pytest.mark.parametrize(
    "code, words",
    [(errno.ENOSPC, "no space left"), (errno.EACCES, "permission denied"), (errno.EROFS, "read-only")],
)
def test_cannot_write_errors_become_one_line_naming_the_path(tmp_path, code, words):
    def full(tmp):
        tmp.write_bytes(b"partial")
        raise OSError(code, os.strerror(code), str(tmp))

    with pytest.raises(WriteError) as info, atomic_path(tmp_path / "rows.csv") as tmp:
        full(tmp)
    text = str(info.value)
    assert "\n" not in text and str(tmp_path / "rows.csv") in text and words in text
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "x"):  # other OS errors are not disguised
        open(tmp_path / "no" / "such", "rb")


def test_stale_temps_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f".p0_d0.json.{int(dead.stdout)}.tmp"
    live = tmp_path / f".p0_d1.json.{os.getppid()}.tmp"  # a live process's write in flight
    stale.write_text("x")
    live.write_text("x")
    assert remove_stale_temps(tmp_path) == [stale]
    assert live.exists() and temp_name(tmp_path / "a.json").name == f".a.json.{os.getpid()}.tmp"


def test_a_signal_during_a_write_is_delivered_after_it():
    import threading
    import time

    other = threading.Thread(target=time.sleep, args=(0.5,))  # the kernel may hand the signal to any thread
    other.start()
    seen = []
    with interruptible():
        with pytest.raises(Interrupted) as info:
            with signals_held():
                os.kill(os.getpid(), signal.SIGTERM)
                seen.append("write finished")
    assert seen == ["write finished"] and info.value.exit_code == 143
    other.join()
