"""Limits checked before training or evaluation starts, each failing as one line with its numbers:

* the sequence length against the model's position limit (``max_position_embeddings`` / ``n_positions`` of
  its config): beyond it the position table has no row (GPT-2) or the model was never trained (rotary);
* the estimated peak memory of the run (``fedsim.core.memory``: weights, LoRA state, activations, logits)
  against the memory available to this process (MemAvailable and the cgroup's limit; a CUDA device's free
  memory), so that ``--seq-len 100000`` is refused here rather than dying in torch's allocator;
* the disk space a study's checkpoints take against the free space of its results folder.

The model's config is read without its weights (``fedsim.learn.split.layout.local_model_config``); a model
with no local copy yet is checked once it is fetched (``fedsim.learn.setup.prepare_data``).
``FEDSIM_MEMORY_CHECK=off`` skips the memory check (an estimate may not fit an unusual model).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from fedsim.core.memory import checkpoint_bytes, evaluation_memory_bytes, training_memory_bytes
from fedsim.errors import InputError

_PURPOSE: ContextVar[str] = ContextVar("fedsim_limits_purpose", default="training")
GB = 1e9


@contextmanager
def purpose(what: str) -> Iterator[None]:
    """Within the block, ``check_run`` checks the memory of ``what`` ("training" or "evaluation")."""
    token = _PURPOSE.set(what)
    try:
        yield
    finally:
        _PURPOSE.reset(token)


def position_limit(config) -> int | None:
    """The most positions the model takes, from its config (None when the config does not say)."""
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_seq_len(model: str, config, seq_len: int) -> None:
    """InputError if ``seq_len`` exceeds the model's position limit."""
    limit = position_limit(config)
    if limit is not None and seq_len > limit:
        raise InputError(
            f"seq_len {seq_len}: {model} takes at most {limit:,} positions (max_position_embeddings in its "
            f"config); choose a sequence length <= {limit}"
        )


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory_bytes() -> float | None:
    """Memory this process may still take: /proc/meminfo's MemAvailable, capped by the cgroup's limit less
    its usage (v2, else v1); None where neither can be read."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 1 << 60:
            found.append(max(0, limit - usage))
            break
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None
    return float(min(found))


def _device_memory(device: str) -> tuple[float | None, str]:
    """(free bytes, where) for the run's device: a CUDA device's free memory, else this machine's."""
    if device != "cpu":
        try:
            import torch

            if device == "auto" and not torch.cuda.is_available():
                device = "cpu"
            elif device.startswith("cuda") or device == "auto":
                index = torch.device("cuda" if device == "auto" else device).index or 0
                return float(torch.cuda.mem_get_info(index)[0]), f"free on cuda:{index}"
        except (ImportError, RuntimeError, AssertionError, ValueError):
            pass
    return available_memory_bytes(), "available"


def _gb(x: float) -> str:
    return f"{x / GB:.1f} GB" if x >= 0.1 * GB else f"{x / 1e6:.1f} MB"


def check_memory(cfg, config, what: str | None = None) -> None:
    """InputError if the estimated peak memory of training (or evaluating) ``cfg`` exceeds what is free."""
    if os.environ.get("FEDSIM_MEMORY_CHECK", "").strip().lower() in ("off", "0", "no", "false"):
        return
    what = what or _PURPOSE.get()
    free, where = _device_memory(str(getattr(cfg, "device", "cpu")))
    if free is None:
        return
    samples = cfg.batch_size * cfg.num_clients
    if what == "evaluation":
        need = evaluation_memory_bytes(config, batch_size=samples, seq_len=cfg.seq_len, rank=cfg.rank)
    else:
        need = training_memory_bytes(
            config,
            num_clients=cfg.num_clients,
            batch_size=cfg.batch_size,
            seq_len=cfg.seq_len,
            rank=cfg.rank,
            centralized=cfg.scheme == "centralized",
        )
    if need["total"] > free:
        parts = ", ".join(f"{k} {_gb(v)}" for k, v in need.items() if k != "total")
        raise InputError(
            f"{what} {cfg.model} at seq_len {cfg.seq_len}, batch {cfg.batch_size} x {cfg.num_clients} "
            f"client(s) needs about {_gb(need['total'])} ({parts}) but {_gb(free)} is {where}; lower the "
            "sequence length, batch size or clients (FEDSIM_MEMORY_CHECK=off skips this estimate)"
        )


def model_config(model: str, cache_dir=None):
    """The model's transformers config without its weights, or None when no local copy exists yet."""
    from fedsim.learn.split.layout import local_model_config

    try:
        return local_model_config(model, cache_dir)
    except InputError:
        return None


def check_run(cfg, config=None, what: str | None = None) -> None:
    """Sequence length and memory of one TrainConfig, before its work starts (``config``: the model's own,
    else read from a local copy; nothing is checked when there is none yet)."""
    config = config if config is not None else model_config(cfg.model)
    if config is None:
        return
    check_seq_len(cfg.model, config, cfg.seq_len)
    check_memory(cfg, config, what)


def free_disk_bytes(folder: str | Path) -> float | None:
    """Free bytes on the file system that holds ``folder`` (or its nearest existing parent)."""
    path = Path(folder).absolute()
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return float(shutil.disk_usage(candidate).free)
            except OSError:
                return None
    return None


def check_checkpoint_disk(configs, folder: str | Path) -> None:
    """InputError if the checkpoints of the TrainConfigs ``configs`` (each kept; one more being written beside
    its old version) do not fit in the free space of ``folder``."""
    sizes = []
    for cfg in configs:
        if not cfg.checkpoint_every:
            continue
        config = model_config(cfg.model)
        if config is None:
            continue
        centralized = cfg.scheme == "centralized"
        sizes.append(
            checkpoint_bytes(config, num_clients=cfg.num_clients, rank=cfg.rank, centralized=centralized)
        )
    if not sizes:
        return
    need = sum(sizes) + max(sizes)
    free = free_disk_bytes(folder)
    if free is not None and need > free:
        raise InputError(
            f"{folder}: the checkpoints of {len(sizes)} training run(s) need about {_gb(need)} but only "
            f"{_gb(free)} is free there; free space or choose another --out"
        )
