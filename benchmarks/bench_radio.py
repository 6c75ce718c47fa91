"""Radio models: the cost of one drop under "nr" (Sionna) against the paper's radio, as a ratio.

Per drop (K = 5, M = N = 20, the spec §7 system): draw the drop, optimise it (proposed BCD) and time one
round of training in the event engine. Medians over drops, both radios measured in the same run; the
target is nr / paper <= 10. Sionna's import and its BLER-table interpolation happen once per process
(reported apart, with the table caches' hit counts to show no drop rebuilds them: the goodput tables and
the every-MCS tables OLLA reads).

    python benchmarks/bench_radio.py [--drops 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from optimize_helpers import ROUNDS, gpt2_workload  # noqa: E402

from fedsim.core.system import SystemParams  # noqa: E402
from fedsim.engine import EngineConfig, simulate  # noqa: E402
from fedsim.optimize import Problem, optimize  # noqa: E402
from fedsim.radio import RadioSection, draw_radio_drop  # noqa: E402

SYSTEM = SystemParams(num_clients=5)


def one_drop(radio: RadioSection | None, seed: int) -> dict[str, float]:
    """Wall seconds of drawing, optimising and engine-timing one drop, and its total delay."""
    t0 = time.perf_counter()
    drop = draw_radio_drop(SYSTEM, radio, np.random.default_rng(seed))
    t1 = time.perf_counter()
    problem = Problem(drop, gpt2_workload(), 16, 10, dict(ROUNDS))
    result = optimize(problem)
    t2 = time.perf_counter()
    sim = simulate(
        drop,
        problem.workload,
        result.allocation,
        batch_size=16,
        local_iterations=10,
        rounds=1.0,
        config=EngineConfig(trace=False),
        rng=np.random.default_rng(seed),
    )
    t3 = time.perf_counter()
    return {
        "draw_s": t1 - t0,
        "optimise_s": t2 - t1,
        "engine_s": t3 - t2,
        "total_s": t3 - t0,
        "round_s": sim.total_s,
    }


def run(drops: int) -> dict:
    from fedsim.radio.nr_link import _mcs_tables, goodput_table  # the cache behind mcs_tables

    radios = {
        "paper": None,
        "nr (UMa, expected goodput)": RadioSection(model="nr", harq="expected"),
        "nr (UMa, sampled HARQ)": RadioSection(model="nr", harq="sampled"),
        "nr (UMi, sampled HARQ)": RadioSection(model="nr", scenario="umi"),
        "nr (UMa, hexgrid placement)": RadioSection(model="nr", harq="expected", placement="hexgrid"),
        "nr (UMa, OLLA, +2 dB bias)": RadioSection(model="nr", link_adaptation="outer", sinr_bias_db=2.0),
    }
    t0 = time.perf_counter()
    one_drop(radios["nr (UMa, sampled HARQ)"], 10_000)  # Sionna import + tables: once per process
    first_s = time.perf_counter() - t0
    one_drop(None, 10_000)
    rows = {}
    for name, radio in radios.items():
        runs = [one_drop(radio, s) for s in range(drops)]
        rows[name] = {key: float(np.median([r[key] for r in runs])) for key in runs[0]}
    paper = rows["paper"]["total_s"]
    for row in rows.values():
        row["ratio_vs_paper"] = row["total_s"] / paper
    info, every = goodput_table.cache_info(), _mcs_tables.cache_info()
    return {
        "drops": drops,
        "first_nr_drop_s (Sionna import + table build)": first_s,
        "goodput_table builds / hits": f"{info.misses} / {info.hits}",
        "mcs_tables builds / hits": f"{every.misses} / {every.hits}",
        "median per drop": rows,
        "target": "nr / paper <= 10",
        "ok": all(r["ratio_vs_paper"] <= 10 for r in rows.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drops", type=int, default=20)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    out = run(args.drops)
    print(
        f"first nr drop (Sionna import + BLER tables, once per process): {out['first_nr_drop_s (Sionna import + table build)']:.1f} s"
    )
    print(f"goodput tables built / reused: {out['goodput_table builds / hits']}")
    print(f"every-MCS tables built / reused: {out['mcs_tables builds / hits']}")
    print(
        f"{'radio':<30} {'draw ms':>8} {'optimise ms':>12} {'engine ms':>10} {'total ms':>9} {'x paper':>8}"
    )
    for name, r in out["median per drop"].items():
        print(
            f"{name:<30} {1e3 * r['draw_s']:8.1f} {1e3 * r['optimise_s']:12.1f} {1e3 * r['engine_s']:10.1f} "
            f"{1e3 * r['total_s']:9.1f} {r['ratio_vs_paper']:8.2f}"
        )
    print(f"target {out['target']}: {'met' if out['ok'] else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
