"""Shared fixtures. Keep this small: one fixture per widely used object."""

from __future__ import annotations

import numpy as np
import pytest

from fedsim.core.model_configs import load_model_config
from fedsim.core.system import SystemParams, draw_drop
from fedsim.core.workload import Workload, workload_from_config


@pytest.fixture(scope="session")
def gpt2_workload() -> Workload:
    """GPT-2 small, L = 512, fp32, analytic mode (spec §8.3)."""
    return workload_from_config(load_model_config("gpt2"), seq_len=512, bits=32, name="gpt2")


@pytest.fixture
def default_drop():
    """One drop of the spec §7 defaults (K = 5) with a fixed seed."""
    return draw_drop(SystemParams(), np.random.default_rng(1234))
