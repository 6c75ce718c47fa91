"""SplitFT's compute-bound system (issue 23, ``scenarios/splitft_compute_bound.toml``), checked against the
delay model of its live drop without training: a ~10x client compute spread, memory caps that bind for some
clients (and for the optimiser), compute dominating the round; the uplink-bound system (the first study's, and
``scenarios/splitft_uplink_bound.toml`` with the same arms and caps) as the contrast."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fedsim.core.delay import delays
from fedsim.core.model_configs import load_model_config
from fedsim.experiments.live.runs import live_cut_planner, live_drop
from fedsim.learn.config import TrainConfig
from fedsim.learn.federated.adaptive_cut import memory_caps
from fedsim.scenario import load_scenario
from fedsim.scenario.arms import arm_configs

ROOT = Path(__file__).resolve().parents[1]


def _round_terms(path: str, arm: str) -> dict:
    """The live drop of a scenario and the delay terms of one global round of ``arm``'s configuration."""
    scenario = load_scenario(ROOT / "scenarios" / path)
    cfg = next(c for name, tags, c in arm_configs(scenario.live) if tags["arm"] == arm)
    config = load_model_config(cfg.model)
    drop, workload, alloc = live_drop(scenario, cfg, config)
    i = cfg.local_iterations
    alloc = replace(alloc, cuts=np.asarray(cfg.client_cuts()))
    d = delays(drop, workload, alloc, batch_size=cfg.batch_size, local_iterations=i, rounds=1.0,
               upload_every_local_iteration=scenario.training.upload_every_local_iteration)  # fmt: skip
    return {
        "scenario": scenario, "cfg": cfg, "config": config, "drop": drop, "workload": workload, "alloc": alloc,
        "delays": d,
        # one round with only the compute terms, and with only the transfer terms, of the same drop
        "compute_s": i * (d.t_client_fwd_s.max() + d.t_server_fwd_s + d.t_server_bwd_s + d.t_client_bwd_s.max()),
        "transfer_s": i * d.t_upload_act_s.max() + d.T3_s,
    }  # fmt: skip


@pytest.fixture(scope="module")
def bound():
    return _round_terms("splitft_compute_bound.toml", "splitlora_fixed")


def test_the_scenario_builds_its_arms_and_the_live_drop_spreads_compute_about_10x(bound):
    scenario = bound["scenario"]
    runs = arm_configs(scenario.live)
    arms = {tags["arm"] for _, tags, _ in runs}
    assert arms == {"splitlora_fixed", "splitlora_fixed_rcut4", "balance", "score_probe", "optimiser",
                    "optimiser_rcut4"}  # fmt: skip
    assert len(runs) == 6 * 2 * 3  # x {iid, length-Dirichlet} x 3 seeds
    # r_cut < r without a hidden scale change: every arm keeps alpha / r on the r_cut blocks
    assert all(cfg.lora_alpha_policy == "proportional" for _, _, cfg in runs)
    assert all(cfg.local_iterations >= 5 and cfg.eval_samples >= 96 for _, _, cfg in runs)
    # every adaptive arm re-chooses subchannels and power after each cut move (the fixed arms have nothing to move)
    adaptive = [cfg.adaptive_cuts for _, _, cfg in runs if cfg.adaptive_cuts is not None]
    assert len(adaptive) == 4 * 2 * 3 and all(a.reoptimise_allocation for a in adaptive)
    f = bound["drop"].client_flops_per_s
    assert 8.0 <= f.max() / f.min() <= 12.0


def test_memory_caps_bind_for_some_clients_and_the_fixed_baseline_sits_at_the_weakest(bound):
    scenario, base, config = bound["scenario"], bound["cfg"], bound["config"]
    j = bound["workload"].num_layers
    for arm in ("balance", "score_probe", "optimiser"):
        cfg = TrainConfig(**{**base.model_dump(), **scenario.live.arms[arm]})
        top = cfg.adaptive_cuts.cut_max
        caps = [min(c, top) for c in memory_caps(config, cfg, j)]
        assert caps == [2, 12, 3, 12, 12]  # memory bounds cut_max = 12 for clients 0 and 2, not 1, 3, 4
        assert [k for k, c in enumerate(caps) if c < top] == [0, 2]
        assert set(base.client_cuts()) == {min(caps)}  # SplitLoRA's fixed cut: the weakest client's cap


def test_compute_dominates_the_round_here_and_transfers_in_the_uplink_bound_study(bound):
    assert bound["compute_s"] > 5 * bound["transfer_s"]
    d = bound["delays"]
    slowest = int(np.argmax(d.t_client_fwd_s + d.t_upload_act_s))
    assert d.t_client_fwd_s[slowest] > 50 * d.t_upload_act_s[slowest]  # T1's critical client is computing
    study = _round_terms("splitft_study.toml", "same_cut")
    assert study["transfer_s"] > study["compute_s"]  # the first system is uplink-bound
    again = _round_terms("splitft_uplink_bound.toml", "splitlora_fixed")  # it, with this study's arms
    assert again["transfer_s"] > again["compute_s"]
    d = again["delays"]
    assert (d.t_upload_act_s > d.t_client_fwd_s).all()  # activations dominate T1 for every client


def test_in_the_uplink_bound_system_the_optimiser_sends_every_client_to_cut_1_and_no_cap_binds():
    terms = _round_terms("splitft_uplink_bound.toml", "splitlora_fixed")
    scenario, base = terms["scenario"], terms["cfg"]
    cfg = TrainConfig(**{**base.model_dump(), **scenario.live.arms["optimiser"]})
    caps = [min(c, 12) for c in memory_caps(terms["config"], cfg, terms["workload"].num_layers)]
    assert caps == [2, 12, 3, 12, 12]  # the same caps as the compute-bound system
    plan = live_cut_planner(scenario, cfg, drop=terms["drop"], workload=terms["workload"], alloc=terms["alloc"])
    f = list(terms["drop"].client_flops_per_s)
    assert plan(base.client_cuts(), f, caps) == plan(base.client_cuts(), f, [12] * 5)
    cuts, total = plan(base.client_cuts(), f, caps)
    assert cuts == [1] * 5 and total < terms["delays"].total_s


def test_the_caps_bind_for_the_optimiser_and_adaptive_cuts_can_win_on_this_drop(bound):
    scenario, base, config = bound["scenario"], bound["cfg"], bound["config"]
    cfg = TrainConfig(**{**base.model_dump(), **scenario.live.arms["optimiser"]})
    j = bound["workload"].num_layers
    caps = [min(c, cfg.adaptive_cuts.cut_max) for c in memory_caps(config, cfg, j)]
    plan = live_cut_planner(scenario, cfg, drop=bound["drop"], workload=bound["workload"], alloc=bound["alloc"])
    f = list(bound["drop"].client_flops_per_s)
    free, _ = plan(base.client_cuts(), f, [cfg.adaptive_cuts.cut_max] * cfg.num_clients)
    capped, capped_s = plan(base.client_cuts(), f, caps)
    assert any(c > cap for c, cap in zip(free, caps, strict=True))  # the free optimum breaks a cap
    assert free[2] == 5 and capped == [1, 1, 3, 1, 4]  # as the scenario's comment says
    assert all(1 <= c <= cap for c, cap in zip(capped, caps, strict=True))
    # one round at the optimiser's capped cuts is shorter than at SplitLoRA's fixed cut (the engine's round)
    assert capped_s < 0.9 * bound["delays"].total_s
