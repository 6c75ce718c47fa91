"""Atomic file writes: a file is either its old version or its complete new one, never half written.

Every writer in fedsim goes through here (result parts and tables, figures, convergence records,
checkpoints, the model cache's marker): write to a temporary file in the target's own folder (same file
system), fsync it, ``os.replace`` it onto the target (atomic on POSIX and Windows) and fsync the folder, so the rename survives
a power cut (sweep parts, which carry checksums and are recomputed when torn, skip the fsyncs:
``durable=False``). On any failure, KeyboardInterrupt included, the temporary file is removed and the old target
is untouched; SIGINT/SIGTERM under ``fedsim.interrupt.interruptible`` wait until the rename is done. An
``OSError`` that means "cannot write here" (disk full, no permission, read-only file system, quota) becomes
a one-line ``WriteError`` naming the path. A SIGKILL can leave a temporary file (``.NAME.PID.tmp``);
``remove_stale_temps`` deletes those of dead processes when a run starts.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fedsim.errors import InputError
from fedsim.interrupt import signals_held

# errno -> what the user is told; these are conditions of the place written to, not bugs
_WRITE_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
}
TMP_SUFFIX = ".tmp"


class WriteError(InputError):
    """A file could not be written (disk full, no permission, read-only filesystem); one line, exit 2."""


def write_error(exc: OSError, path: str | Path | None = None) -> WriteError | None:
    """The one-line WriteError for ``exc`` if it is a cannot-write condition, else None."""
    reason = _WRITE_ERRORS.get(exc.errno or -1)
    if reason is None:
        return None
    where = path if path is not None else (exc.filename or "output")
    return WriteError(f"{where}: cannot write: {reason}; free space or choose another folder, then rerun")


def temp_name(path: Path) -> Path:
    """The temporary file that stands for ``path`` while it is written (hidden, this process's id)."""
    return path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete temporary files left in ``folder`` by killed processes (not by live ones); returns them."""
    removed = []
    if not folder.is_dir():
        return removed
    for tmp in folder.glob(f".*{TMP_SUFFIX}"):
        pid = tmp.name.rsplit(".", 2)[-2] if tmp.name.count(".") >= 3 else ""
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows: folders cannot be opened; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, fsync it and move it onto
    ``path``. Creates the parent folder. For writers that want a file name (``to_parquet``, ``torch.save``).

    ``durable=False`` skips both fsyncs: the file is still whole or absent after a killed process (the
    rename is atomic and the page cache outlives the process), but a power cut may tear it. Only for files
    that carry their own checksum and are recomputed when torn (sweep parts)."""
    path = Path(path)
    tmp = temp_name(path)
    with signals_held():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            if durable:
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException as exc:
            _discard(tmp)
            if isinstance(exc, OSError) and (err := write_error(exc, path)) is not None:
                raise err from None
            raise
    if durable:
        _fsync_dir(path.parent)


def _discard(tmp: Path) -> None:
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass


def atomic_write_bytes(path: str | Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring; ``durable``: ``atomic_path``)."""
    with atomic_path(path, durable=durable) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | Path, text: str, *, durable: bool = True) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def atomic_write_json(
    path: str | Path, data: Any, *, indent: int | None = None, allow_nan: bool = True
) -> None:
    """Write ``data`` as JSON (plus a final newline) to ``path`` atomically."""
    atomic_write_text(path, json.dumps(data, indent=indent, allow_nan=allow_nan) + "\n")


def atomic_write_csv(path: str | Path, frame) -> None:
    """Write a pandas DataFrame as CSV (no index) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def atomic_savefig(fig, path: str | Path, **kwargs: Any) -> Path:
    """Save a matplotlib figure to ``path`` atomically (file type from the suffix): a failing or killed
    ``savefig`` leaves the previous figure, never a partial one."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or None, **kwargs)
    return path


SET_ASIDE = "set-aside"  # the one place files that cannot be trusted go: <root>/set-aside/<name>.<n>


def stderr_line(line: str) -> None:
    """Say one line on stderr (the default voice of set_aside and the results store)."""
    print(line, file=sys.stderr, flush=True)


def set_aside(root: Path, path: Path, why: str, *, say: Callable[[str], None] = stderr_line) -> Path:
    """Move a file or folder that cannot be trusted into ``root/set-aside/`` as ``<name>.<n>`` (never delete
    it) and say so in one line."""
    folder = Path(root) / SET_ASIDE
    folder.mkdir(parents=True, exist_ok=True)
    n = 1
    while (target := folder / f"{path.name}.{n}").exists():
        n += 1
    os.replace(path, target)
    say(f"fedsim: {path}: {why} (set aside as {target})")
    return target
