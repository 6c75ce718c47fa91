"""Unwritable output for real (not a patched write): no permission (EACCES) and a read-only file system
(EROFS). As root, chmod has no effect, so the EACCES cases run in a forked child that drops to the
unprivileged user 65534; the EROFS cases run in a child inside a private mount namespace (``unshare -rm``)
where the results folder is bind-mounted read-only. Each must end with one line naming the path, exit 2,
nothing half-written and no traceback. The patched-write tests in test_atomic.py / test_faults.py stay."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from fault_helpers import ROOT, FaultTable, run_args, temp_files, tracebacks, write_scenario

from fedsim.cli import main

NOBODY = 65534


@pytest.fixture(scope="module", autouse=True)
def _print_table():
    yield
    print("\n" + FaultTable.text())


@pytest.fixture
def open_dir():
    """A folder every user can reach (pytest's tmp_path sits under root-only 0700 folders)."""
    folder = Path(tempfile.mkdtemp(prefix="fedsim-fs-"))
    folder.chmod(0o755)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    shutil.rmtree(folder)


def _as_nobody(target, *args) -> int:
    """Run ``target(*args)`` in a forked child that has dropped to uid/gid 65534; its exit code. The child
    keeps the modules this process imported (the interpreter's own files are not readable by 65534 here)."""

    def child() -> None:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        target(*args)

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(120)
    return proc.exitcode


def _run_logged(argv: list[str], log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = sys.stderr = open(fd, "w", buffering=1)  # not pytest's capture of the parent
    code = main(argv)
    sys.stderr.flush()
    os._exit(code)


def _write_text(path: str, log: str) -> None:
    from fedsim.atomic import WriteError, atomic_write_text

    try:
        atomic_write_text(path, "rows\n")
    except WriteError as exc:
        Path(log).write_text(str(exc))
        os._exit(2)
    os._exit(0)


def _log(folder: Path) -> Path:
    log = folder / "child.log"
    log.touch()
    log.chmod(0o666)
    return log


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping to uid 65534 needs root")


@needs_root
def test_no_permission_for_real_one_line_nothing_written(open_dir, capsys):
    # Prepare: a finished sweep (every module it needs now imported), then a copy owned by 65534 whose
    # parts/ folder is chmod 555 (read and enter, no writing), and a folder 555 for the atomic writer alone
    scenario = write_scenario(open_dir, drops=2)
    scenario.chmod(0o644)
    assert main(run_args(scenario, open_dir / "warm", "--executor", "serial")) == 0
    out = open_dir / "out"
    (out / "parts").mkdir(parents=True)
    os.chown(out, NOBODY, NOBODY)
    (out / "parts").chmod(0o555)
    locked = open_dir / "locked"
    locked.mkdir(mode=0o555)
    locked.chmod(0o555)
    log = _log(open_dir)
    capsys.readouterr()
    # Execute: the atomic writer, then a whole `fedsim run`, as user 65534
    code_write = _as_nobody(_write_text, str(locked / "rows.csv"), str(log))
    said_write = log.read_text()
    log.write_text("")
    code_run = _as_nobody(_run_logged, run_args(scenario, out, "--executor", "serial"), str(log))
    said_run = log.read_text()
    # Assert
    assert code_write == 2 and said_write == f"{locked / 'rows.csv'}: cannot write: permission denied; free " \
        "space or choose another folder, then rerun"  # fmt: skip
    assert list(locked.iterdir()) == []
    errors = [line for line in said_run.splitlines() if "error" in line]
    assert code_run == 2 and len(errors) == 1, said_run
    assert f"{out / 'parts'}/p0_d0.json: cannot write: permission denied" in errors[0]
    assert list((out / "parts").iterdir()) == [] and temp_files(out) == []
    assert not (out / "rows.parquet").exists() and tracebacks(said_run) == 0
    FaultTable.add("no permission (EACCES, real, uid 65534)", tracebacks=tracebacks(said_run, said_write))


def _unshare_works() -> str | None:
    """None if this container lets us make a private mount namespace with a read-only bind mount, else why."""
    if shutil.which("unshare") is None:
        return "no unshare(1) here"
    probe = tempfile.mkdtemp(prefix="fedsim-ro-probe-")
    try:
        done = subprocess.run(
            [
                "unshare",
                "-rm",
                "sh",
                "-c",
                f"mount --bind {probe} {probe} && mount -o remount,ro,bind {probe} "
                f"{probe} && ! touch {probe}/x 2>/dev/null",
            ],  # fmt: skip
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        shutil.rmtree(probe)
    if done.returncode != 0:
        return (
            f"the container forbids a read-only bind mount in a user namespace: {done.stderr.strip()[:120]}"
        )
    return None


def _read_only(folder: Path, command: list[str]) -> subprocess.CompletedProcess:
    """``command`` run where ``folder`` is mounted read-only (a private mount namespace: only it sees that)."""
    script = (
        f'mount --bind "{folder}" "{folder}" && mount -o remount,ro,bind "{folder}" "{folder}" && exec "$@"'
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", *command], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_read_only_file_system_for_real_one_line_nothing_written(tmp_path):
    why = _unshare_works()
    if why is not None:
        pytest.skip(why)
    # Prepare: a finished sweep whose folder then goes read-only (a resume on a read-only disk), and an
    # empty read-only folder for the atomic writer alone
    scenario = write_scenario(tmp_path, drops=2)
    out = tmp_path / "out"
    assert main(run_args(scenario, out, "--executor", "serial")) == 0
    before = sorted((p.relative_to(out), p.stat().st_size) for p in out.rglob("*"))
    empty = tmp_path / "empty"
    empty.mkdir()
    code = (
        "import sys\nfrom fedsim.atomic import WriteError, atomic_write_text\ntry:\n"
        f"    atomic_write_text({str(empty / 'rows.csv')!r}, 'rows')\n"
        "except WriteError as exc:\n    sys.exit(f'{exc}')\n"
    )
    # Execute
    write = _read_only(empty, [sys.executable, "-c", code])
    run = _read_only(out, [sys.executable, "-m", "fedsim", *run_args(scenario, out, "--executor", "serial")])
    # Assert: the writer refuses with the one-line WriteError; the run exits 2 naming the file; nothing changed
    assert write.returncode == 1 and write.stderr.startswith(f"{empty / 'rows.csv'}: cannot write: read-only")
    assert list(empty.iterdir()) == []
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.stderr
    assert (
        lines[0].startswith(f"fedsim run: error: {out}") and "cannot write: read-only file system" in lines[0]
    )
    assert sorted((p.relative_to(out), p.stat().st_size) for p in out.rglob("*")) == before
    assert tracebacks(run.stderr) == 0
    FaultTable.add("read-only file system (EROFS, real, ro bind mount)", tracebacks=tracebacks(run.stderr))
