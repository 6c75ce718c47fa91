"""Analytical delay model throughput: ``fedsim.core.delay.delays`` (vectorised over clients) vs a plain
per-client Python loop of eqs. (8)-(17), measured in the same run; the optimiser and brute force
call ``delays`` in their inner loops, so its cost per call bounds their speed.

    python benchmarks/bench_delay.py [--repeat 200]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from fedsim.core.allocation import Allocation, uniform_ranks
from fedsim.core.delay import delays
from fedsim.core.model_configs import load_model_config
from fedsim.core.system import SystemParams, draw_drop
from fedsim.core.workload import workload_from_config


def loop_total_s(drop, w, alloc, b: int, i: int, e: float) -> float:
    """Eqs. (8)-(17), reading D1, one client at a time in pure Python (the baseline)."""
    k, j = drop.num_clients, w.num_layers
    t1 = t2 = t3 = sf = sb = 0.0
    for c in range(k):
        cut, r = int(alloc.cuts[c]), alloc.ranks[c]
        cf = sum(w.fwd_flops[x] + r[x] * w.lora_fwd_flops_per_rank[x] for x in range(cut))
        cb = sum(w.bwd_flops[x] + r[x] * w.lora_bwd_flops_per_rank[x] for x in range(cut))
        sf += (
            sum(w.fwd_flops[x] + r[x] * w.lora_fwd_flops_per_rank[x] for x in range(cut, j))
            + w.head_fwd_flops
        )
        sb += (
            sum(w.bwd_flops[x] + r[x] * w.lora_bwd_flops_per_rank[x] for x in range(cut, j))
            + w.head_bwd_flops
        )
        rates = []
        for link, owner, psd in (
            (drop.main, alloc.owner_main, alloc.psd_main_w_hz),
            (drop.fed, alloc.owner_fed, alloc.psd_fed_w_hz),
        ):
            rates.append(
                sum(
                    link.subchannel_hz * math.log2(1 + psd[s] * link.gain[c] / link.noise_psd_w_hz)
                    for s in range(link.num_subchannels)
                    if owner[s] == c
                )
            )
        lora = sum(r[x] * w.lora_bits_per_rank[x] for x in range(cut))
        t1 = max(t1, b * cf / drop.client_flops_per_s[c] + b * w.act_bits[cut - 1] / rates[0])
        t2 = max(t2, b * cb / drop.client_flops_per_s[c])
        t3 = max(t3, lora / rates[1])
    t = t1 + b * sf / drop.server_flops_per_s + b * sb / drop.server_flops_per_s + t2
    return e * (i * t + t3)


def per_call_s(fn, args: tuple, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn(*args)
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    w = workload_from_config(load_model_config("gpt2"), seq_len=512)
    print(f"{'K':>5} {'M=N':>5} {'delays() us':>12} {'loop us':>10} {'loop/delays':>12}")
    for k in (5, 50, 500):
        m = 4 * k
        drop = draw_drop(
            SystemParams(num_clients=k, num_subchannels_main=m, num_subchannels_fed=m),
            np.random.default_rng(0),
        )
        psd = 0.2 / 4 / drop.main.subchannel_hz
        alloc = Allocation(
            np.arange(m) % k,
            np.arange(m) % k,
            np.full(m, psd),
            np.full(m, psd),
            np.random.default_rng(1).integers(1, 13, k),
            uniform_ranks(k, 12, 4),
        )
        fast = delays(drop, w, alloc, batch_size=16, local_iterations=5, rounds=100.0).total_s
        assert math.isclose(fast, loop_total_s(drop, w, alloc, 16, 5, 100.0), rel_tol=1e-9)
        t_vec = per_call_s(delays, (drop, w, alloc, 16, 5, 100.0), args.repeat)
        t_loop = per_call_s(loop_total_s, (drop, w, alloc, 16, 5, 100.0), max(3, args.repeat // k))
        print(f"{k:>5} {m:>5} {t_vec * 1e6:>12.1f} {t_loop * 1e6:>10.1f} {t_loop / t_vec:>12.1f}")


if __name__ == "__main__":
    main()
