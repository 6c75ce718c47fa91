"""Split-fed settings against centralized (``fedsim.experiments.study.settings``, the page
``fedsim.report.splitfed`` and its figure): the seed-paired gaps equal scipy's one-sample t interval, seeds
pair by value (not by order), missing settings are named and nothing is claimed without records."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fedsim.experiments.study.settings import data_label, setting_differences, setting_gaps
from fedsim.learn.records import ConvergenceRecord


def _rows(seeds_by_setting: dict, seed_rng: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed_rng)
    central = {s: 4.0 + rng.normal(0, 0.2) for s in range(5)}
    rows = [{"rank": 4, "seed": s, "training_scheme": "centralized", "cut": 2, "partition": "iid",
             "dirichlet_alpha": 0.5, "plateau_val_ppl": p} for s, p in central.items()]  # fmt: skip
    for (cut, partition, alpha, shift), seeds in seeds_by_setting.items():
        for s in seeds:
            rows.append({"rank": 4, "seed": s, "training_scheme": "split_fed", "cut": cut, "partition": partition,
                         "dirichlet_alpha": alpha,
                         "plateau_val_ppl": central[s] * (1 + shift) + rng.normal(0, 0.01)})  # fmt: skip
    return pd.DataFrame(rows[::-1])  # seeds out of order: pairing must go by value


def test_the_gap_per_setting_is_scipys_paired_t_interval():
    rows = _rows({(2, "iid", 0.5, 0.01): range(5), (8, "iid", 0.5, 0.03): (0, 2, 4),
                  (2, "length_dirichlet", 0.1, 0.05): range(5)})  # fmt: skip
    gaps = setting_gaps(rows).set_index(["cut", "partition"])
    assert list(gaps.index) == [(2, "iid"), (2, "length_dirichlet"), (8, "iid")]
    c = rows[rows.training_scheme == "centralized"].set_index("seed")["plateau_val_ppl"]
    for (cut, partition), g in gaps.iterrows():
        sf = rows[(rows.training_scheme == "split_fed") & (rows.cut == cut) & (rows.partition == partition)]
        sf = sf.set_index("seed")["plateau_val_ppl"]
        d = (sf - c[sf.index]).to_numpy()
        pct = 100 * d / c[sf.index].to_numpy()
        assert g["gap_seeds"] == len(d) and g["gap_mean"] == pytest.approx(d.mean())
        assert (g["gap_lo"], g["gap_hi"]) == pytest.approx(stats.ttest_1samp(d, 0).confidence_interval(0.95))
        assert (g["gap_pct_lo"], g["gap_pct_hi"]) == pytest.approx(stats.ttest_1samp(pct, 0).confidence_interval())
        assert g["centralized_seeds"] == 5 and g["split_fed_std"] == pytest.approx(sf.std(ddof=1))
    # a 5 % gap with 1 % noise on the paired difference: resolved; the labels read the concentration
    assert gaps.loc[(2, "length_dirichlet"), "gap_pct_excludes_0"]
    assert gaps.loc[(2, "length_dirichlet"), "data"] == "length-dirichlet α = 0.1"
    assert data_label("iid", 0.5) == "IID"


def test_cut_and_partition_differences_pair_split_fed_runs_by_seed():
    rows = _rows({(2, "iid", 0.5, 0.0): range(5), (8, "iid", 0.5, 0.04): (1, 3, 4),
                  (2, "length_dirichlet", 0.1, 0.02): range(5)})  # fmt: skip
    diffs = setting_differences(rows).set_index("comparison")
    sf = rows[rows.training_scheme == "split_fed"].set_index(["cut", "partition", "seed"])["plateau_val_ppl"]
    deep = np.array([100 * (sf[(8, "iid", s)] / sf[(2, "iid", s)] - 1) for s in (1, 3, 4)])
    cut = diffs.loc["cut 8 − cut 2"]
    assert cut["data"] == "IID" and cut["seeds"] == 3 and cut["mean"] == pytest.approx(deep.mean())
    assert (cut["lo"], cut["hi"]) == pytest.approx(stats.ttest_1samp(deep, 0).confidence_interval())
    non_iid = diffs.loc["length-dirichlet α = 0.1 − IID"]
    assert non_iid["data"] == "cut 2" and non_iid["seeds"] == 5 and non_iid["excludes_0"]


def _record(folder, name, scheme, cut, partition, alpha, seed, final):
    curve = [{"step": s, "round": s // 2, "val_ppl": p, "val_ppl_a": p * 1.02, "val_ppl_b": p * 0.98}
             for s, p in ((0, 20.0), (4, 6.0), (8, final + 0.2), (12, final + 0.1), (16, final))]  # fmt: skip
    config = {"seed": seed, "lr": 0.01, "cut": cut, "partition": partition, "dirichlet_alpha": alpha}
    ConvergenceRecord(model="smollm2-135m", scheme=scheme, rank=4, num_clients=3, batch_size=4, local_iterations=2,
                      seq_len=64, target_ppl=None, rounds_to_target=None, curve=curve, config=config,
                      source="test" + ("; reused from x" if scheme == "centralized" else "")).save(
        folder / "records" / f"{name}.json"
    )  # fmt: skip


def test_the_page_is_interim_names_missing_settings_and_claims_nothing_without_records(tmp_path):
    from fedsim.report.splitfed import FOLDER, page

    results = tmp_path / "results"
    assert "has no committed records yet: nothing is claimed" in page(results)
    folder = results / FOLDER
    (folder / "records").mkdir(parents=True)
    axes = {"study.training.scheme": ["split_fed", "split_fed", "centralized", "centralized"],
            "study.training.cut": [2, 8, 2, 2], "study.training.partition": ["iid", "length_dirichlet", "iid", "iid"],
            "study.training.dirichlet_alpha": [0.5, 0.1, 0.5, 0.5], "study.training.seed": [0, 0, 0, 1]}  # fmt: skip
    training = {"eval_every": 4, "eval_samples": 256, "lora_alpha": 2.0, "lora_alpha_policy": "proportional"}
    (folder / "scenario.json").write_text(json.dumps({"study": {"training": training},
                                                      "sweep": {"mode": "zip", "axes": axes}}))  # fmt: skip
    _record(folder, "c0", "centralized", 2, "iid", 0.5, 0, 4.0)
    _record(folder, "c1", "centralized", 2, "iid", 0.5, 1, 4.2)
    _record(folder, "s0", "split_fed", 2, "iid", 0.5, 0, 4.1)
    text = page(results)
    assert "Runs committed: 3 of 4 (2 of them the rank study's own runs" in text and "**Interim" in text
    assert "LoRA rank 4 (alpha = 2r)" in text and "every 2 global rounds on the first 256" in text
    # plateau = mean of the last 3 evaluations: 4.2 (split-fed) vs 4.1 (centralized), one paired seed
    assert "| 2 | IID | 1/2 | 4.200 | 4.200 ± 0.141 | +0.100 | +2.4 | no CI (fewer than 2 paired seeds)" in text
    assert "Not run yet (no record committed, nothing claimed): cut 8 on length-dirichlet α = 0.1." in text
    assert "| seed | centralized | cut 2, IID |" in text and "| 0 | 4.100 | 4.200 |" in text
    assert "| 1 | 4.300 | - |" in text  # a seed split-fed has not run yet
    # the study's figure: curves per setting and the paired gap (not the per-rank Fig. 3), then on the page
    from fedsim.plots import make_figures

    _record(folder, "s1", "split_fed", 8, "length_dirichlet", 0.1, 0, 4.3)
    assert [p.name for p in make_figures(folder, ["png"])] == ["splitfed_vs_centralized.png"]
    assert "![split-fed vs centralized: curves and the paired gap]" in page(results)
    # per-seed columns: centralized, then by partition and cut as numbers (cut 2 before cut 15)
    _record(folder, "s2", "split_fed", 15, "iid", 0.5, 0, 4.0)
    assert "| seed | centralized | cut 2, IID | cut 15, IID | cut 8, length-dirichlet α = 0.1 |" in page(results)
