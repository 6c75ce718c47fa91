"""What every scenario section shares: the pydantic base (unknown keys are errors, frozen, no inf/NaN) and
the check that a string names a scheme."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def known_scheme(ref: str) -> str:
    """``ref`` unchanged once it names a scheme (registered, import path or entry point)."""
    from fedsim.optimize.schemes import get_scheme

    get_scheme(ref)  # InputError (a ValueError) names the reference and what is allowed
    return ref
