"""Issue 23 in a live run on a tiny model (`fedsim run`): with ``adaptive_cuts.reoptimise_allocation`` the radio
is re-chosen after every cut move (the optimiser's link step for the new cuts), charged once per move and used
to time the following rounds; ``allocations.csv`` logs every version."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from test_splitft_study import TRAINING, _toml

from fedsim.core.allocation import client_power_w, uniform_ranks
from fedsim.core.delay import delays
from fedsim.experiments.live.runs import live_drop, live_reallocator
from fedsim.optimize import allocate_links
from fedsim.scenario import load_scenario
from fedsim.scenario.arms import arm_configs

ARMS = {
    "realloc": {"cuts": [2, 2, 2], "adaptive_cuts": {"rule": "optimiser", "cut_min": 1, "cut_max": 3,
                                                     "reoptimise_allocation": True}},
    "frozen": {"cuts": [2, 2, 2], "adaptive_cuts": {"rule": "optimiser", "cut_min": 1, "cut_max": 3}},
}  # fmt: skip


def test_the_allocation_is_reoptimised_after_each_cut_move_in_a_live_run(tmp_path):
    from fedsim.cli import main

    training = {**TRAINING, "partition": "iid"}
    path = _toml(tmp_path / "realloc.toml", ARMS, training)
    text = path.read_text().replace("vary = { dirichlet_alpha = [0.5, 5.0] }\n", "")
    path.write_text(text.replace("[system]\n", "[system]\nserver_cycles = 1e8\n"))  # a slow server
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--no-progress"]) == 0
    run = out / "live" / "realloc"
    allocs = pd.read_csv(run / "allocations.csv")
    rounds = pd.read_csv(run / "rounds.csv")
    cuts = pd.read_csv(run / "cuts.csv").pivot(index="round", columns="client", values="cut")
    k = 3
    versions = int(allocs["version"].max())
    # (c) one reallocation per aggregation that moved cuts, and the rounds say which version timed them
    moved_after = [r for r in range(1, len(cuts)) if (cuts.loc[r] != cuts.loc[r - 1]).any()]
    assert versions == len(moved_after) >= 1
    assert len(allocs) == k * (versions + 1)
    expected = np.cumsum([0] + [1 if r in moved_after else 0 for r in range(1, len(rounds))])
    np.testing.assert_array_equal(rounds["allocation_version"], expected)
    # (a) every version is the link step for its cuts, from the one before (the optimise function called directly)
    scenario = load_scenario(path)
    cfg = next(c for _, tags, c in arm_configs(scenario.live) if tags["arm"] == "realloc")
    from fedsim.learn.setup import load

    drop, workload, alloc = live_drop(scenario, cfg, load(cfg, progress=False)[0].config)
    j = workload.num_layers
    alloc = replace(alloc, cuts=np.array([2, 2, 2]), ranks=uniform_ranks(k, j, cfg.rank))
    problem = live_reallocator(scenario, cfg, drop=drop, workload=workload, alloc=alloc, adapter=None).problem
    by_version = {v: g.sort_values("client") for v, g in allocs.groupby("version")}
    chain = [alloc]
    for v in range(1, versions + 1):
        new_cuts = by_version[v]["cut"].to_numpy()
        chain.append(allocate_links(problem, chain[-1], cuts=new_cuts, rank=cfg.rank))
    for v, a in enumerate(chain):
        rows = by_version[v]
        np.testing.assert_array_equal(rows["subchannels_main"], np.bincount(a.owner_main[a.owner_main >= 0], minlength=k))
        np.testing.assert_array_equal(rows["subchannels_fed"], np.bincount(a.owner_fed[a.owner_fed >= 0], minlength=k))
        p_main = client_power_w(a.owner_main, a.psd_main_w_hz, drop.main.subchannel_hz, num_clients=k)
        np.testing.assert_allclose(rows["power_main_w"], p_main, rtol=1e-12)
    # (b) a round with no move at its end takes the delay model's round time of its version's allocation and cuts
    checked = 0
    for e, row in rounds.iterrows():
        if e + 1 in moved_after:
            continue
        v = int(row["allocation_version"])
        a = replace(chain[v], cuts=cuts.loc[e].to_numpy(), ranks=uniform_ranks(k, j, cfg.rank))
        want = delays(drop, workload, a, batch_size=cfg.batch_size, local_iterations=cfg.local_iterations,
                      rounds=1.0, upload_every_local_iteration=scenario.training.upload_every_local_iteration)
        assert abs(row["duration_s"] - want.total_s) <= 1e-9 * want.total_s
        checked += v > 0
    assert checked >= 1
    # the switch off: no allocations.csv and no version column
    frozen = out / "live" / "frozen"
    assert not (frozen / "allocations.csv").exists()
    assert "allocation_version" not in pd.read_csv(frozen / "rounds.csv").columns
