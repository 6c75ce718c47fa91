"""A convergence study: one real training run per sweep point (e.g. rank x training scheme x seed).

The sweep runner plans one unit per point and an executor runs ``run_study_unit``: it trains (or, when the
run's record already exists, reads it), writes the convergence record atomically to
``<results>/records/<model>_<scheme>_r<rank>_s<seed>.json`` and returns one row per run. A killed study
resumes at the run (finished records are kept) and, with ``training.checkpoint_every``, at the step
(``<results>/checkpoints/``). ``fedsim.experiments.study.tables`` makes the rows and turns them into E(r) per
target and Table IV.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

from fedsim.atomic import set_aside
from fedsim.errors import InputError
from fedsim.experiments.study.tables import study_row
from fedsim.learn.config import TrainConfig, config_diff
from fedsim.learn.records import ConvergenceRecord

# TrainConfig fields that may differ between a saved record and the run asked for (they do not change it)
_NOT_THE_RUN = {"checkpoint_every", "checkpoint_path", "target_ppl", "device"}


def record_stem(cfg: TrainConfig, varying: tuple[str, ...] = ()) -> str:
    """``<model>_<scheme>_r<rank>_s<seed>``, then ``_lr<lr>`` and ``_<field>-<value>`` for each other training
    field the study's runs differ in (``varying``, from ``name_fields``): one file name per run of a study."""
    parts = [f"{Path(cfg.model).name}_{cfg.scheme}_r{cfg.rank}_s{cfg.seed}"]
    for field in varying:
        value = getattr(cfg, field)
        text = f"{value:g}" if isinstance(value, float) else str(value)
        parts.append(f"_lr{text}" if field == "lr" else f"_{field}-{text}")
    return "".join(parts)


_IN_EVERY_NAME = {"scheme", "rank", "seed"}


def name_fields(scenario) -> tuple[str, ...]:
    """The training fields besides scheme, rank and seed that the study's runs differ in, in the order of its
    sweep axes (lr first: a swept lr, or one per rank): the suffix of each record's name."""
    fields = ["lr"] if scenario.study.lr_by_rank is not None or "study.training.lr" in scenario.sweep.axes else []
    for axis in scenario.sweep.axes:
        field = axis.removeprefix("study.training.")
        if axis.startswith("study.training.") and field not in _IN_EVERY_NAME and field not in fields:
            fields.append(field)
    return tuple(fields)


def run_config(scenario, point_index: int) -> TrainConfig:
    """The TrainConfig of one point of a study (its checkpoint inside the results folder)."""
    from fedsim.experiments.montecarlo.tasks import _point_scenario

    study = _point_scenario(scenario, point_index).study
    cfg = study.training
    if study.lr_by_rank is not None:
        if cfg.rank not in study.lr_by_rank:
            raise InputError(
                f"study.lr_by_rank: no learning rate for rank {cfg.rank} (has {sorted(study.lr_by_rank)})"
            )
        cfg = cfg.model_copy(update={"lr": float(study.lr_by_rank[cfg.rank])})
    if cfg.checkpoint_every and study.out_dir:
        path = Path(study.out_dir) / "checkpoints" / f"{record_stem(cfg, name_fields(scenario))}.pt"
        cfg = cfg.model_copy(update={"checkpoint_path": str(path)})
    return cfg


def record_path(out_dir, cfg: TrainConfig, varying: tuple[str, ...] = ()) -> Path:
    """Where the record of the run ``cfg`` of a study whose results folder is ``out_dir`` lives."""
    return Path(out_dir) / "records" / f"{record_stem(cfg, varying)}.json"


def finished_units(scenario, plan: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The units of ``plan`` whose record exists (``study.existing_only``, which writes no record: a run
    that ``study.reuse_records`` could supply counts once a run of the study has copied it)."""
    out_dir = scenario.study.out_dir
    varying = name_fields(scenario)
    return [(p, d) for p, d in plan if record_path(out_dir, run_config(scenario, p), varying).is_file()]


def reusable_record(cfg: TrainConfig, folders) -> tuple[ConvergenceRecord, Path] | None:
    """The first record (folders in order, files sorted) in ``folders`` whose TrainConfig equals ``cfg`` but
    for the fields that do not change a run, with where it lies; None if there is none. Records that do not
    load (damaged, not a record) are passed over: they are another study's to fix."""
    for folder in folders:
        for path in sorted(Path(folder).glob("*.json")):
            try:
                record = ConvergenceRecord.load(path)
            except InputError:
                continue
            if record.config and not config_diff(record.config, cfg.model_dump(), _NOT_THE_RUN):
                return record, path
    return None


def run_study_unit(scenario, point_index: int) -> list[dict]:
    """Train one point of the study (or read its finished record) and return its row."""
    study = scenario.study
    if study.out_dir is None:
        raise InputError("study: no results folder (run a study with fedsim run)")
    cfg = run_config(scenario, point_index)
    path = record_path(study.out_dir, cfg, name_fields(scenario))
    record = _kept_record(path, cfg, study.out_dir, fix=not study.existing_only)
    if record is None and (found := reusable_record(cfg, study.reuse_records)) is not None:
        record, origin = found
        where = os.path.relpath(origin, Path(study.out_dir).resolve().parent)  # e.g. rank_study/records/...
        record.source = f"{record.source or 'unknown'}; reused from {Path(where).as_posix()}"
        record.save(path)
    if record is None:
        record = _train(cfg, study.threads)
        record.save(path)
    return [study_row(record, point_index, study.targets, record_path=path.relative_to(study.out_dir))]


def _train(cfg: TrainConfig, threads: int) -> ConvergenceRecord:
    import time

    import torch

    from fedsim.learn.setup import load
    from fedsim.learn.train import train

    torch.set_num_threads(threads)
    started = time.perf_counter()
    in_main = multiprocessing.parent_process() is None  # a worker's bars would interleave
    model, _, data = load(cfg, progress=in_main)
    record = train(cfg, model, data, progress=in_main, source=f"fedsim study {record_stem(cfg)}")
    record.model = Path(cfg.model).name
    record.final = dict(record.final or {}, wall_s=time.perf_counter() - started)
    return record


def _kept_record(path: Path, cfg: TrainConfig, root, fix: bool = True) -> ConvergenceRecord | None:
    """The finished record at ``path`` if it verifies and is this run's; a damaged or foreign one is set aside
    (``set-aside/``, one line on stderr) and None returned, so that the run is trained again (``fix``; else
    its InputError is raised: interim tables hold no lock and change nothing)."""
    if not path.is_file():
        return None
    try:
        record = ConvergenceRecord.load(path)
        _check_same_run(record, cfg, path)
        return record
    except InputError as bad:
        if not fix:
            raise
        set_aside(Path(root), path, f"{str(bad).split(f'{path}: ', 1)[-1]}; trained again")
        return None


def kept_units(scenario, units: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """The finished ``units`` whose record still verifies; the others' records are set aside (rerun them)."""
    root, kept = scenario.study.out_dir, set()
    for point, drop in units:
        cfg = run_config(scenario, point)
        if _kept_record(record_path(root, cfg, name_fields(scenario)), cfg, root) is not None:
            kept.add((point, drop))
    return kept


def _check_same_run(record: ConvergenceRecord, cfg: TrainConfig, path: Path) -> None:
    diff = config_diff(record.config or {}, cfg.model_dump(), _NOT_THE_RUN)
    if diff:
        raise InputError(f"{path}: a record of another configuration ({', '.join(diff)})")
