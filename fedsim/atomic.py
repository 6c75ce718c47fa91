"""Atomic file writes: a file is either its old version or its complete new one, never half written.

Every writer in fedsim goes through here (result parts and tables, convergence records, checkpoints):
write to a temporary file in the target's own folder (same file system), then ``os.replace`` it onto the
target, which POSIX and Windows make atomic. A writer that fails leaves no temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; when the block ends without error, move it onto
    ``path``. Creates the parent folder. For writers that want a file name (``to_parquet``, ``torch.save``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
