"""Shipped model configs load without transformers (issue 24: its import was most of ``fedsim optimize``'s wall).

``ShippedConfig`` holds the fields the cost models read; each must equal transformers' own config of the same
JSON, so that workloads, parameter counts and memory come out the same whichever object they read.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from fedsim.core.model_configs import (
    _COMMON,
    _FAMILY_FIELDS,
    SHIPPED,
    ShippedConfig,
    architecture,
    load_model_config,
)
from fedsim.core.workload import parameter_counts, workload_from_config


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_fields_equal_transformers(name):
    light = load_model_config(name)
    fields = dict(light._fields)
    full = ShippedConfig(name, light._data).pretrained()
    assert type(light) is ShippedConfig and light._pretrained is None
    assert type(full).__module__.startswith("transformers")
    for key in (*_COMMON, *_FAMILY_FIELDS[light.model_type], "name_or_path"):
        assert fields[key] == getattr(full, key), key
    assert architecture(light) == architecture(full)
    assert parameter_counts(light) == parameter_counts(full)
    assert workload_from_config(light, seq_len=256).to_dict() == workload_from_config(full, seq_len=256).to_dict()
    assert light._pretrained is None  # the cost models read the light fields only
    assert light.to_dict() == full.to_dict()  # anything else builds the full config
    assert isinstance(light, type(full)) and light == full and light._pretrained is not None


def test_shipped_config_acts_as_its_transformers_config_once_built():
    light = load_model_config("opt-125m")
    light.do_layer_norm_before = False  # a write builds the config and goes to it
    assert light.pretrained().do_layer_norm_before is False and light.do_layer_norm_before is False
    assert not architecture(light).final_norm
    copied = pickle.loads(pickle.dumps(light))
    assert type(copied) is type(light.pretrained()) and copied.do_layer_norm_before is False


def test_shipped_config_pickles_without_transformers():
    light = load_model_config("gpt2")
    again = pickle.loads(pickle.dumps(light))
    assert type(again) is ShippedConfig and again.hidden_size == 768 and again._pretrained is None


def test_optimize_workload_does_not_import_transformers():
    code = (
        "import sys\n"
        "from fedsim.core.model_configs import load_model_config\n"
        "from fedsim.core.workload import workload_from_config\n"
        "for n in ('gpt2', 'gpt2-medium', 'opt-125m', 'smollm2-135m'):\n"
        "    workload_from_config(load_model_config(n), seq_len=512)\n"
        "print('transformers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
