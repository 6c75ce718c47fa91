"""The fast optimiser paths (issue 24) against straightforward reference implementations, in one process.

The references below are the pre-issue-24 code, kept verbatim in spirit: Algorithm 2's phase 2 as a heap
over the full K x S table of D_k(n), and the count refinement as a bisection on T over the full K x S table
of P_k(T; n). The fast paths (windowed selections, Lambert-W start, Dinkelbach-type descent) must give the
same decisions, link by link and for whole BCD runs on the benchmark drops (``benchmarks/bench_optimize.py``).
"""

from __future__ import annotations

import dataclasses
import heapq

import numpy as np
import pytest
from optimize_helpers import ROUNDS, gpt2_workload, small_instance

import fedsim.optimize.bcd as bcd
from fedsim.core.link import ShannonRate
from fedsim.core.system import SystemParams, draw_drop
from fedsim.optimize import Problem, optimize
from fedsim.optimize.greedy import assignment_power_w, greedy_assign
from fedsim.optimize.joint import exact_counts
from fedsim.optimize.power import LN2, client_counts, finish_time_s, solve_power_exact

# ---------------------------------------------------------------------------------------------------------
# references


def reference_greedy_flat(link, p_max_w, offset_s, load_bits) -> np.ndarray:
    """Algorithm 2 on a flat Shannon link: the full table, phase 2 one subchannel at a time on a heap."""
    gain, power = np.asarray(link.gain, float), assignment_power_w(link, p_max_w)
    k, s = gain.shape[0], link.num_subchannels
    n = np.arange(1, s - k + 2)
    table = finish_time_s(
        power[:, None],
        n[None, :],
        gain[:, None],
        offset_s=offset_s[:, None],
        load_bits=load_bits[:, None],
        sub_hz=link.subchannel_hz,
        noise_psd_w_hz=link.noise_psd_w_hz,
    )
    counts = np.ones(k, dtype=int)
    heap = [(-table[c, 0], c) for c in range(k)]
    heapq.heapify(heap)
    for _ in range(s - k):
        _, c = heapq.heappop(heap)
        counts[c] += 1
        heapq.heappush(heap, (-table[c, counts[c] - 1], c))
    order = np.argsort(-table[:, 0], kind="stable")
    return np.repeat(order, counts[order])


def _reference_counts_at(time_s, gain, offset_s, load_bits, p_max_w, sub_hz, n0, num_sub):
    k = gain.shape[0]
    top_n = num_sub - k + 2
    n = np.arange(1, top_n + 1, dtype=float)
    slack = time_s - offset_s
    if np.any((load_bits > 0) & ~(slack > 0)):
        return np.ones(k, int), np.inf
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        x = np.where(load_bits > 0, LN2 * load_bits / (slack * sub_hz), 0.0)
        p = (n0 * sub_hz / gain)[:, None] * n[None, :] * np.expm1(x[:, None] / n[None, :])
    p[load_bits <= 0] = 0.0
    ok = p <= p_max_w[:, None] * (1 + 1e-9)
    if not np.all(ok[:, top_n - 2]):
        return np.ones(k, int), np.inf
    n_min = np.argmax(ok, axis=1) + 1
    spare = num_sub - int(n_min.sum())
    if spare < 0:
        return n_min, np.inf
    total = float(p[np.arange(k), n_min - 1].sum())
    counts = n_min.copy()
    if spare > 0:
        with np.errstate(invalid="ignore"):
            marg = p[:, :-1] - p[:, 1:]
        marg = np.where(np.arange(1, top_n)[None, :] >= n_min[:, None], marg, -np.inf)
        flat = marg.ravel()
        top = np.argpartition(-flat, spare - 1)[:spare]
        total -= float(flat[top].sum())
        counts += np.bincount(top // (top_n - 1), minlength=k)
    return counts, total


def reference_exact_counts(link, p_max_w, offset_s, load_bits, upper_s):
    """The count refinement on a Shannon link: bisection on T, the full K x S table at every step."""
    gain = np.asarray(link.gain, float)
    k, s = gain.shape[0], link.num_subchannels
    args = (gain, offset_s, load_bits, p_max_w, float(link.subchannel_hz), float(link.noise_psd_w_hz), s)
    lo = float(
        np.max(
            finish_time_s(
                p_max_w,
                s - k + 1,
                gain,
                offset_s=offset_s,
                load_bits=load_bits,
                sub_hz=args[4],
                noise_psd_w_hz=args[5],
            )
        )
    )
    hi = float(upper_s)
    if not np.isfinite(hi):
        return None
    best, total = _reference_counts_at(hi, *args)
    if not total <= link.p_th_w * (1 + 1e-9):
        return None
    if not _reference_counts_at(hi * (1 - 1e-8), *args)[1] <= link.p_th_w:
        return best
    for _ in range(100):
        if hi - lo <= 1e-8 * hi:
            break
        mid = 0.5 * (lo + hi)
        counts, total = _reference_counts_at(mid, *args)
        if total <= link.p_th_w:
            hi, best = mid, counts
        else:
            lo = mid
    return best


# ---------------------------------------------------------------------------------------------------------
# instances: the benchmark drops (bench_optimize.py) and the brute-force instances


def bench_problem(seed: int, k: int, m: int) -> Problem:
    params = SystemParams(num_clients=k, num_subchannels_main=m, num_subchannels_fed=m)
    return Problem(draw_drop(params, np.random.default_rng(seed)), gpt2_workload(), 16, 10, dict(ROUNDS))


def link_cases():
    """(link, p_max, offset, load) on the main and fed links of benchmark drops, with BCD-like offsets and
    loads at cuts 1 and 3, plus tight-p_th and tied-client variants."""
    cases = []
    drops = [bench_problem(s, 5, 20) for s in range(12)] + [bench_problem(s, 50, 200) for s in range(3)]
    drops += [bench_problem(0, 100, 400)] + [small_instance(s) for s in range(12)]
    for p in drops:
        d, k = p.drop, p.drop.num_clients
        for cut in (1, 3):
            offset = 16 * cut * float(p.workload.fwd_flops[0]) / d.client_flops_per_s
            load_main = np.full(k, 16 * float(p.workload.act_bits[0]))
            load_fed = np.full(k, 4 * cut * float(p.workload.lora_bits_per_rank[0]))
            cases.append((d.main, d.p_max_w, offset, load_main))
            cases.append((d.fed, d.p_max_w, np.zeros(k), load_fed))
        tight = dataclasses.replace(d.main, p_th_w=0.05 * d.main.p_th_w)
        cases.append((tight, d.p_max_w, np.zeros(k), np.full(k, 2e8)))
    # identical clients: exact ties in every table
    d = bench_problem(3, 6, 30).drop
    twin = dataclasses.replace(d.main, gain=np.full(6, d.main.gain[0]))
    cases.append((twin, np.full(6, d.p_max_w[0]), np.zeros(6), np.full(6, 2e8)))
    return cases


CASES = link_cases()


@pytest.mark.parametrize("i", range(len(CASES)))
def test_greedy_equals_the_heap_reference(i):
    link, p_max, offset, load = CASES[i]
    fast = greedy_assign(link, p_max, offset, load_bits=load)
    np.testing.assert_array_equal(fast, reference_greedy_flat(link, p_max, offset, load))
    # the same link behind the rate-model interface (ShannonRate) takes the generic path: same counts
    rated = dataclasses.replace(link, rate=ShannonRate(link.subchannel_hz, link.noise_psd_w_hz))
    k = link.gain.shape[0]
    via_rate = client_counts(greedy_assign(rated, p_max, offset, load_bits=load), k)
    np.testing.assert_array_equal(via_rate, client_counts(fast, k))


@pytest.mark.parametrize("i", range(len(CASES)))
def test_exact_counts_equal_the_bisection_reference(i):
    link, p_max, offset, load = CASES[i]
    owner = greedy_assign(link, p_max, offset, load_bits=load)
    start = solve_power_exact(link, owner, p_max, offset_s=offset, load_bits=load).time_s
    fast = exact_counts(link, p_max, offset, load_bits=load, upper_s=start)
    ref = reference_exact_counts(link, p_max, offset, load, start)
    if ref is None:
        assert fast is None
        return
    t_fast = solve_power_exact(
        link, np.repeat(np.arange(fast.size), fast), p_max, offset_s=offset, load_bits=load
    ).time_s
    t_ref = solve_power_exact(
        link, np.repeat(np.arange(ref.size), ref), p_max, offset_s=offset, load_bits=load
    ).time_s
    # the same counts, or (never seen) counts at least as fast
    assert np.array_equal(fast, ref) or t_fast <= t_ref


def _allocation_equal(a, b):
    return all(
        np.array_equal(getattr(a, f), getattr(b, f))
        for f in ("owner_main", "owner_fed", "psd_main_w_hz", "psd_fed_w_hz", "cuts", "ranks")
    )


@pytest.mark.parametrize(("k", "m", "seeds"), [(5, 20, range(10)), (50, 200, range(2)), (100, 400, range(1))])
def test_bcd_equals_the_reference_path(monkeypatch, k, m, seeds):
    """Whole BCD runs (refined and paper Alg. 3) with the reference greedy and refinement patched in
    give the same decisions and the same T, bit for bit."""
    problems = [bench_problem(s, k, m) for s in seeds]
    fast = [[optimize(p, refine=r) for r in (True, False)] for p in problems]
    monkeypatch.setattr(bcd, "exact_counts", reference_exact_counts)
    monkeypatch.setattr(bcd, "greedy_assign", reference_greedy_flat)
    for p, results in zip(problems, fast, strict=True):
        for r, res in zip((True, False), results, strict=True):
            ref = optimize(p, refine=r)
            assert _allocation_equal(res.allocation, ref.allocation)
            assert res.delays.total_s == ref.delays.total_s
            assert res.history == ref.history
