"""One folder of the model cache and the proof that it is whole.

The marker ``fedsim-model.json`` is written last, into the temporary folder that is then renamed into place;
besides where the model came from it lists every file with its size and sha256. ``entry_state`` compares
the folder against that list (sizes always, hashes on request) and says ``ok``, ``missing``, ``partial``,
``corrupt`` or ``unverified`` (a marker of an older fedsim, with no file list). An unverified entry is
adopted once its safetensors files pass a structural check (header and length agree), so an existing cache
is not rebuilt for nothing; a partial or corrupt entry is rebuilt by the resolver.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

from fedsim.atomic import atomic_write_json

MARKER = "fedsim-model.json"  # written last: its presence means the cached folder is complete
STATES = ("ok", "missing", "partial", "corrupt", "unverified")
_VERIFIED: set[tuple] = set()  # entries whose hashes this process has checked (path, sizes, mtimes)


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (model files are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def file_table(folder: Path) -> dict[str, dict]:
    """``{relative name: {"size": bytes, "sha256": hex}}`` of every file in ``folder`` but the marker."""
    return {
        str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MARKER
    }


def write_marker(folder: Path, info: dict) -> None:
    """Write the marker of a complete folder: ``info`` plus the size and sha256 of every file."""
    atomic_write_json(folder / MARKER, {**info, "files": file_table(folder)}, indent=2)


def read_marker(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def entry_state(folder: Path, hashes: bool = False) -> tuple[str, str]:
    """(state, detail): is the cached model in ``folder`` whole? ``hashes`` also checks every sha256
    (once per process and entry; sizes are checked every time)."""
    if not folder.is_dir():
        return "missing", "not cached"
    if not (folder / MARKER).is_file():
        return "partial", f"no {MARKER} (an interrupted build or copy)"
    marker = read_marker(folder)
    if marker is None:
        return "corrupt", f"{MARKER} does not read as JSON"
    files = marker.get("files")
    if not isinstance(files, dict):
        return "unverified", "cached by an older fedsim without file hashes"
    stamp = [folder]
    for name, want in sorted(files.items()):
        path = folder / name
        if not path.is_file():
            return "partial", f"{name} is missing"
        stat = path.stat()
        if stat.st_size != want.get("size"):
            return "corrupt", f"{name} has {stat.st_size} bytes, expected {want.get('size')}"
        stamp += [name, stat.st_size, stat.st_mtime_ns]
    if hashes and tuple(stamp) not in _VERIFIED:
        for name, want in sorted(files.items()):
            if sha256_file(folder / name) != want.get("sha256"):
                return "corrupt", f"{name} does not match its sha256"
        _VERIFIED.add(tuple(stamp))
    return "ok", "verified" if hashes else "sizes match"


def safetensors_intact(path: Path) -> bool:
    """True when a safetensors file's header parses and the file is exactly as long as it says."""
    try:
        with open(path, "rb") as fh:
            (header_len,) = struct.unpack("<Q", fh.read(8))
            if header_len > 100 << 20:
                return False
            header = json.loads(fh.read(header_len))
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
        return path.stat().st_size == 8 + header_len + max(ends, default=0)
    except (OSError, struct.error, ValueError, KeyError, TypeError, IndexError):
        return False


def adopt_if_intact(folder: Path) -> bool:
    """Give an unverified entry (older marker) its file list, if its weights pass ``safetensors_intact``."""
    weights = list(folder.glob("*.safetensors"))
    if (
        not weights
        or not all(safetensors_intact(p) for p in weights)
        or not (folder / "config.json").is_file()
    ):
        return False
    write_marker(folder, {k: v for k, v in (read_marker(folder) or {}).items() if k != "files"})
    return True
