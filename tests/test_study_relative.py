"""Plateau-relative targets, the plateau PPL and learning rates per rank in a convergence study."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from study_helpers import tiny_study

from fedsim import api
from fedsim.errors import InputError
from fedsim.experiments.study.tables import (
    chosen_lr_table,
    plateau_ppl,
    rank_differences,
    relative_targets_table,
    smoothed,
    write_study_tables,
)
from fedsim.learn.records import rounds_to_target_interpolated


def _curve(ppls, every=1):
    return [{"step": 2 * every * i, "round": float(every * i), "val_ppl": p} for i, p in enumerate(ppls)]


def test_plateau_and_smoothing_by_hand():
    curve = _curve([10.0, 8.0, 6.0, 5.0, 4.0])
    assert plateau_ppl(curve) == pytest.approx(5.0)  # mean of 6, 5, 4
    assert [r["val_ppl"] for r in smoothed(curve)] == pytest.approx([10.0, 9.0, 8.0, 19 / 3, 5.0])


def test_relative_targets_against_a_hand_computation():
    # rank 1 plateaus at 4.0 (both seeds), rank 4 at 5.0: best = 4.0; within 10 % -> target 4.4
    curves, rows = [], []
    for rank, ppls in ((1, [10.0, 6.0, 4.4, 4.0, 4.0, 4.0]), (4, [10.0, 6.0, 5.5, 5.0, 5.0, 5.0])):
        for seed, shift in ((0, 0.0), (1, 0.2)):
            c = _curve([p + shift for p in ppls])
            curves += [{"training_scheme": "split_fed", "rank": rank, "seed": seed, "lr": 1e-3, **r} for r in c]
            rows.append({"training_scheme": "split_fed", "rank": rank, "seed": seed, "lr": 1e-3,
                         "plateau_val_ppl": plateau_ppl(c)})  # fmt: skip
    table = relative_targets_table(pd.DataFrame(curves), pd.DataFrame(rows), [10])
    best = np.mean([4.0, 4.2])
    assert table["best_ppl"].iloc[0] == pytest.approx(best)
    r1 = table[table["rank"] == 1].iloc[0]
    want = [rounds_to_target_interpolated(_curve([p + s for p in [10.0, 6.0, 4.4, 4.0, 4.0, 4.0]]), best * 1.1)
            for s in (0.0, 0.2)]  # fmt: skip
    assert r1["reached"] == 2 and r1["rounds_mean"] == pytest.approx(np.mean(want))
    half = stats.t.ppf(0.975, 1) * np.std(want, ddof=1) / math.sqrt(2)  # Student-t, 1 dof
    assert r1["rounds_hi"] - r1["rounds_mean"] == pytest.approx(half)
    r4 = table[table["rank"] == 4].iloc[0]
    assert r4["reached"] == 0 and math.isnan(r4["rounds_mean"])  # rank 4 never gets within 10 %


def test_rank_differences_are_paired_by_seed():
    # rank 16 plateaus at 4.0 + 0.3 x seed; rank 1 sits 0.1 + 0.01 x seed above it, seed by seed: the paired
    # difference is 0.1 + 0.01 x mean(seed) with a tiny CI, though the seeds' spread (0.3) dwarfs it unpaired
    curves, rows = [], []
    for seed in range(3):
        for rank, extra in ((1, 0.1 + 0.01 * seed), (16, 0.0)):
            level = 4.0 + 0.3 * seed + extra
            c = _curve([10.0, 6.0, level + 1.0, level, level, level])
            curves += [{"training_scheme": "split_fed", "rank": rank, "seed": seed, "lr": 1e-3, **r} for r in c]
            rows.append({"training_scheme": "split_fed", "rank": rank, "seed": seed, "lr": 1e-3,
                         "plateau_val_ppl": plateau_ppl(c)})  # fmt: skip
    curves, rows = pd.DataFrame(curves), pd.DataFrame(rows)
    table = rank_differences(curves, rows, [50])
    plateau = table[table.measure == "plateau PPL"].iloc[0]
    assert (plateau["rank"], plateau["versus_rank"], plateau["paired_seeds"]) == (1, 16, 3)
    assert plateau["diff_mean"] == pytest.approx(0.11)
    half = stats.t.ppf(0.975, 2) * np.std([0.10, 0.11, 0.12], ddof=1) / math.sqrt(3)
    assert plateau["diff_hi"] - plateau["diff_mean"] == pytest.approx(half) and plateau["excludes_0"]
    rounds = table[table.measure == "rounds to within 50 %"].iloc[0]
    target = float(relative_targets_table(curves, rows, [50])["target_ppl"].iloc[0])
    want = []
    for seed in range(3):
        own = {rank: curves[(curves["rank"] == rank) & (curves.seed == seed)].to_dict("records") for rank in (1, 16)}
        a, b = (rounds_to_target_interpolated(own[rank], target) for rank in (1, 16))
        if a is not None and b is not None:
            want.append(a - b)
    assert rounds["paired_seeds"] == len(want) and rounds["unpaired_or_unreached"] == 3 - len(want)
    assert rounds["diff_mean"] == pytest.approx(np.mean(want))


def test_a_study_with_lr_per_rank_and_relative_targets(tmp_path):
    text = tiny_study(steps=4, seeds=(0, 1), ranks=(1, 4)) + "\n"
    scenario_path = tmp_path / "s.toml"
    scenario_path.write_text(text.replace("[study.training]", "relative_targets_pct = [2, 50]\n"
                                          "lr_by_rank = {1 = 0.003, 4 = 0.001}\n[study.training]"))  # fmt: skip
    scenario = api.load_scenario(scenario_path)
    rows, folder = api.run(scenario, executor="serial", out=tmp_path / "out", figures=False, progress=False)
    assert sorted(zip(rows["rank"], rows["lr"], strict=True)) == [(1, 0.003), (1, 0.003), (4, 0.001), (4, 0.001)]
    names = sorted(p.name for p in (folder / "records").iterdir())
    assert names[0].endswith("_lr0.003.json") and len(names) == 4  # runs of other lrs never collide
    table = pd.read_csv(folder / "tables" / "rounds_to_relative_target.csv")
    assert sorted(table["within_pct"].unique()) == [2.0, 50.0] and set(table["rank"]) == {1, 4}
    assert "E(r) at targets relative to the plateau" in (folder / "summary.md").read_text()
    assert "plateau PPL" in (folder / "tables" / "table4.md").read_text()


def test_lr_by_rank_must_cover_every_rank(tmp_path):
    text = tiny_study(steps=2, seeds=(0,), ranks=(1, 4)).replace("[study.training]", "lr_by_rank = {1 = 0.003}\n[study.training]")
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(InputError, match="lr_by_rank"):
        api.run(api.load_scenario(path), executor="serial", out=tmp_path / "out", figures=False, progress=False)


def test_the_lr_rule_takes_the_lowest_plateau_and_the_smaller_lr_on_a_tie():
    rows = pd.DataFrame([
        {"training_scheme": "split_fed", "rank": 1, "lr": lr, "seed": 0, "plateau_val_ppl": p}
        for lr, p in ((3e-4, 6.0), (1e-3, 5.0), (3e-3, 5.5))
    ] + [
        {"training_scheme": "split_fed", "rank": 4, "lr": lr, "seed": 0, "plateau_val_ppl": p}
        for lr, p in ((3e-4, 5.0), (1e-3, 5.0), (3e-3, 7.0))
    ])  # fmt: skip
    table = chosen_lr_table(rows).set_index("rank")
    assert table["chosen_lr"].to_dict() == {1: 1e-3, 4: 3e-4}
    assert table["at_grid_edge"].to_dict() == {1: False, 4: True}  # rank 4's best is the grid's smallest lr


def test_an_lr_sweeps_table_iv_holds_each_rank_at_its_chosen_lr_and_a_study_writes_no_lr_choice(tmp_path):
    """Runs at several lrs per rank are a sweep: chosen_lr.csv, and Table IV over the chosen lr's runs only.
    One lr per rank (a study's lr_by_rank), even if ranks differ in lr, is no sweep: no chosen_lr.csv."""
    import json

    runs = [(1, 1e-3, 6.0), (1, 3e-3, 5.0), (4, 1e-3, 4.0), (4, 3e-3, 9.0)]
    rows = []
    for rank, lr, ppl in runs:
        name = f"r{rank}_lr{lr:g}.json"
        curve = [{"step": 0, "round": 0.0, "val_ppl": 20.0}, {"step": 8, "round": 4.0, "val_ppl": ppl}]
        for folder in ("sweep", "study"):
            (tmp_path / folder).mkdir(exist_ok=True)
            (tmp_path / folder / name).write_text(json.dumps({"curve": curve}))
        rows.append({"training_scheme": "split_fed", "rank": rank, "lr": lr, "seed": 0, "steps": 8,
                     "first_val_ppl": 20.0, "final_val_ppl": ppl, "plateau_val_ppl": ppl,
                     "eval_noise_pct": 1.0, "last20_change_pct": 0.5, "record": name})  # fmt: skip
    sweep = pd.DataFrame(rows)
    sweep_lines = write_study_tables(sweep, [], tmp_path / "sweep" / "tables")
    study_lines = write_study_tables(sweep.iloc[[1, 2]], [], tmp_path / "study" / "tables")
    assert (tmp_path / "sweep" / "tables" / "chosen_lr.csv").exists()
    assert any("each rank at its chosen lr" in line for line in sweep_lines)
    assert not (tmp_path / "study" / "tables" / "chosen_lr.csv").exists()
    assert not any("chosen lr" in line for line in study_lines)
    # the sweep's Table IV is the study's: rank 1 at 3e-3 (5.0), rank 4 at 1e-3 (4.0)
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "sweep" / "tables" / "table4.csv"),
        pd.read_csv(tmp_path / "study" / "tables" / "table4.csv"),
    )


def test_table_iv_has_a_row_per_cut_paired_with_the_centralized_runs_by_seed():
    from fedsim.experiments.study.tables import table_iv, table_iv_markdown

    rows = []
    for seed, central in enumerate((5.0, 5.2, 4.9)):
        rows.append({"training_scheme": "centralized", "rank": 4, "seed": seed, "cut": 2, "partition": "iid",
                     "plateau_val_ppl": central})  # fmt: skip
        for cut, cost in ((2, 0.1), (8, 0.3)):
            rows.append({"training_scheme": "split_fed", "rank": 4, "seed": seed, "cut": cut, "partition": "iid",
                         "plateau_val_ppl": central + cost + 0.01 * seed})  # fmt: skip
    table = table_iv(pd.DataFrame(rows)).set_index("cut")
    assert list(table.index) == [2, 8]
    for cut, cost in ((2, 0.1), (8, 0.3)):  # the seed-paired gap: cost + 0.01 x seed, mean over seeds 0-2
        assert table.loc[cut, "gap_plateau_val_ppl"] == pytest.approx(cost + 0.01)
        assert table.loc[cut, "paired_seeds"] == 3 and table.loc[cut, "centralized_seeds"] == 3
    assert "| SF cut |" in table_iv_markdown(table.reset_index())
