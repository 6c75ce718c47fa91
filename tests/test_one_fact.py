"""One fact in one place: bits validated once, one model-id table, one atomic writer, one per-client power."""

from __future__ import annotations

import numpy as np
import pytest

from fedsim.atomic import atomic_path, atomic_write_text
from fedsim.cli import main
from fedsim.core.allocation import client_power_w
from fedsim.core.model_configs import SHIPPED, shipped_name
from fedsim.core.workload import BITS
from fedsim.learn.loading.models import KNOWN_MODELS
from fedsim.scenario import scenario_from_dict


@pytest.mark.parametrize("bits", [1, 12, 64])
def test_scenario_rejects_bits_the_workload_cannot_count(bits, capsys):
    with pytest.raises(ValueError, match="model.bits: must be one of 8, 16, 32"):
        scenario_from_dict({"name": "x", "model": {"bits": bits}})
    assert main(["validate", "scenarios/fig5_bandwidth.toml", "--set", f"model.bits={bits}"]) == 2
    assert "model.bits: must be one of 8, 16, 32" in capsys.readouterr().err


def test_every_bits_the_scenario_accepts_builds_a_workload():
    from fedsim.experiments.montecarlo.tasks import workload_of

    for bits in BITS:
        scenario = scenario_from_dict({"name": "x", "model": {"bits": bits}})
        assert workload_of(scenario).act_bits[0] == 512 * 768 * bits


def test_one_model_id_table():
    # every alias the model registry knows for a shipped config resolves to that config
    for spec in KNOWN_MODELS.values():
        for alias in (spec.name, *spec.aliases):
            assert shipped_name(alias) == (spec.name if spec.name in SHIPPED else None), alias
    assert shipped_name("HuggingFaceTB/SmolLM2-135M") == "smollm2-135m"  # same architecture, base weights


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "sub" / "rows.csv"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half", encoding="utf-8")
        raise RuntimeError("writer died")
    assert target.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in target.parent.iterdir()] == ["rows.csv"]  # no temporary file left


def test_client_power_is_the_sum_over_owned_subchannels():
    owner = np.array([0, 2, 2, -1, 0, 1])
    psd = np.array([1.0, 2.0, 3.0, 9.0, 4.0, 5.0])
    expected = [sum(psd[i] * 10.0 for i in range(6) if owner[i] == k) for k in range(3)]
    np.testing.assert_allclose(client_power_w(owner, psd, 10.0, num_clients=3), expected)
