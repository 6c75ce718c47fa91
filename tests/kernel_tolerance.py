"""How far the same computation may drift between CPUs: the tolerance for comparing with a recorded float.

torch and numpy pick SIMD kernels by CPU (and torch splits reductions by thread count); different kernels
round differently, so a float recorded on one machine is compared on another at a measured tolerance, never
exactly. A claim that two code paths are the same is checked bit for bit by computing both in one process.

Measured with ``python benchmarks/kernel_spread.py`` (2026-12-05, Intel Xeon with AVX-512, torch 2.13.0 CPU,
numpy 2.4.6): the tiny FedsLLM training curve (6 steps, GPT-2 and Llama, 11 floats each) under torch's native
AVX-512 kernels, ``ATEN_CPU_CAPABILITY=avx2`` and ``ATEN_CPU_CAPABILITY=default`` (with numpy's widest SIMD
features off through ``NPY_DISABLE_CPU_FEATURES``), at 1 and 2 threads: largest relative difference between
any two settings 4.8e-7 (about 4 float32 ulps). The tolerance keeps a 10x margin.
"""

TINY_CURVE_RTOL = 5e-6

# The committed SplitFT arm (SmolLM2-135M, 12 local iterations, adaptive cuts, alpha = 1) rerun under
# ATEN_CPU_CAPABILITY=avx2 and =default (numpy wide SIMD off) against the rows committed from native AVX-512
# kernels, same day and machine: largest relative difference 1.5e-5 (test PPL; curve values 1.1e-5, cut
# scores 4.4e-6, energy 1.2e-16); every cut, cut move, round and count equal. Tolerance with a 13x margin.
SMOLLM_ARM_RTOL = 2e-4


def assert_rows_close(got, want, rtol: float) -> None:
    """Two result tables: the same columns and shape, discrete columns equal exactly, float columns equal
    within ``rtol`` (NaN where NaN)."""
    import numpy as np
    import pandas as pd

    assert list(got.columns) == list(want.columns) and got.shape == want.shape
    for col in got.columns:
        if got[col].dtype.kind == "f" or want[col].dtype.kind == "f":
            np.testing.assert_allclose(got[col], want[col], rtol=rtol, atol=0, err_msg=col)
        else:
            pd.testing.assert_series_equal(got[col], want[col], check_exact=True)


def assert_values_close(got, want, rtol: float, path: str = "") -> None:
    """Two JSON values: floats within ``rtol``, everything else (ints, strings, lists' lengths) exact."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), path
        for key in want:
            assert_values_close(got[key], want[key], rtol, f"{path}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            assert_values_close(a, b, rtol, f"{path}[{i}]")
    elif isinstance(want, float) and not isinstance(got, bool) and isinstance(got, (int, float)):
        assert abs(got - want) <= rtol * abs(want), f"{path}: {got} vs {want} (rtol {rtol})"
    else:
        assert got == want, f"{path}: {got!r} vs {want!r}"

# Numpy-only goldens (the NR drop's positions and gains, the sampled-HARQ engine total): identical bit for bit
# under numpy's native SIMD and with NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4 AVX512_ICL AVX512_SPR" on the
# machine above (measured difference 0); another CPU's libm may round transcendental functions by an ulp,
# so they are compared at 1e-12 relative, a margin of about 4,500 ulps.
NUMPY_GOLDEN_RTOL = 1e-12
