"""The SplitFT study (``results/splitft_study``): same cut vs adaptive per-client cuts x r_cut = r vs r_cut < r
under length-Dirichlet data, from the live arms' committed summary, curves and inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from fedsim.report.common import GENERATED, image, md_table, span

ARMS_TABLE = ["arm", "dirichlet_alpha", "rank", "rank_cut", "final_val_ppl", "test_ppl", "bleu", "rouge_l",
              "sim_time_to_target_s", "sim_total_s", "bits_up", "bits_down", "cuts_end", "cut_changes"]  # fmt: skip


def _cell(value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
    return str(value)


def settings(folder: Path) -> list[str]:
    inputs = json.loads((folder / "live" / "inputs.json").read_text(encoding="utf-8"))
    t, system = inputs["live"]["training"], inputs["system"]
    arms = inputs["live"]["arms"]
    cells = [[f"`{k}`", f"`{t[k]}`"] for k in ("model", "num_clients", "batch_size", "seq_len",
             "local_iterations", "steps", "rank", "lora_alpha", "lr", "partition", "train_samples", "eval_every",
             "eval_samples", "test_samples", "generate_mrs", "max_new_tokens", "target_ppl", "seed") if k in t]  # fmt: skip
    cells.append(["client compute `system.client_cycles_min`-`max`",
                  f"{system['client_cycles_min']:.3g}-{system['client_cycles_max']:.3g} cycles/s"])  # fmt: skip
    return [
        f"{len(arms)} arms ({', '.join(f'`{a}`' for a in arms)}), each at every length-Dirichlet alpha; one "
        f"seed (`seed` = {t['seed']}, `base_seed` = {inputs['base_seed']}) per run. Settings every run shares "
        "(`live/inputs.json`):", "",
        md_table(["setting", "value"], cells), "",
        f"**Sample counts.** Validation PPL is measured on `eval_samples` = {t['eval_samples']} validation "
        f"examples and test PPL on `test_samples` = {t['test_samples']} test examples; BLEU and ROUGE-L on "
        f"`generate_mrs` = {t['generate_mrs']} test MRs, at most {t['max_new_tokens']} new tokens each. "
        "Read PPL differences between arms with these counts in mind.",
    ]  # fmt: skip


def comparisons(summary: pd.DataFrame) -> str:
    """Per alpha: each arm against its reference on time to target, simulated time, bits and PPL."""
    pairs = [("same_cut_rcut4", "same_cut"), ("adaptive_rcut4", "adaptive"), ("adaptive", "same_cut"),
             ("adaptive_rcut4", "same_cut_rcut4")]  # fmt: skip
    cols = [("sim_time_to_target_s", "time to target"), ("sim_total_s", "simulated time"),
            ("bits_up", "uplink bits"), ("final_val_ppl", "final val PPL"), ("test_ppl", "test PPL")]  # fmt: skip
    rows = []
    for arm, ref in pairs:
        for alpha, g in summary.groupby("dirichlet_alpha", sort=True):
            a, r = g[g.arm == arm], g[g.arm == ref]
            if a.empty or r.empty:
                continue
            a, r = a.iloc[0], r.iloc[0]
            cells = [f"`{arm}` vs `{ref}`", f"{alpha:g}"]
            cells += [f"{100 * (a[c] / r[c] - 1):+.2f} %" for c, _ in cols]
            cells.append(f"{(a.bits_down - r.bits_down) / 1e6:+.1f}")
            rows.append(cells)
    return md_table(["arm vs reference", "alpha", *(n for _, n in cols), "downlink Mbit"], rows)


def rounds_agree(curve: pd.DataFrame) -> list[str]:
    """How far apart the arms' val PPL is round by round, and the round each crosses the target."""
    evals = curve.dropna(subset=["val_ppl"])
    evals = evals[evals["round"] > 0]
    spread = evals.groupby(["dirichlet_alpha", "round"]).val_ppl.agg(lambda v: 100 * (v.max() / v.min() - 1))
    same = evals[evals.arm.isin(["same_cut", "adaptive"])]
    cut_spread = same.groupby(["dirichlet_alpha", "round"]).val_ppl.agg(lambda v: 100 * (v.max() / v.min() - 1))
    crossing = []
    for _, g in evals.groupby("run"):
        hit = g[g.val_ppl <= g.target_ppl]
        crossing.append(float(hit["round"].min()) if not hit.empty else math.nan)
    target = evals.target_ppl.iloc[0]
    return [
        f"- Round by round, val PPL of `same_cut` and `adaptive` differ by at most {cut_spread.max():.2f} % "
        f"(all four arms: at most {spread.max():.2f} %), at every alpha.",
        f"- The runs first reach val PPL {target:g} in round {span(crossing, '{:.0f}')}"
        + (" (every run)." if len(set(crossing)) == 1 else "."),
    ]


def page(results: Path) -> str:
    folder = results / "splitft_study"
    summary = pd.read_csv(folder / "live" / "arms_summary.csv")
    curve = pd.read_csv(folder / "live" / "arms_curve.csv")
    table = summary[ARMS_TABLE]
    lines = [GENERATED, "", "# SplitFT study", "",
             "Live SmolLM2-135M runs timed by the engine on one drop: same cut vs adaptive per-client cuts, "
             "r_cut = r vs r_cut < r, under a length-based Dirichlet split of the training data. What the arms "
             "do: [Convergence and SplitFT studies](../guides/studies.md).", "", "## Setting", "",
             *settings(folder), "", "## The arms", "",
             "Simulated times in seconds (the engine's clock), bits summed over the run; time to target = "
             "simulated time when val PPL first reaches the target. Wall times are left out (the machine is "
             "not recorded).", "",
             md_table(ARMS_TABLE, [[_cell(v) for v in row] for row in table.itertuples(index=False)]), "",
             "## Arm against arm", "",
             "Relative change of the first arm against the second at the same alpha (negative = smaller).", "",
             comparisons(summary), "", *rounds_agree(curve), "", "## Figure", "",
             image("splitft_study/splitft.png", "SplitFT: val PPL vs simulated time, cuts per round")]  # fmt: skip
    return "\n".join(lines).rstrip() + "\n"
