"""Model architecture configs shipped with fedsim, so cost models never need a download.

``load_model_config("gpt2")`` returns a ``transformers.PretrainedConfig`` built from
``fedsim/configs/gpt2.json``. A path to a ``config.json`` or to a model folder works too.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from fedsim.errors import InputError

if TYPE_CHECKING:  # transformers is heavy; import it only when a config is actually built
    from transformers import PretrainedConfig

# shipped name -> file under fedsim/configs/
SHIPPED = {"gpt2": "gpt2.json", "gpt2-medium": "gpt2-medium.json", "smollm2-135m": "smollm2-135m.json"}

# hub ids and other spellings -> shipped name (matched case-insensitively)
ALIASES = {
    "gpt2-small": "gpt2",
    "openai-community/gpt2": "gpt2",
    "openai-community/gpt2-medium": "gpt2-medium",
    "smollm2-135m-instruct": "smollm2-135m",
    "huggingfacetb/smollm2-135m": "smollm2-135m",
    "huggingfacetb/smollm2-135m-instruct": "smollm2-135m",
}


def shipped_name(name: str) -> str | None:
    """The shipped config name for ``name`` (a shipped name or an alias), or None."""
    key = name.strip().lower()
    if key in SHIPPED:
        return key
    return ALIASES.get(key)


def _config_from_dict(data: dict, source: str) -> PretrainedConfig:
    from transformers import AutoConfig

    data = dict(data)
    model_type = data.pop("model_type", None)
    if not model_type:
        raise InputError(f"model config {source}: no 'model_type' key")
    try:
        return AutoConfig.for_model(model_type, **data)
    except (ValueError, KeyError) as exc:
        raise InputError(
            f"model config {source}: model_type {model_type!r} is not known to transformers"
        ) from exc


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"model config {path}: cannot read JSON ({exc})") from exc


def load_model_config(name_or_path: str) -> PretrainedConfig:
    """A ``PretrainedConfig`` for a shipped model name, a hub-id alias, a config.json or a model folder.

    Never downloads. Shipped names: gpt2, gpt2-medium, smollm2-135m (aliases such as
    ``openai-community/gpt2`` and ``HuggingFaceTB/SmolLM2-135M-Instruct`` are accepted).

    Raises:
        InputError: unknown name (the message lists the shipped names), unreadable file, unknown model_type.
    """
    name = shipped_name(str(name_or_path))
    if name is not None:
        text = resources.files("fedsim").joinpath("configs", SHIPPED[name]).read_text()
        return _config_from_dict(json.loads(text), name)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        return _config_from_dict(_read_json(path), str(path))
    raise InputError(
        f"model {name_or_path!r}: not a shipped config ({', '.join(SHIPPED)}) "
        "nor a path to a config.json or model folder"
    )
