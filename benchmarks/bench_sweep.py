"""Benchmark: the fig5 sweep (10 bandwidth points x drops x 5 schemes, replay) with the serial and the
process executor; prints wall time, tasks/s and the process/serial speed-up measured in the same run.

    python benchmarks/bench_sweep.py                 # 10 x 100 x 5 = 5000 tasks, each executor
    python benchmarks/bench_sweep.py --drops 20 --workers 2 --timing engine
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import fedsim
from fedsim.scenario import load_scenario

try:
    from fedsim.experiments.harness.store import ResultsStore
    from fedsim.experiments.runner import run_sweep
except ImportError:  # releases up to 702b3df (so that compare.py can time them with this script)
    from fedsim.sweep.runner import run_sweep
    from fedsim.sweep.store import ResultsStore

# the fig5 scenario of the fedsim being timed (compare.py imports an earlier commit's tree, whose schema may
# not read today's file; fig5's workload is the same at every release since 702b3df), else this tree's
_TREE = Path(fedsim.__file__).resolve().parents[1]
SCENARIO = next(
    p
    for p in (
        _TREE / "scenarios" / "fig5_bandwidth.toml",
        Path(__file__).resolve().parents[1] / "scenarios" / "fig5_bandwidth.toml",
    )
    if p.exists()
)


def timed(scenario, executor: str, workers: int | None) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultsStore(tmp)
        store.prepare(scenario)
        start = time.perf_counter()
        rows = run_sweep(scenario, store, executor=executor, workers=workers, progress=False)
        return time.perf_counter() - start, len(rows)


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def parallel_ceiling(workers: int | None) -> float:
    """Speed-up of pure-Python busy work on a process pool vs serial, measured now: the most any
    executor can get from this machine at this moment (other users' load included)."""
    from concurrent.futures import ProcessPoolExecutor

    jobs, n = 2 * (workers or len(os.sched_getaffinity(0))), 5_000_000
    start = time.perf_counter()
    for _ in range(jobs):
        _burn(n)
    serial = time.perf_counter() - start
    with ProcessPoolExecutor(workers) as pool:
        start = time.perf_counter()
        list(pool.map(_burn, [n] * jobs))
        return serial / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drops", type=int, default=100)
    parser.add_argument("--workers", type=int, default=None, help="process workers (default: all cores)")
    parser.add_argument("--timing", default="engine_round", choices=["engine", "engine_round", "analytic"])
    parser.add_argument("--executors", nargs="+", default=["serial", "process"])
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    scenario = load_scenario(
        SCENARIO, [f"montecarlo.drops={args.drops}", f"montecarlo.timing='{args.timing}'"]
    )
    print(f"fig5: 10 points x {args.drops} drops x 5 schemes, timing={args.timing}, cores={os.cpu_count()}")
    results = {}
    for executor in args.executors:
        seconds, tasks = timed(scenario, executor, args.workers)
        results[executor] = seconds
        print(f"{executor:8s} {seconds:8.1f} s  {tasks / seconds:8.1f} tasks/s  ({tasks} tasks)")
    if args.json:
        figures = {f"{name}_s": seconds for name, seconds in results.items()}
        Path(args.json).write_text(json.dumps({"fig5": {"drops": args.drops, **figures}}, indent=2))
    if "serial" in results and "process" in results:
        print(
            f"speed-up process/serial: {results['serial'] / results['process']:.2f}x "
            f"(machine's parallel ceiling now: {parallel_ceiling(args.workers):.2f}x)"
        )


if __name__ == "__main__":
    main()
