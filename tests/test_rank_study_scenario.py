"""The rank study takes each rank's learning rate from the committed lr sweep by the rule fixed before it
(chosen_lr_table: lowest plateau PPL, smaller lr on a tie), and trains exactly as the sweep did otherwise."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fedsim.experiments.study.tables import chosen_lr_table, study_row
from fedsim.learn.records import ConvergenceRecord
from fedsim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SWEEP_RECORDS = ROOT / "results" / "rank_lr_sweep" / "records"


def _sweep_choice() -> pd.DataFrame:
    rows = [
        study_row(ConvergenceRecord.load(path), 0, [], record_path=path.name)
        for path in sorted(SWEEP_RECORDS.glob("*.json"))
    ]
    return chosen_lr_table(pd.DataFrame(rows)).set_index("rank")


def test_the_rank_study_uses_the_lr_the_sweep_rule_chose_for_each_rank():
    study = load_scenario(ROOT / "scenarios" / "rank_study.toml").study
    chosen = _sweep_choice()
    assert set(study.lr_by_rank) == set(chosen.index)
    for rank, lr in study.lr_by_rank.items():
        assert lr == chosen.loc[rank, "chosen_lr"], (rank, lr, chosen.loc[rank].to_dict())
    # no choice sits at the edge of the swept grid: the best lr is inside it, not beyond it
    assert not chosen["at_grid_edge"].any(), chosen[["chosen_lr", "at_grid_edge"]]


def test_the_rank_study_trains_as_the_sweep_did_apart_from_seed_scheme_and_lr():
    study = load_scenario(ROOT / "scenarios" / "rank_study.toml")
    sweep = load_scenario(ROOT / "scenarios" / "rank_lr_sweep.toml")
    differ = {"seed", "scheme", "lr", "rank", "eval_every"}
    a = study.study.training.model_dump()
    b = sweep.study.training.model_dump()
    assert {k: v for k, v in a.items() if k not in differ} == {k: v for k, v in b.items() if k not in differ}
    sweep_seeds = set(sweep.sweep.axes.get("study.training.seed", [sweep.study.training.seed]))
    assert not sweep_seeds & set(study.sweep.axes["study.training.seed"])  # lr chosen on a seed never reused
    assert len(study.sweep.axes["study.training.seed"]) >= 5


def test_the_split_fed_vs_centralized_study_runs_rank_4_at_its_swept_lr_with_one_record_name_per_run():
    from fedsim.experiments.study.runs import _NOT_THE_RUN, name_fields, record_stem, run_config
    from fedsim.learn.config import config_diff

    scenario = load_scenario(ROOT / "scenarios" / "splitfed_vs_centralized.toml")
    assert scenario.study.training.lr == _sweep_choice().loc[scenario.study.training.rank, "chosen_lr"]
    configs = [run_config(scenario, p) for p in range(len(scenario.sweep.axes["study.training.seed"]))]
    names = {record_stem(c, name_fields(scenario)) for c in configs}
    assert len(names) == len(configs) == 35
    split = {(c.cut, c.partition) for c in configs if c.scheme == "split_fed"}
    assert split == {(c, p) for c in (2, 8, 15) for p in ("iid", "length_dirichlet")}
    for setting in split:  # 5 seeds per split-fed setting, and 5 centralized references
        assert sorted(
            c.seed for c in configs if (c.cut, c.partition) == setting and c.scheme == "split_fed"
        ) == [0, 1, 2, 3, 4]
    assert sorted(c.seed for c in configs if c.scheme == "centralized") == [0, 1, 2, 3, 4]
    # alpha 0.1 where the partition reads it; elsewhere the default, so that the centralized and the split-fed
    # cut-2 IID runs equal the rank study's rank-4 runs and are taken from its records (reuse_records)
    assert {c.dirichlet_alpha for c in configs if c.partition == "length_dirichlet"} == {0.1}
    assert {c.dirichlet_alpha for c in configs if c.partition == "iid"} == {0.5}
    rank_study = load_scenario(ROOT / "scenarios" / "rank_study.toml")
    rank4 = {(c.scheme, c.seed): c for p in range(30) if (c := run_config(rank_study, p)).rank == 4}
    same = [c for c in configs if (c.scheme == "centralized" or (c.cut, c.partition) == (2, "iid"))]
    assert len(same) == 10
    for c in same:
        assert not config_diff(rank4[(c.scheme, c.seed)].model_dump(), c.model_dump(), _NOT_THE_RUN)
    assert [Path(f) for f in scenario.study.reuse_records] == [ROOT / "results" / "rank_study" / "records"]


def test_record_names_of_the_committed_studies_are_unchanged():
    from fedsim.experiments.study.runs import name_fields, record_stem, run_config

    sweep = load_scenario(ROOT / "scenarios" / "rank_lr_sweep.toml")
    assert record_stem(run_config(sweep, 3), name_fields(sweep)) == "smollm2-135m_split_fed_r1_s100_lr0.01"
    study = load_scenario(ROOT / "scenarios" / "convergence_study.toml")
    assert record_stem(run_config(study, 0), name_fields(study)) == "smollm2-135m_split_fed_r1_s0"


def test_the_plateau_step_is_the_rank_study_at_twice_the_steps_with_an_evaluation_every_round():
    """scenarios/rank_plateau.toml (and the rank-study page's description of it): 128 steps, val PPL every
    global round, every other setting, seed, scheme, rank and lr as the rank study; split-fed runs first."""
    from fedsim.experiments.study.runs import run_config

    plateau = load_scenario(ROOT / "scenarios" / "rank_plateau.toml")
    study = load_scenario(ROOT / "scenarios" / "rank_study.toml")
    assert plateau.study.lr_by_rank == study.study.lr_by_rank == _sweep_choice()["chosen_lr"].to_dict()
    a, b = plateau.study.training, study.study.training
    assert a.steps == 2 * b.steps == 128 and a.eval_every == a.local_iterations == 2
    differ = {"steps", "eval_every"}
    assert {k: v for k, v in a.model_dump().items() if k not in differ} == {
        k: v for k, v in b.model_dump().items() if k not in differ
    }
    runs = [run_config(plateau, p) for p in range(30)]
    want = {(c.scheme, c.seed, c.rank, c.lr) for c in (run_config(study, p) for p in range(30))}
    assert {(c.scheme, c.seed, c.rank, c.lr) for c in runs} == want
    assert [c.scheme for c in runs] == ["split_fed"] * 15 + ["centralized"] * 15
