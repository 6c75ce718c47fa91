"""Model architecture configs shipped with fedsim, so cost models never need a download.

``load_model_config("gpt2")`` returns a ``ShippedConfig`` read from ``fedsim/configs/gpt2.json``: the fields the
cost models read, without importing transformers (with torch, about 1.3 s of a ``fedsim optimize`` run); any other
attribute builds the full ``transformers.PretrainedConfig``. A path to a ``config.json`` or to a model folder
gives a ``PretrainedConfig`` directly. ``architecture(config)`` reads the dimensions the cost models need
(GPT-2, Llama and OPT families) from either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from fedsim.core.model_table import KNOWN_MODELS
from fedsim.errors import InputError

if TYPE_CHECKING:  # transformers is heavy; import it only when a config is actually built
    from transformers import PretrainedConfig

# shipped name -> file under fedsim/configs/
SHIPPED = {
    "gpt2": "gpt2.json",
    "gpt2-medium": "gpt2-medium.json",
    "smollm2-135m": "smollm2-135m.json",
    "opt-125m": "opt-125m.json",  # facebook/opt-125m's published config.json
}

# Other spellings of a shipped name: the model registry's aliases (``fedsim.core.model_table.KNOWN_MODELS``,
# the one table of model ids), plus ids that name different weights of the same architecture.
_SAME_ARCHITECTURE = {"huggingfacetb/smollm2-135m": "smollm2-135m"}  # the base model of the Instruct one


def _aliases() -> dict[str, str]:
    known = {a.lower(): s.name for s in KNOWN_MODELS.values() for a in s.aliases if s.name in SHIPPED}
    return {**known, **_SAME_ARCHITECTURE}


def shipped_name(name: str) -> str | None:
    """The shipped config name for ``name`` (a shipped name or an alias), or None."""
    key = name.strip().lower()
    if key in SHIPPED:
        return key
    return _aliases().get(key)


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


# The fields the cost models and checks read (``architecture``, ``parameter_counts``, ``fedsim.core.memory``,
# the position limit): the common ones, then per family {field: transformers' value when the JSON leaves it
# out} (tests/test_workload_golden.py checks each against transformers' config of every shipped model).
_COMMON = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings")
_COMMON += ("vocab_size",)
_FAMILY_FIELDS = {
    "gpt2": {"n_inner": None, "tie_word_embeddings": True},
    "opt": {"ffn_dim": 3072, "do_layer_norm_before": True, "word_embed_proj_dim": None, "enable_bias": True}
    | {"tie_word_embeddings": True},
    "llama": {"intermediate_size": 11008, "num_key_value_heads": None, "head_dim": None}
    | {"attention_bias": False, "tie_word_embeddings": False},
}
_GPT2_NAMES = {  # GPT2Config's attribute_map: standard name -> GPT-2's own
    "hidden_size": "n_embd",
    "num_hidden_layers": "n_layer",
    "num_attention_heads": "n_head",
    "max_position_embeddings": "n_positions",
}


class ShippedConfig:
    """A shipped model's config as ``load_model_config`` returns it: its transformers config, built on demand.

    Importing transformers (and the torch it pulls in) takes over a second, far more than optimising a drop,
    while the cost models read a dozen integers. So those fields (``_COMMON``, ``_FAMILY_FIELDS``) are read
    from the JSON here; the first use of anything else (``to_dict()``, a dropout rate, setting a field,
    ``isinstance`` or ``__class__``, handing it to a transformers model) builds the full ``PretrainedConfig``
    once, and from then on every read and write goes to it, so the object acts as that config throughout.
    ``pretrained()`` returns the config itself.
    """

    __slots__ = ("_name", "_data", "_fields", "_pretrained")

    def __init__(self, name: str, data: dict):
        family = data["model_type"]
        fields = {key: data.get(key, default) for key, default in _FAMILY_FIELDS[family].items()}
        fields |= {key: data[key] for key in _COMMON if key in data}
        fields["name_or_path"] = data.get("_name_or_path", "")  # the workload's default name
        if family == "gpt2":
            fields |= {std: data[own] for std, own in _GPT2_NAMES.items()}
        if family == "opt" and fields["word_embed_proj_dim"] is None:
            fields["word_embed_proj_dim"] = fields["hidden_size"]
        if family == "llama":
            fields["num_key_value_heads"] = fields["num_key_value_heads"] or fields["num_attention_heads"]
            fields["head_dim"] = fields["head_dim"] or fields["hidden_size"] // fields["num_attention_heads"]
        for slot, value in zip(self.__slots__, (name, data, fields, None), strict=True):
            object.__setattr__(self, slot, value)

    def pretrained(self) -> PretrainedConfig:
        """The full transformers config (built on first use, then kept)."""
        if self._pretrained is None:
            object.__setattr__(self, "_pretrained", _config_from_dict(self._data, self._name))
        return self._pretrained

    def __getattr__(self, key: str):  # called only for names that are not slots or class attributes
        if self._pretrained is None and key in self._fields:
            return self._fields[key]
        return getattr(self.pretrained(), key)

    def __setattr__(self, key: str, value) -> None:
        setattr(self.pretrained(), key, value)

    def __delattr__(self, key: str) -> None:
        delattr(self.pretrained(), key)

    @property
    def __class__(self):  # isinstance(x, PretrainedConfig) and x.__class__(**kwargs) see the real config
        return type(self.pretrained())

    def __reduce__(self):  # copy and pickle: the light object while unbuilt, else the config itself
        if self._pretrained is None:
            return (ShippedConfig, (self._name, self._data))
        return self._pretrained.__reduce_ex__(4)

    def __eq__(self, other) -> bool:
        return self.pretrained() == (other.pretrained() if type(other) is ShippedConfig else other)

    __hash__ = None

    def __repr__(self) -> str:
        return repr(self._pretrained) if self._pretrained is not None else f"ShippedConfig({self._name!r})"


def load_model_config(name_or_path: str) -> ShippedConfig | PretrainedConfig:
    """The config of a shipped model name, a hub-id alias, a config.json or a model folder.

    A shipped name (or alias) gives a ``ShippedConfig`` (no transformers import until a field beyond the cost
    models' is read); a path gives a ``transformers.PretrainedConfig``.

    Never downloads. Shipped names: gpt2, gpt2-medium, smollm2-135m, opt-125m (aliases such as
    ``openai-community/gpt2``, ``HuggingFaceTB/SmolLM2-135M-Instruct`` and ``facebook/opt-125m`` are accepted).

    Raises:
        InputError: unknown name (the message lists the shipped names), unreadable file, unknown model_type.
    """
    name = shipped_name(str(name_or_path))
    if name is not None:
        text = resources.files("fedsim").joinpath("configs", SHIPPED[name]).read_text()
        return ShippedConfig(name, json.loads(text))
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        return _config_from_dict(_read_json(path), str(path))
    raise InputError(
        f"model {name_or_path!r}: not a shipped config ({', '.join(SHIPPED)}) "
        "nor a path to a config.json or model folder"
    )


FAMILIES = {"gpt2": ("gpt2",), "llama": ("llama",), "opt": ("opt",)}  # family -> HF model_type values

# LoRA target names -> canonical matrix name; Hugging Face module names are accepted too.
TARGET_ALIASES = {
    **{f"{m}_proj": m for m in ("q", "k", "v", "o", "gate", "up", "down")},
    **{"out_proj": "o", "c_fc": "up", "fc": "up", "fc1": "up", "fc2": "down"},
}


@dataclass(frozen=True)
class Architecture:
    """The dimensions of a decoder-only transformer that its costs depend on.

    Attributes:
        family: "gpt2", "llama" or "opt".
        d: residual width; attn_dim: heads x head_dim (query/output width); kv_dim: kv_heads x head_dim.
        d_ff: MLP hidden width; vocab: vocabulary size; max_positions: context limit.
        matrices: per-block weight matrices {name: (d_in, d_out)}; "gate" exists only with a gated MLP.
        norms_per_block: norm layers per block (2 in every family).
        final_norm: whether a norm follows the last block (not in post-norm OPT, e.g. OPT-350m).
        position_rows: rows of the learned position table (0 with rotary embeddings; OPT: context + 2).
    """

    family: str
    model_type: str
    num_layers: int
    d: int
    num_heads: int
    attn_dim: int
    kv_dim: int
    d_ff: int
    vocab: int
    max_positions: int
    matrices: dict
    norms_per_block: int = 2
    final_norm: bool = True
    position_rows: int = 0


def architecture(config) -> Architecture:
    """Read an ``Architecture`` from a Hugging Face config (GPT-2, Llama and OPT families).

    The common dimensions are read by transformers' standard names (``hidden_size``, ``num_hidden_layers``,
    ``num_attention_heads``, ``max_position_embeddings``), which GPT-2's config maps onto its own
    (``n_embd``, ``n_layer``, ...) through its ``attribute_map``; only the MLP width differs by family.
    OPT is GPT-2's shape with separate Q/K/V/out projections, ReLU MLP ``fc1``/``fc2`` of width ``ffn_dim``
    and a position table offset by 2; OPTs whose word embeddings are narrower than the residual stream
    (OPT-350m: ``project_in``/``project_out``) are refused, since the workload has no place for the
    client's ``project_in``.
    """
    model_type = getattr(config, "model_type", None)
    family = next((f for f, types in FAMILIES.items() if model_type in types), None)
    if family is None:
        supported = ", ".join(f"{f} (model_type {'/'.join(t)})" for f, t in FAMILIES.items())
        raise InputError(f"model_type {model_type!r} is not supported; supported families: {supported}")
    d, heads = config.hidden_size, config.num_attention_heads
    final_norm, position_rows = True, 0
    if family in ("gpt2", "opt"):
        # GPT-2 fuses Q, K, V in one c_attn (d -> 3d); we cost the three logical d x d parts
        a = kv = d
        if family == "gpt2":
            d_ff, position_rows = config.n_inner or 4 * d, config.max_position_embeddings
        else:
            d_ff, position_rows = config.ffn_dim, config.max_position_embeddings + 2
            final_norm = bool(config.do_layer_norm_before)
            if config.word_embed_proj_dim != d:
                raise InputError(
                    f"OPT with word_embed_proj_dim {config.word_embed_proj_dim} != hidden_size {d} "
                    "(project_in/project_out, e.g. OPT-350m) is not in the workload model"
                )
        mats = {"q": (d, d), "k": (d, d), "v": (d, d), "o": (d, d), "up": (d, d_ff), "down": (d_ff, d)}
    else:
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or d // heads
        a, kv, d_ff = heads * head_dim, kv_heads * head_dim, config.intermediate_size
        mats = {
            "q": (d, a),
            "k": (d, kv),
            "v": (d, kv),
            "o": (a, d),
            "gate": (d, d_ff),
            "up": (d, d_ff),
            "down": (d_ff, d),
        }
    return Architecture(
        family,
        model_type,
        num_layers=config.num_hidden_layers,
        d=d,
        num_heads=heads,
        attn_dim=a,
        kv_dim=kv,
        d_ff=d_ff,
        vocab=config.vocab_size,
        max_positions=config.max_position_embeddings,
        matrices=mats,
        final_norm=final_norm,
        position_rows=position_rows,
    )


def canonical_targets(arch: Architecture, lora_targets) -> tuple[str, ...]:
    """LoRA target names mapped to the canonical matrix names of ``arch`` (duplicates dropped)."""
    if isinstance(lora_targets, str) or not lora_targets:
        raise InputError(f"lora_targets must be a non-empty list of names from {sorted(arch.matrices)}")
    names = tuple(dict.fromkeys(TARGET_ALIASES.get(t, t) for t in lora_targets))
    unknown = [t for t in names if t not in arch.matrices]
    if unknown:
        raise InputError(
            f"lora_targets {unknown} unknown for the {arch.family} family; allowed: {sorted(arch.matrices)}"
        )
    return names
