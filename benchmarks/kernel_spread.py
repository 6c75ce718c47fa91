"""How far the same float computation drifts between CPU kernel paths: the measurement behind the tolerances
in ``tests/kernel_tolerance.py``.

Runs the tiny FedsLLM training curve of ``tests/test_splitft_split.py`` (GPT-2 and Llama families, 6 steps)
in a fresh process per setting: torch's native kernels, ``ATEN_CPU_CAPABILITY=avx2`` and ``=default`` (the
last with numpy's widest SIMD features off through ``NPY_DISABLE_CPU_FEATURES``), each at 1 and 2 torch
threads, and prints the largest relative difference between any two settings and against the recorded curve.

    python benchmarks/kernel_spread.py
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
NUMPY_WIDE_SIMD = "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"  # numpy 2.4 names; .ci/run uses the same

CURVE = """
import json, sys, numpy as np, torch
sys.path.insert(0, {tests!r})
from test_splitft_split import _tiny_fedsllm_curve
torch.set_num_threads({threads})
print(json.dumps({{family: _tiny_fedsllm_curve(family) for family in ("gpt2", "llama")}}))
"""

SETTINGS = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "NPY_DISABLE_CPU_FEATURES": NUMPY_WIDE_SIMD},
}


def curve(env: dict[str, str], threads: int) -> dict:
    code = CURVE.format(tests=str(TESTS), threads=threads)
    done = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def max_rel(a: dict, b: dict) -> float:
    rows = [(ra, rb) for fam in a for ra, rb in zip(a[fam], b[fam], strict=True)]
    pairs = [(x, y) for ra, rb in rows for x, y in zip(ra, rb, strict=True) if x is not None]
    return max(abs(x - y) / abs(y) for x, y in pairs)


def main() -> None:
    sys.path.insert(0, str(TESTS))
    from test_splitft_split import GOLDEN

    runs = {f"{name}, {t} thread(s)": curve(env, t) for name, env in SETTINGS.items() for t in (1, 2)}
    print(f"{'setting':<28} max relative difference to the recorded curve")
    for name, run in runs.items():
        print(f"{name:<28} {max_rel(run, GOLDEN):.2e}")
    spread = max(max_rel(runs[a], runs[b]) for a, b in itertools.combinations(runs, 2))
    print(f"largest difference between any two settings: {spread:.2e}")


if __name__ == "__main__":
    main()
