"""Scale table: optimiser and engine time and peak memory per drop as the number of clients grows.

For K in {5, 50, 100, 500, 1000} clients with M = N = 4K subchannels (the §7 ratio), per drop: the proposed
scheme (BCD, refined, exact power), then one global round of the chosen allocation in the event engine
(tracing off, I = 10 local iterations). Times are medians over the drops; peak memory is the largest
tracemalloc peak (Python and numpy allocations) of either stage, measured in a separate untimed pass. The
last row fits time ~ K^a (least squares on log-log) and prints a for each column.

    python benchmarks/bench_scale.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from optimize_helpers import ROUNDS, gpt2_workload  # noqa: E402

from fedsim.core.system import SystemParams, draw_drop  # noqa: E402
from fedsim.engine import EngineConfig, simulate  # noqa: E402
from fedsim.optimize import Problem, optimize  # noqa: E402

SIZES = (5, 50, 100, 500, 1000)
BATCH, ITERATIONS = 16, 10


def _problem(k: int, seed: int) -> Problem:
    params = SystemParams(num_clients=k, num_subchannels_main=4 * k, num_subchannels_fed=4 * k)
    return Problem(
        draw_drop(params, np.random.default_rng(seed)), gpt2_workload(), BATCH, ITERATIONS, dict(ROUNDS)
    )


def _engine(problem: Problem, result) -> None:
    simulate(
        problem.drop,
        problem.workload,
        result.allocation,
        batch_size=BATCH,
        local_iterations=ITERATIONS,
        rounds=1,
        config=EngineConfig(trace=False),
        rng=np.random.default_rng(0),
    )


def _peak_mb(fn) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def exponent(ks, values) -> float:
    """a in value ~ K^a, least squares on log-log."""
    return float(np.polyfit(np.log(ks), np.log(values), 1)[0])


def scale_rows(sizes, drops_for) -> list[dict]:
    rows = []
    for k in sizes:
        problems = [_problem(k, s) for s in range(drops_for(k))]
        # warm-up of both stages (imports, caches) on a drop not timed: the drops of one sweep unit share the
        # BCD link-step memo (bcd._shared_memo), so a timed drop must be new to the optimiser
        warm = _problem(k, len(problems))
        _engine(warm, optimize(warm))
        t_opt, t_eng, results = [], [], []
        for p in problems:
            t0 = time.perf_counter()
            results.append(optimize(p))
            t_opt.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _engine(p, results[-1])
            t_eng.append(time.perf_counter() - t0)
        p, res = _problem(k, 0), results[0]  # the first drop drawn again: a new object, so no memo hit
        row = {
            "K": k,
            "M=N": 4 * k,
            "drops": len(problems),
            "optimise_ms": 1e3 * float(np.median(t_opt)),
            "engine_ms": 1e3 * float(np.median(t_eng)),
            "engine_client_it_per_s": k * ITERATIONS / float(np.median(t_eng)),
            "optimise_peak_mb": _peak_mb(lambda p=p: optimize(p)),
            "engine_peak_mb": _peak_mb(lambda p=p, res=res: _engine(p, res)),
        }
        rows.append(row)
        print(
            f"{k:>6} {4 * k:>6} {row['drops']:>5} {row['optimise_ms']:>12.1f} {row['engine_ms']:>11.1f} "
            f"{row['engine_client_it_per_s']:>13,.0f} {row['optimise_peak_mb']:>13.2f} {row['engine_peak_mb']:>11.2f}",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one drop per size")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    print(
        f"{'K':>6} {'M=N':>6} {'drops':>5} {'optimise ms':>12} {'engine ms':>11} {'engine it/s':>13} "
        f"{'opt peak MB':>13} {'eng peak MB':>11}"
    )
    rows = scale_rows(SIZES, (lambda k: 1) if args.quick else (lambda k: 5 if k <= 100 else 2))
    ks = [r["K"] for r in rows]
    fit = {
        col: exponent(ks, [r[col] for r in rows])
        for col in ("optimise_ms", "engine_ms", "optimise_peak_mb", "engine_peak_mb")
    }
    print(
        f"{'K^a':>6} {'':>6} {'':>5} {fit['optimise_ms']:>12.2f} {fit['engine_ms']:>11.2f} {'':>13} "
        f"{fit['optimise_peak_mb']:>13.2f} {fit['engine_peak_mb']:>11.2f}   (fitted growth exponent a)"
    )
    if args.json:
        args.json.write_text(json.dumps({"scale": rows, "exponent": fit}, indent=1))


if __name__ == "__main__":
    main()
