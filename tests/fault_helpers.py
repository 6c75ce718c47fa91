"""Helpers of the fault-injection tests: run ``fedsim`` in a child process, kill it, count rows."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
KEY = ["point", "drop", "scheme"]
SWEEP_TOML = (
    'name = "faults"\n[schemes]\nnames = ["proposed", "a"]\n[montecarlo]\ndrops = {drops}\nbase_seed = 5\n'
    'timing = "analytic"\n[sweep.axes]\n"system.p_max_w" = [0.1, 0.2]\n'
)


def write_scenario(folder: Path, drops: int = 20, **extra: str) -> Path:
    path = folder / "faults.toml"
    path.write_text(SWEEP_TOML.format(drops=drops) + "".join(extra.values()))
    return path


def run_args(scenario: Path, out: Path, *more: str) -> list[str]:
    return ["run", str(scenario), "--out", str(out), "--no-figures", "--no-progress", *more]


def _child(argv: list[str], log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    from fedsim.cli import main

    os._exit(main(argv))


def fork_fedsim(argv: list[str], log: Path) -> multiprocessing.Process:
    """``fedsim ARGV`` in a forked child (starts at once: the modules are already imported here)."""
    log.touch()
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(argv, str(log)))
    proc.start()
    return proc


def spawn_fedsim(argv: list[str], **kwargs) -> subprocess.Popen:
    """``python -m fedsim ARGV`` as a fresh process (its own session, so signals reach only it)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "fedsim", *argv],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def wait_for(predicate, limit_s: float = 120.0) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def part_count(out: Path) -> int:
    return len(list((out / "parts").glob("p*_d*.json"))) if (out / "parts").is_dir() else 0


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp") or ".partial" in p.name]


def verify_parts(out: Path) -> None:
    """Every part file in ``out`` is whole and of this scenario (none half-written)."""
    from fedsim.experiments.harness.store import ResultsStore

    store = ResultsStore(out, say=_fail)
    assert store.verified() == store.done()


def _fail(line: str) -> None:
    raise AssertionError(f"a part did not verify after a kill: {line}")


def row_faults(rows: pd.DataFrame, expected: pd.DataFrame) -> dict[str, int]:
    """Rows lost and rows duplicated relative to the uninterrupted run."""
    got = list(rows[KEY].itertuples(index=False, name=None))
    want = set(expected[KEY].itertuples(index=False, name=None))
    return {"lost": len(want - set(got)), "duplicated": len(got) - len(set(got))}


def tracebacks(*texts: str) -> int:
    return sum(t.count("Traceback (most recent call last)") for t in texts)


class FaultTable:
    """fault | tries | rows lost | rows duplicated | tracebacks, printed at the end of the module (-s)."""

    rows: dict[str, list[int]] = {}

    @classmethod
    def add(cls, fault: str, lost: int = 0, duplicated: int = 0, tracebacks: int = 0) -> None:
        row = cls.rows.setdefault(fault, [0, 0, 0, 0])
        for i, v in enumerate((1, lost, duplicated, tracebacks)):
            row[i] += v

    @classmethod
    def text(cls) -> str:
        lines = ["| fault | tries | rows lost | rows duplicated | tracebacks |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {v[0]} | {v[1]} | {v[2]} | {v[3]} |" for k, v in cls.rows.items()]
        return "\n".join(lines)


def kill(proc, sig: int = signal.SIGKILL) -> None:
    if isinstance(proc, subprocess.Popen):
        os.killpg(proc.pid, sig)
        proc.communicate()
    else:
        os.kill(proc.pid, sig)
        proc.join()


def _child_killed_in_write(argv: list[str], log: str, nth: int) -> None:
    """Like ``_child``, but the process SIGKILLs itself inside its ``nth`` part write: after the temporary
    file is written, before it is renamed (the worst moment for a crash)."""
    import fedsim.atomic

    calls = {"n": 0}
    real_replace = os.replace

    def die_before_rename(src, dst) -> None:
        if "/parts/" in str(dst):
            calls["n"] += 1
            if calls["n"] == nth:
                os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)

    fedsim.atomic.os.replace = die_before_rename
    _child(argv, log)


def fork_killed_in_write(argv: list[str], log: Path, nth: int) -> multiprocessing.Process:
    log.touch()
    proc = multiprocessing.get_context("fork").Process(
        target=_child_killed_in_write, args=(argv, str(log), nth)
    )
    proc.start()
    return proc


def _hold_lock(root: str, ready: str) -> None:
    from fedsim.experiments.harness.lock import folder_lock

    with folder_lock(root, "fedsim run (test holder)"):
        Path(ready).touch()
        time.sleep(600)


def fork_lock_holder(root: Path, ready: Path) -> multiprocessing.Process:
    proc = multiprocessing.get_context("fork").Process(target=_hold_lock, args=(str(root), str(ready)))
    proc.start()
    return proc


def processes_mentioning(text: str) -> list[int]:
    """PIDs of live processes whose command line contains ``text`` (orphaned workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = (entry / "stat").read_text().split()[2]
            except OSError:
                continue
            if text in cmd and state != "Z":
                found.append(int(entry.name))
    return found
