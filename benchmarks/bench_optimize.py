"""Resource optimiser: speed and quality, as whole-run figures on this machine.

1. BCD (proposed, exact power) wall time per drop at (K=5, M=N=20), (K=50, M=N=200), (K=100, M=N=400),
   with and without the exact count refinement (targets: median <= 20 ms at K=5, <= 1 s at K=100).
2. Exact vs cvxpy/CLARABEL power solver: time per link solve (ratio measured in the same run) and
   their largest relative disagreement, on §7 drops and drops with a client ~10 m from a server.
3. Gap of BCD to the brute-force optimum on random small instances (K=3-5, M=N=8-12, R={1,2,4,6,8}).
4. Mean total delay of every scheme over drops at the §7 defaults and the reduction vs baseline a.

    python benchmarks/bench_optimize.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from optimize_helpers import ROUNDS, gpt2_workload, power_cases, small_instance  # noqa: E402

from fedsim.core.system import SystemParams, draw_drop  # noqa: E402
from fedsim.optimize import SCHEMES, Problem, brute_force, optimize  # noqa: E402
from fedsim.optimize.power import solve_power_exact  # noqa: E402
from fedsim.optimize.power_cvx import solve_power_cvx  # noqa: E402


def _problem(seed: int, **system) -> Problem:
    return Problem(
        draw_drop(SystemParams(**system), np.random.default_rng(seed)), gpt2_workload(), 16, 10, dict(ROUNDS)
    )


def bcd_times(sizes, drops) -> list[dict]:
    rows = []
    for (k, m), n in zip(sizes, drops, strict=True):
        problems = [
            _problem(s, num_clients=k, num_subchannels_main=m, num_subchannels_fed=m) for s in range(n)
        ]
        # warm-up (imports, caches) on a drop not timed: the drops of one sweep unit share the BCD link-step
        # memo (bcd._shared_memo), so a timed drop must be new to the optimiser
        optimize(_problem(n, num_clients=k, num_subchannels_main=m, num_subchannels_fed=m))
        for refine in (True, False):
            times, cpu = [], []
            for p in problems:
                t0, c0 = time.perf_counter(), time.process_time()
                optimize(p, refine=refine)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            rows.append(
                {
                    "K": k,
                    "M=N": m,
                    "refine": refine,
                    "drops": n,
                    "median_ms": 1e3 * float(np.median(times)),
                    "p90_ms": 1e3 * float(np.quantile(times, 0.9)),
                    "max_ms": 1e3 * float(np.max(times)),
                    "median_cpu_ms": 1e3 * float(np.median(cpu)),
                }
            )
            print(
                f"  BCD K={k:<4} M=N={m:<4} refine={refine!s:<5} drops={n:<3} median {rows[-1]['median_ms']:8.1f} ms"
                f"  p90 {rows[-1]['p90_ms']:8.1f} ms  max {rows[-1]['max_ms']:8.1f} ms"
                f"  (median CPU {rows[-1]['median_cpu_ms']:.1f} ms)",
                flush=True,
            )
    return rows


def power_solvers(drops: int) -> dict:
    t_exact, t_cvx, rel = [], [], []
    solve_power_cvx(
        *power_cases(0)[0][:3], offset_s=power_cases(0)[0][3], load_bits=power_cases(0)[0][4]
    )  # warm-up: cvxpy import and first compile
    for seed in range(drops):
        for case in power_cases(seed):
            t0 = time.perf_counter()
            e = solve_power_exact(*case[:3], offset_s=case[3], load_bits=case[4])
            t1 = time.perf_counter()
            c = solve_power_cvx(*case[:3], offset_s=case[3], load_bits=case[4])
            t2 = time.perf_counter()
            t_exact.append(t1 - t0)
            t_cvx.append(t2 - t1)
            rel.append(abs(c.time_s - e.time_s) / e.time_s if c.status == "optimal" else np.inf)
    out = {
        "link_problems": len(rel),
        "exact_median_ms": 1e3 * float(np.median(t_exact)),
        "cvxpy_median_ms": 1e3 * float(np.median(t_cvx)),
        "ratio_cvxpy_over_exact": float(np.median(t_cvx) / np.median(t_exact)),
        "max_rel_diff": float(np.max(rel)),
        "median_rel_diff": float(np.median(rel)),
    }
    print(
        f"  power: {out['link_problems']} link problems, exact {out['exact_median_ms']:.3f} ms, cvxpy "
        f"{out['cvxpy_median_ms']:.1f} ms (x{out['ratio_cvxpy_over_exact']:.0f}); rel. diff max "
        f"{out['max_rel_diff']:.2e}, median {out['median_rel_diff']:.2e}",
        flush=True,
    )
    return out


def gaps(instances: int) -> dict:
    out = {}
    t_bf = []
    values = {True: [], False: []}
    for seed in range(instances):
        p = small_instance(seed)
        t0 = time.perf_counter()
        best = brute_force(p).delays.total_s
        t_bf.append(time.perf_counter() - t0)
        for refine in values:
            values[refine].append((optimize(p, refine=refine).delays.total_s - best) / best)
    for refine, v in values.items():
        g = np.array(v)
        row = {
            "instances": instances,
            "within_1pct": float(np.mean(g <= 0.01)),
            "min": float(g.min()),
            "median": float(np.median(g)),
            "p90": float(np.quantile(g, 0.9)),
            "p95": float(np.quantile(g, 0.95)),
            "p99": float(np.quantile(g, 0.99)),
            "max": float(g.max()),
            "exact_optimum": float(np.mean(g <= 1e-9)),
        }
        out["refine" if refine else "paper_alg3"] = row
        print(
            f"  gap ({'refined' if refine else 'paper Alg. 3'}): within 1 % on {100 * row['within_1pct']:.1f} %, "
            f"optimal on {100 * row['exact_optimum']:.1f} %, median {row['median']:.2e}, p95 {row['p95']:.2e}, "
            f"p99 {row['p99']:.2e}, max {row['max']:.2e}",
            flush=True,
        )
    out["brute_force_median_s"] = float(np.median(t_bf))
    print(f"  brute force median {out['brute_force_median_s']:.3f} s per instance", flush=True)
    return out


def schemes(drops: int) -> dict:
    totals = {s: [] for s in SCHEMES}
    for seed in range(drops):
        p = _problem(seed)
        rng = np.random.default_rng([seed, 1])
        for s in SCHEMES:
            totals[s].append(optimize(p, s, rng=rng).delays.total_s)
    mean = {s: float(np.mean(v)) for s, v in totals.items()}
    out = {
        "drops": drops,
        "mean_total_s": mean,
        "reduction_vs_a": {s: 1 - mean[s] / mean["a"] for s in SCHEMES},
    }
    print(f"  mean T over {drops} drops: " + ", ".join(f"{s} {mean[s] / 3600:.2f} h" for s in SCHEMES))
    print(
        "  reduction vs a: " + ", ".join(f"{s} {100 * out['reduction_vs_a'][s]:.1f} %" for s in SCHEMES),
        flush=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer drops and instances")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    q = args.quick
    result = {}
    print("1. BCD wall time per drop (exact power solver)")
    result["bcd"] = bcd_times([(5, 20), (50, 200), (100, 400)], [10, 3, 2] if q else [50, 10, 5])
    print("2. exact vs cvxpy power solver")
    result["power"] = power_solvers(20 if q else 300)
    print("3. BCD gap to the brute-force optimum")
    result["gap"] = gaps(30 if q else 200)
    print("4. schemes at the spec §7 defaults")
    result["schemes"] = schemes(20 if q else 100)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
