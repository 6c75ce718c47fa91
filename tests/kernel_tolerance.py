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
