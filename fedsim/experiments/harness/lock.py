"""One writer per results folder: an OS file lock (``filelock``) held for the whole run.

The lock is the kernel's (flock on POSIX), so it disappears with its process, even one killed by SIGKILL:
a stale lock is never in the way. Beside it ``.fedsim-lock.json`` names the holder (PID, host, start time,
command) so a refused second run can say who holds the folder; when a run finds that file but gets the lock,
the previous holder died without cleaning up, and the run says it takes over.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from fedsim.atomic import atomic_write_json, write_error
from fedsim.errors import InputError

LOCK_NAME = ".fedsim-lock"
OWNER_NAME = ".fedsim-lock.json"


class FolderBusy(InputError):
    """Another process holds the results folder."""


def _owner(root: Path) -> dict | None:
    try:
        data = json.loads((root / OWNER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _holder_text(owner: dict | None) -> str:
    if not owner:
        return "PID unknown"
    host = f" on {owner['host']}" if owner.get("host") and owner["host"] != socket.gethostname() else ""
    since = f", since {owner['started_utc']}" if owner.get("started_utc") else ""
    return f"PID {owner.get('pid', '?')}{host}{since}"


def check_folder(root: str | Path, option: str = "--out") -> None:
    """InputError (one line) if ``root``, or a folder above it, is an existing file: a results folder goes
    there. Checked before anything is written."""
    root = Path(root)
    for path in (root, *root.parents):
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                where = "is a file" if path == root else f"is under {path}, which is a file"
                raise InputError(f"{option} {root}: {where}, not a folder; choose another {option}")
            return


def _not_a_folder(root: Path, exc: OSError) -> InputError | None:
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        return InputError(f"{root}: a file is in the way of this folder ({exc.strerror}); choose another --out")
    return None


@contextmanager
def folder_lock(root: str | Path, command: str = "fedsim", say=None) -> Iterator[None]:
    """Hold ``root``'s lock for the ``with`` body; FolderBusy at once if another process holds it."""
    root = Path(root)
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    check_folder(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise (write_error(exc, root) or _not_a_folder(root, exc) or exc) from None
    lock = FileLock(root / LOCK_NAME, timeout=0)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        owner = None
        for _ in range(20):  # the holder writes its name just after locking: give it a moment
            if (owner := _owner(root)) is not None:
                break
            time.sleep(0.05)
        raise FolderBusy(
            f"{root}: in use by another fedsim run ({_holder_text(owner)}); wait for it to finish, or use "
            "another --out"
        ) from None
    except OSError as exc:
        raise (write_error(exc, root / LOCK_NAME) or exc) from None
    try:
        stale = _owner(root)
        if stale is not None and stale.get("pid") != os.getpid():
            say(f"fedsim: {root}: taking over the lock of {_holder_text(stale)}, which is no longer running")
        atomic_write_json(
            root / OWNER_NAME,
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "command": command,
            },
        )
        yield
    finally:
        try:
            (root / OWNER_NAME).unlink(missing_ok=True)
        finally:
            lock.release()
