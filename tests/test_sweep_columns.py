"""The decision and breakdown columns of a task row: they describe the allocation the optimiser returned
and split the total delay of eq. (17) exactly; existing columns are unchanged by them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedsim.experiments.montecarlo.columns import BREAKDOWN_COLUMNS
from fedsim.experiments.montecarlo.tasks import run_task
from fedsim.scenario import scenario_from_dict


def scenario(p_max_w: float, upload_every: bool = False):
    return scenario_from_dict(
        {
            "name": "columns",
            "system": {"p_max_w": p_max_w},
            "training": {"upload_every_local_iteration": upload_every},
            "montecarlo": {"drops": 1, "base_seed": 5, "timing": "analytic"},
        }
    )


@pytest.mark.parametrize("upload_every", [False, True])
def test_breakdown_sums_to_the_total_of_eq17(upload_every):
    for scheme in ("proposed", "a", "c"):
        row = run_task(scenario(0.2, upload_every), 0, 0, scheme=scheme)[0]
        parts = [row[c] for c in BREAKDOWN_COLUMNS]
        assert sum(parts) == pytest.approx(row["analytic_total_s"], rel=1e-12)
        e, t3 = row["rounds"], row["T3_s"]
        assert row["delay_T3_s"] == pytest.approx(t3 * e * (10 if upload_every else 1), rel=1e-12)
        assert row["delay_T1_s"] == pytest.approx(row["T1_s"] * e * 10, rel=1e-12)  # I = 10 (spec §7)


@pytest.mark.parametrize("p_max_w", [0.01, 1.0])
def test_powers_and_subchannels_respect_the_caps(p_max_w):
    for scheme in ("proposed", "a", "b", "d"):
        row = run_task(scenario(p_max_w), 0, 0, scheme=scheme)[0]
        for link, subchannels in (("main", 20), ("fed", 20)):
            counts = json.loads(row[f"subchannels_{link}"])
            power = np.array(json.loads(row[f"power_{link}_w"]))
            assert len(counts) == len(power) == 5 and sum(counts) <= subchannels
            assert (power <= p_max_w * (1 + 1e-9)).all()
            assert row[f"power_{link}_total_w"] == pytest.approx(power.sum())
            assert row[f"power_{link}_total_w"] <= row[f"p_th_{link}_w"] * (1 + 1e-9)
            if scheme in ("a", "b"):  # uniform PSD: min(p_max, p_th / K) per client (spec §6)
                np.testing.assert_allclose(power, min(p_max_w, 0.6 / 5), rtol=1e-9)
    # p_th = 0.6 W binds at 1 W per client: the proposed scheme spends all of it
    row = run_task(scenario(1.0), 0, 0, scheme="proposed")[0]
    assert row["power_main_total_w"] == pytest.approx(0.6, rel=1e-6)
    assert row["rounds_from"] == "inline" and row["p_max_w"] == 1.0
    assert row["server_flops_per_s"] == pytest.approx(1e11 * 160)
    assert 80e9 <= row["client_flops_per_s_mean"] <= 160e9  # f_k ~ U[1, 2] GHz x 80 FLOPs/cycle
