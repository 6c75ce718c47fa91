"""The SplitFT systems page (``fedsim.report.splitft_systems``) from a synthetic results folder: run counts and
the interim note, the paired change against the baseline with its CI, the delay-term explanation, the BLEU
check, and nothing claimed without runs."""

from __future__ import annotations

import json

import pandas as pd

from fedsim.report.splitft_systems import page


def _run(live, arm, seed, *, total_s, final, client_s, bleu=1.0):
    folder = live / f"{arm}_partitioniid_seed{seed}"
    folder.mkdir(parents=True)
    summary = {"run": folder.name, "arm": arm, "partition": "iid", "seed": seed, "rounds_completed": 2,
               "final_val_ppl": final, "test_ppl": final + 0.1, "bleu": bleu, "rouge_l": 0.3,
               "sim_total_s": total_s, "bits_up": 8e6, "bits_down": 2e6, "cut_changes": 0}  # fmt: skip
    (folder / "summary.json").write_text(json.dumps(summary))
    curve = [{"run": folder.name, "step": s, "val_ppl": p, "sim_time_s": total_s * s / 10}
             for s, p in ((0, 20.0), (5, 10.0), (10, final))]  # fmt: skip
    (folder / "curve.json").write_text(json.dumps(curve))
    phases = pd.DataFrame(
        [{"round": r, "phase": "forward", "actors": 3, "busy_s": 3 * client_s, "max_actor_s": client_s,
          "bits": 0.0} for r in (0, 1)]  # fmt: skip
    )
    phases.to_csv(folder / "phases.csv", index=False)


def test_the_page_pairs_each_arm_with_the_baseline_by_seed_and_explains_the_round_time(tmp_path):
    results = tmp_path / "results"
    folder = results / "splitft_compute_bound"
    live = folder / "live"
    scenario = {"live": {"arms": {"splitlora_fixed": {}, "balance": {}},
                         "vary": {"partition": ["iid"], "seed": [0, 1, 2]}, "training": {"eval_samples": 96}}}  # fmt: skip
    folder.mkdir(parents=True)
    (folder / "scenario.json").write_text(json.dumps(scenario))
    for seed in (0, 1):
        _run(live, "splitlora_fixed", seed, total_s=10.0, final=6.0, client_s=4.0)
        _run(live, "balance", seed, total_s=8.0 if seed == 0 else 6.0, final=6.0, client_s=2.0, bleu=0.0)
    text = page(results)
    section = text.split("## Compute-bound")[1].split("## Uplink-bound")[0]
    assert "Runs committed: 4 of 6 (interim" in section
    # simulated time: -20 % and -40 %: mean -30 %, t-CI half-width 12.706 * 14.14 / sqrt(2) = 127 %
    assert "| `balance` | iid | 2 |" in section and "-30.0 ± 127.1 %" in section
    assert "CI excludes 0" not in section.split("-30.0 ± 127.1 %")[1].split("|")[0]
    # the common target is 6.0 (both arms end there): reached at 10 s and at 8 / 6 s
    assert "`balance` (iid): 3.5 s per round against 5 s (-30.0 %); largest changes per round: client compute -2 s." in section
    assert "BLEU and ROUGE-L above 0 in 2 of 4 runs" in section
    assert "`scenarios/splitft_uplink_bound.toml` has no committed runs yet: nothing is claimed" in text


def test_the_seeds_figure_has_a_ppl_row_and_one_cut_row_per_moving_arm():
    from fedsim.plots.splitft import splitft_seeds_figure

    curve = pd.DataFrame(
        [{"run": f"{arm}_{p}_{s}", "arm": arm, "partition": p, "seed": s, "step": k, "val_ppl": 10.0 - k - s,
          "sim_time_s": 2.0 * k} for arm in ("splitlora_fixed", "balance") for p in ("iid", "length_dirichlet")
         for s in (0, 1) for k in range(3)]  # fmt: skip
    )
    cuts = pd.DataFrame(
        [{"run": f"{arm}_{p}_{s}", "arm": arm, "partition": p, "seed": s, "round": r, "client": c,
          "cut": 2 + (arm == "balance") * r * c} for arm in ("splitlora_fixed", "balance")
         for p in ("iid", "length_dirichlet") for s in (0, 1) for r in range(3) for c in range(2)]  # fmt: skip
    )
    fig = splitft_seeds_figure(curve, cuts, ["partition"])
    axes = fig.axes
    assert len(axes) == 2 * 2  # (PPL row + the one moving arm's cut row) x two partitions
    top = axes[0]
    assert len(top.lines) == 2 * (2 + 1)  # per arm: two seeds (thin) and their mean
    assert axes[2].get_ylabel() == "balance\ncut" and len(axes[2].lines) == 2  # one step line per client


def test_with_only_the_baseline_run_the_page_says_there_is_no_pair_yet(tmp_path):
    results = tmp_path / "results"
    live = results / "splitft_compute_bound" / "live"
    _run(live, "splitlora_fixed", 0, total_s=10.0, final=6.0, client_s=4.0)
    text = page(results)
    assert "Runs committed: 1." in text and "No pair yet" in text


def test_side_by_side_says_where_an_arm_wins_and_where_it_is_not_resolved(tmp_path):
    results = tmp_path / "results"
    # compute-bound: balance 30 % and 32 % faster on seeds 0 and 1 (a win); uplink-bound: +10 % and -10 %
    for name, times in (("splitft_compute_bound", (7.0, 6.8)), ("splitft_uplink_bound", (11.0, 9.0))):
        live = results / name / "live"
        for seed, t in enumerate(times):
            _run(live, "splitlora_fixed", seed, total_s=10.0, final=6.0, client_s=4.0)
            _run(live, "balance", seed, total_s=t, final=6.0, client_s=2.0)
    text = page(results).split("## The two systems side by side")[1]
    # the baseline's round: 10 s over 2 rounds = 5 s, of which 'forward' (client compute) 4 s, no transfers
    assert "`splitft_compute_bound`: a baseline round of 5 s, its compute terms 4 s and its transfer terms 0 s" in text
    row = next(line for line in text.splitlines() if line.startswith("| `balance` | iid |"))
    compute, uplink = row.split("|")[3:5]
    half = 12.706 * abs(-30.0 - -32.0) / 2**0.5 / 2**0.5  # t(0.975, 1) x std / sqrt(2)
    assert compute.strip() == f"-31.0 ± {half:.1f} % (wins), 2 seeds"
    assert "(not resolved), 2 seeds" in uplink and uplink.strip().startswith("+0.0 ±")


def test_fedsim_plot_draws_the_seeds_figure_from_runs_committed_one_by_one(tmp_path):
    from fedsim.plots import make_figures

    folder = tmp_path / "results" / "splitft_compute_bound"
    live = folder / "live"
    (folder).mkdir(parents=True)
    (folder / "scenario.json").write_text(json.dumps({"live": {"arms": {}}, "outputs": {"formats": ["png"]}}))
    for seed in (0, 1):
        _run(live, "splitlora_fixed", seed, total_s=10.0, final=6.0, client_s=4.0)
        _run(live, "balance", seed, total_s=8.0, final=6.0, client_s=2.0)
        for arm, cuts in (("splitlora_fixed", (2, 2, 2)), ("balance", (2, 3, 4))):
            run = f"{arm}_partitioniid_seed{seed}"
            rows = [{"round": r, "client": 0, "cut": c, "run": run, "arm": arm, "partition": "iid", "seed": seed}
                    for r, c in enumerate(cuts)]  # fmt: skip
            pd.DataFrame(rows).to_csv(live / run / "cuts.csv", index=False)
    made = make_figures(folder)
    assert folder / "figures" / "splitft.png" in made
    assert "![splitft_compute_bound: val PPL vs simulated time, cut trajectories]" in page(tmp_path / "results")


def test_each_rcut_arm_is_paired_with_its_own_arm_at_full_rank(tmp_path):
    results = tmp_path / "results"
    folder = results / "splitft_compute_bound"
    live = folder / "live"
    scenario = {"live": {"arms": {"splitlora_fixed": {}, "splitlora_fixed_rcut4": {}},
                         "vary": {"partition": ["iid"], "seed": [0, 1]},
                         "training": {"lora_alpha_policy": "proportional"}}}  # fmt: skip
    folder.mkdir(parents=True)
    (folder / "scenario.json").write_text(json.dumps(scenario))
    for seed, final in ((0, 5.5), (1, 4.5)):  # rcut4 PPL against 6.0 and 5.0: -8.33 % and -10 %
        _run(live, "splitlora_fixed", seed, total_s=10.0, final=final + 0.5, client_s=4.0)
        _run(live, "splitlora_fixed_rcut4", seed, total_s=10.0, final=final, client_s=4.0)
    text = page(results).split("### Rank on the cut blocks")[1].split("###")[0]
    assert "keep the other blocks' LoRA scale" in text
    row = next(line for line in text.splitlines() if line.startswith("| `splitlora_fixed_rcut4` vs `splitlora_fixed`"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    changes = [100 * (5.5 / 6.0 - 1), 100 * (4.5 / 5.0 - 1)]
    half = 12.706 * abs(changes[0] - changes[1]) / 2**0.5 / 2**0.5
    assert cells[1:3] == ["iid", "2"]
    assert cells[3] == f"{sum(changes) / 2:+.1f} ± {half:.1f} %"
    assert cells[5] == "+0.0 ± 0.0 %"  # the same uplink bits in this synthetic pair


def test_the_quality_signal_table_sets_each_signal_against_its_round_to_round_noise(tmp_path):
    from fedsim.report.splitft_systems import quality_table

    live = tmp_path / "live"
    for run, shift in (("score_probe_partitioniid_seed0", 0.0), ("score_probe_partitioniid_seed1", 0.1)):
        (live / run).mkdir(parents=True)
        pd.DataFrame(
            [{"client": c, "rounds": 8, "probe_examples": 16, "batch_rel_step_std": 0.3, "batch_rel_mean": 1.0,
              "probe_rel_step_std": 0.02, "probe_rel_mean": 0.8 + shift * c,
              "ema_rel_step_std": 0.01, "ema_rel_mean": 0.8 + (0.2 + shift) * c} for c in range(3)]  # fmt: skip
        ).to_csv(live / run / "quality_noise.csv", index=False)
    (live / "balance_partitioniid_seed0").mkdir()  # not a score run: not read
    pd.DataFrame([{"client": 0, "ema_rel_step_std": 99.0}]).to_csv(live / "balance_partitioniid_seed0" / "quality_noise.csv")
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:5]] for line in quality_table(live).splitlines()
            if line.startswith("| ") and not line.startswith("| signal")}  # fmt: skip
    assert rows["training-batch loss"] == ["0.3", "0", "0"]
    assert rows["probe-set loss"] == ["0.02", "0.1", "5"]  # spreads 0 and 0.2: mean 0.1
    assert rows["EMA of the probe-set loss"] == ["0.01", "0.5", "50"]  # spreads 0.4 and 0.6
    assert "Over 2 score-rule runs of 8 rounds, 3 clients each; probe sets of 16 examples" in quality_table(live)
