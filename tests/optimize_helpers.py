"""Shared builders for the optimiser tests: drops, GPT-2 workloads and problems."""

from __future__ import annotations

import numpy as np

from fedsim.core.system import SystemParams, draw_drop
from fedsim.core.workload import Workload
from fedsim.optimize import Problem
from fedsim.optimize.greedy import greedy_assign, random_average_assign

# spec §7 E(r)
ROUNDS = {1: 240.0, 2: 204.0, 4: 180.0, 6: 174.0, 8: 170.0}


def gpt2_workload(seq_len: int = 512, bits: int = 32) -> Workload:
    """GPT-2 small per spec §8.3, built by hand (independent of fedsim.workload_from_config)."""
    d, d_ff, v, j = 768, 3072, 50257, 12
    block = 2 * seq_len * (4 * d * d + 2 * seq_len * d) + 2 * seq_len * 2 * d * d_ff + 2 * 5 * seq_len * d
    lora = 2 * seq_len * (2 * 2 * d)
    head = 5 * seq_len * d + 2 * seq_len * d * v
    return Workload(
        name="gpt2",
        seq_len=seq_len,
        fwd_flops=np.full(j, float(block)),
        bwd_flops=np.full(j, 2.0 * block),
        lora_fwd_flops_per_rank=np.full(j, float(lora)),
        lora_bwd_flops_per_rank=np.full(j, 2.0 * lora),
        act_bits=np.full(j, float(seq_len * d * bits)),
        lora_bits_per_rank=np.full(j, float(2 * 2 * d * bits)),
        head_fwd_flops=float(head),
        head_bwd_flops=2.0 * head,
    )


def make_problem(
    seed: int, rounds=None, workload=None, batch_size=16, local_iterations=10, **system
) -> Problem:
    """A Problem on one drop of SystemParams(**system) drawn with ``seed``."""
    drop = draw_drop(SystemParams(**system), np.random.default_rng(seed))
    return Problem(drop, workload or gpt2_workload(), batch_size, local_iterations, dict(rounds or ROUNDS))


def small_instance(seed: int) -> Problem:
    """Random small instance: K = 3-5, M = N = 8-12, p_th and server speed varied so that p_th binds and
    the cut is not always 1."""
    rng = np.random.default_rng(10_000 + seed)
    k, m = int(rng.integers(3, 6)), int(rng.integers(8, 13))
    params = SystemParams(
        num_clients=k,
        num_subchannels_main=m,
        num_subchannels_fed=m,
        p_th_main_w=float(rng.uniform(0.1, 1.0)),
        p_th_fed_w=float(rng.uniform(0.1, 1.0)),
        server_cycles=float(10 ** rng.uniform(9.5, 11.0)),
    )
    return Problem(draw_drop(params, rng), gpt2_workload(), 16, 10, dict(ROUNDS))


def power_cases(seed: int) -> list[tuple]:
    """Two power-control cases (link, owner, p_max_w, offset_s, load_bits) of drop ``seed``: its main link
    (greedy or random-average subchannels) and its fed link. Every 4th drop has both servers inside a 15 m
    disc, so a client's full-power SNR reaches ~80-90 dB (the case the scaled cvxpy form exists for)."""
    rng = np.random.default_rng(seed)
    near = seed % 4 == 0
    params = (
        SystemParams(radius_m=15.0, main_server_offset_m=5.0)
        if near
        else SystemParams(p_th_main_w=float(rng.uniform(0.1, 1.2)), num_clients=int(rng.integers(2, 8)))
    )
    drop = draw_drop(params, rng)
    k = drop.num_clients
    off = rng.uniform(0.5, 2.0, k)
    load = np.full(k, 2.01e8)
    owner = (
        greedy_assign(drop.main, drop.p_max_w, off, load_bits=load)
        if seed % 2
        else random_average_assign(20, k, rng)
    )
    return [
        (drop.main, owner, drop.p_max_w, off, load),
        (drop.fed, random_average_assign(20, k, rng), drop.p_max_w, np.zeros(k), np.full(k, 8 * 98304.0)),
    ]
