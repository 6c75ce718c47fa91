"""The results folder of one scenario: ``results/<name>/``.

Layout: ``scenario.json`` (the resolved scenario), ``meta.json`` (package version, git revision, seeds),
``parts/p<point>_d<drop>.json`` (the rows of one finished unit with their checksum and the scenario's key,
see ``parts``; written to a temporary file, fsynced and renamed, so a killed run leaves only whole parts),
and at the end ``rows.parquet`` + ``rows.csv`` (the verified parts, in task order) and ``figures/``.
Rerunning skips units whose part verifies; a part that does not (truncated, garbled, from another
scenario) is moved to ``set-aside/`` and its unit recomputed. ``fresh`` deletes earlier rows first.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from fedsim import __version__
from fedsim.atomic import (
    SET_ASIDE,
    atomic_path,
    atomic_write_csv,
    atomic_write_text,
    remove_stale_temps,
    set_aside,
    stderr_line,
)
from fedsim.errors import InputError
from fedsim.experiments.harness.parts import BadPart, check_part, encode_part, scenario_key
from fedsim.scenario.model import SCHEME_NAMES, Scenario

_PART = re.compile(r"^p(\d+)_d(\d+)\.json$")
# Changing these does not change any row already written, so a run may resume across them.
_RESUMABLE_KEYS = ("montecarlo.drops", "outputs", "description", "live", "study.existing_only", "study.reuse_records")
__all__ = ["ResultsStore", "atomic_write_text", "git_revision"]


def git_revision(cwd: Path | None = None) -> str | None:
    """The checkout's commit (with '+dirty' if a tracked file outside ``results/`` is modified), or None
    outside git.

    ``results/`` is left out: a committed study that resumes rewrites its own tracked scenario.json and
    meta.json, which says nothing about the code that produced its rows.
    """
    where = cwd or Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10
        )
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)", ":(top,exclude)results"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _comparable(data: dict[str, Any]) -> dict[str, Any]:
    data = json.loads(json.dumps(data))
    for key in _RESUMABLE_KEYS:
        head, _, tail = key.partition(".")
        if tail and isinstance(data.get(head), dict):
            data[head].pop(tail, None)
        elif not tail:
            data.pop(head, None)
    return data


def _portable(data: dict[str, Any], root: Path) -> dict[str, Any]:
    """``study.reuse_records`` written relative to the results folder (the scenario loader resolves them to
    this machine's absolute paths; a committed scenario.json must not carry those)."""
    study = data.get("study")
    if isinstance(study, dict) and study.get("reuse_records"):
        base = root.resolve()
        study["reuse_records"] = [os.path.relpath(p, base) for p in study["reuse_records"]]
    return data


_JSON_SCALARS = (str, int, float, bool, type(None))  # values a part's JSON gives back unchanged


class ResultsStore:
    """Rows, metadata and figures of one scenario's runs, in ``root``.

    ``say`` prints the one-line notices (a part set aside); default: stderr.
    """

    def __init__(self, root: str | Path, say: Callable[[str], None] = stderr_line):
        self.root = Path(root)
        self.parts = self.root / "parts"
        self.figures = self.root / "figures"
        self.say = say
        self._key: str | None = None
        # the rows of each part this store wrote: consolidating takes them from here (``_read_part``)
        self._written: dict[tuple[int, int], list[dict]] = {}

    def lock(self, command: str = "fedsim run"):
        """Context manager: hold the folder's one-writer lock (``FolderBusy`` if another run has it)."""
        from fedsim.experiments.harness.lock import folder_lock

        return folder_lock(self.root, command, self.say)

    def prepare(self, scenario: Scenario, fresh: bool = False, meta: dict[str, Any] | None = None) -> None:
        """Create the folder; with ``fresh`` delete earlier rows; refuse to mix rows of another scenario."""
        resolved = _portable(scenario.model_dump(mode="json"), self.root)
        old = self.root / "scenario.json"
        if fresh and self.root.exists():
            for name in ("parts", "figures", "live", SET_ASIDE):
                shutil.rmtree(self.root / name, ignore_errors=True)
            for name in ("rows.parquet", "rows.csv", "summary.md"):
                (self.root / name).unlink(missing_ok=True)
        elif old.exists() and self.done():
            previous = self._previous_scenario(old)
            old_data, new_data = _comparable(previous or {}), _comparable(resolved)
            if previous is not None and old_data != new_data:
                changed = sorted(
                    k for k in set(old_data) | set(new_data) if old_data.get(k) != new_data.get(k)
                )
                raise InputError(
                    f"{self.root}: holds rows of a different scenario (changed: {', '.join(changed)}); "
                    "rerun with --fresh or choose --out"
                )
        self._key = scenario_key(_comparable(resolved))
        self.parts.mkdir(parents=True, exist_ok=True)
        for folder in (self.root, self.parts, self.root / "records"):
            remove_stale_temps(folder)  # left by a killed run (SIGKILL cannot clean up)
        atomic_write_text(old, json.dumps(resolved, indent=2, allow_nan=True) + "\n")
        info = {
            "fedsim_version": __version__,
            "git_revision": git_revision(),
            "written_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "base_seed": scenario.montecarlo.base_seed,
            "drops": scenario.montecarlo.drops,
            "seeding": "numpy SeedSequence([base_seed, point, drop, stream]); stream 0 drop, 1 scheme, 2 engine",
            **(meta or {}),
        }
        atomic_write_text(self.root / "meta.json", json.dumps(info, indent=2) + "\n")

    def _previous_scenario(self, path: Path) -> dict[str, Any] | None:
        """The scenario.json of an earlier run; None (and the file set aside) if it is damaged: the parts'
        own scenario keys then decide which rows are kept."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                return data
        except (UnicodeDecodeError, json.JSONDecodeError):
            pass
        self.set_aside(path, "not valid JSON (truncated or garbled); each part's own key is checked instead")
        return None

    def key(self) -> str:
        """The scenario key every part of this folder carries (of the prepared scenario, else scenario.json)."""
        if self._key is None:
            self._key = scenario_key(_comparable(self.scenario_data()))
        return self._key

    def done(self) -> set[tuple[int, int]]:
        """(point, drop) units that have a part file (not yet verified: see ``verified``)."""
        if not self.parts.exists():
            return set()
        found = (_PART.match(p.name) for p in self.parts.iterdir())
        return {(int(m.group(1)), int(m.group(2))) for m in found if m}

    def part_path(self, point: int, drop: int) -> Path:
        return self.parts / f"p{point}_d{drop}.json"

    def verified(self) -> set[tuple[int, int]]:
        """Units whose part is whole, intact and of this scenario; every other part is set aside (moved to
        ``set-aside/``, one line each) so that its unit is recomputed."""
        good = set()
        for point, drop in sorted(self.done()):
            path = self.part_path(point, drop)
            try:
                check_part(path, point, drop, key=self.key())
            except BadPart as why:
                self.set_aside(path, f"{why}; its unit is recomputed")
                continue
            good.add((point, drop))
        return good

    def set_aside(self, path: Path, why: str) -> Path:
        """Move a file or folder that cannot be trusted to ``set-aside/`` (never delete it) and say so."""
        return set_aside(self.root, path, why, say=self.say)

    def write_part(self, point: int, drop: int, rows: list[dict]) -> None:
        """Save one unit's rows (with their checksum and the scenario key) atomically. Not fsynced: a part is
        whole or absent after a kill, and one torn by a power cut fails its checksum and is run again, so a
        sweep does not wait for the disk 2000 times (the consolidated rows are written durably)."""
        text = encode_part(point, drop, self.key(), rows=rows)
        atomic_write_text(self.part_path(point, drop), text, durable=False)
        if all(type(value) in _JSON_SCALARS for row in rows for value in row.values()):
            self._written[(int(point), int(drop))] = rows  # read back, they would be these very values

    def _read_part(self, point: int, drop: int) -> list[dict]:
        """The rows of a part: those this store wrote, as they were computed (plain scalars only: read back,
        JSON gives the same values in the same key order; floats round-trip), else the file's, checked
        (``check_part``)."""
        written = self._written.get((point, drop))
        if written is not None:
            return written
        return check_part(self.part_path(point, drop), point, drop, key=self.key())

    def read_parts(self, units: set[tuple[int, int]] | None = None) -> pd.DataFrame:
        """All saved rows (of ``units`` if given), sorted by point, drop and scheme order; every part this
        store did not write is verified as it is read (InputError naming the file if one went bad since the
        run checked it)."""
        rows: list[dict] = []
        for point, drop in sorted(self.done()):
            if units is None or (point, drop) in units:
                try:
                    rows.extend(self._read_part(point, drop))
                except BadPart as why:
                    raise InputError(f"{self.part_path(point, drop)}: {why}; rerun to recompute it") from None
        frame = pd.DataFrame(rows)
        if frame.empty:
            return frame
        if "scheme" not in frame:  # a convergence study: one training run per unit
            return frame.sort_values(["point", "drop"], kind="stable").reset_index(drop=True)
        order = {name: i for i, name in enumerate(SCHEME_NAMES)}
        frame["_order"] = frame["scheme"].map(order)
        frame = frame.sort_values(["point", "drop", "_order"], kind="stable").drop(columns="_order")
        return frame.reset_index(drop=True)

    def consolidate(self, units: set[tuple[int, int]] | None = None) -> pd.DataFrame:
        """Write ``rows.parquet`` and ``rows.csv`` (atomically) from the verified parts; returns the table."""
        frame = self.read_parts(units)
        for name, write in (("rows.parquet", frame.to_parquet), ("rows.csv", frame.to_csv)):
            with atomic_path(self.root / name) as tmp:
                write(tmp, index=False)
        return frame

    def rows(self) -> pd.DataFrame:
        """The consolidated rows (Parquet); InputError if the run has not finished."""
        path = self.root / "rows.parquet"
        if not path.exists():
            raise InputError(f"{self.root}: no rows.parquet; run the scenario first (fedsim run)")
        return pd.read_parquet(path)

    def write_record_curves(self, paths: tuple[str, ...]) -> None:
        """Copy the curves of the convergence records a replay scenario reads into ``records/curve.csv``,
        so its convergence figure, like every figure, comes from this folder."""
        from fedsim.learn.records import ConvergenceRecord

        rows = []
        for path in paths:
            rec = ConvergenceRecord.load(path)
            rows += [
                {"rank": rec.rank, "model": rec.model, "target_ppl": rec.target_ppl, **row}
                for row in rec.curve
            ]
        atomic_write_csv(self.root / "records" / "curve.csv", pd.DataFrame(rows))

    def scenario_data(self) -> dict[str, Any]:
        """The resolved scenario the rows came from."""
        path = self.root / "scenario.json"
        if not path.exists():
            raise InputError(f"{self.root}: not a results folder (no scenario.json)")
        return json.loads(path.read_text(encoding="utf-8"))
