"""Engine throughput: simulated client-iterations per second, and the ratio to a bare SimPy loop.

The bare loop issues the same resource requests, timeouts and barrier events as the engine in paper
mode (per client-iteration: GPU request + FP timeout, subchannel request + upload timeout, server
barrier, GPU request + BP timeout, iteration barrier; per round a LoRA upload) with none of the
engine's bookkeeping. Targets: >= 20k client-iterations/s at K = 5, and engine/bare time <= 1.5.
With tracing off (Monte Carlo) the engine fuses a client's back-to-back events on its own resources, so
it issues fewer events than the bare loop; "traced" is the full-fidelity run (every event, every row).

    python benchmarks/bench_engine.py [--rounds 40] [--iterations 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial

import numpy as np
import simpy

from fedsim.core.allocation import Allocation, uniform_ranks
from fedsim.core.system import SystemParams, draw_drop
from fedsim.core.workload import Workload
from fedsim.engine import EngineConfig, simulate
from fedsim.engine.channel_state import ChannelState
from fedsim.engine.costs import Costs, event_sizes


def _engine_kw(args, rounds, config) -> dict:
    """simulate's keyword arguments for one timing: b = 16, the benchmark's iterations and rounds, seed 0."""
    return dict(
        batch_size=16,
        local_iterations=args.iterations,
        rounds=rounds,
        config=config,
        rng=np.random.default_rng(0),
    )

def toy_workload(num_layers: int = 12) -> Workload:
    """GPT-2-small-like per-sample costs (spec §8.3) without needing the model config."""
    j = num_layers
    return Workload(
        "gpt2-like",
        512,
        np.full(j, 8.057e9),
        np.full(j, 16.114e9),
        np.full(j, 3.146e6),
        np.full(j, 6.292e6),
        np.full(j, 12_582_912.0),
        np.full(j, 98_304.0),
        39.53e9,
        79.06e9,
    )


def round_robin(k: int, m: int, n: int, p_w: float, band_hz: float, j: int) -> Allocation:
    psd = p_w / band_hz
    return Allocation(
        np.arange(m) % k,
        np.arange(n) % k,
        np.full(m, psd),
        np.full(n, psd),
        np.ones(k, int),
        uniform_ranks(k, j, 4),
    )


def bare_loop(k: int, iters: int, rounds: int, t_f, t_a, t_b, t_u, s_f: float, s_b: float) -> None:
    """The same SimPy events as the engine in paper mode, nothing else."""
    env = simpy.Environment()
    gpu = [simpy.Resource(env, 1) for _ in range(k)]
    sub = [simpy.Resource(env, 1) for _ in range(k)]
    fed = [simpy.Resource(env, 1) for _ in range(k)]
    server = simpy.Resource(env, 1)

    def client(i, arrive, grads, done, up):
        for it in range(iters):
            if it:
                yield done[it - 1][1]
            with gpu[i].request() as req:
                yield req
                yield env.timeout(t_f[i])
            with sub[i].request() as req:
                yield req
                yield env.timeout(t_a[i])
            tick(arrive[it])
            yield grads[it]
            with gpu[i].request() as req:
                yield req
                yield env.timeout(t_b[i])
            tick(done[it])
        yield done[iters - 1][1]
        with fed[i].request() as req:
            yield req
            yield env.timeout(t_u[i])
        tick(up)

    def tick(countdown):
        countdown[0] -= 1
        if countdown[0] == 0:
            countdown[1].succeed()

    def server_proc(arrive, grads):
        for it in range(iters):
            yield arrive[it][1]
            with server.request() as req:
                yield req
                yield env.timeout(s_f)
                yield env.timeout(s_b)
            grads[it].succeed()

    def fed_proc():
        for _ in range(rounds):
            arrive = [[k, env.event()] for _ in range(iters)]
            done = [[k, env.event()] for _ in range(iters)]
            grads = [env.event() for _ in range(iters)]
            up = [k, env.event()]
            env.process(server_proc(arrive, grads))
            for i in range(k):
                env.process(client(i, arrive, grads, done, up))
            yield up[1]

    env.run(until=env.process(fed_proc()))


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clients", type=int, nargs="+", default=[5, 50, 200])
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    rows = []
    work = toy_workload()
    print(
        f"{'K':>5} {'client-it/s':>12} {'bare client-it/s':>17} {'engine/bare':>12} {'traced it/s':>12} "
        f"{'traced/bare':>12}"
    )
    for k in args.clients:
        params = SystemParams(num_clients=k, num_subchannels_main=max(20, k), num_subchannels_fed=max(20, k))
        drop = draw_drop(params, np.random.default_rng(1))
        alloc = round_robin(
            k,
            params.num_subchannels_main,
            params.num_subchannels_fed,
            min(params.p_max_w, params.p_th_main_w / k),
            params.bandwidth_main_hz,
            12,
        )
        rounds = max(1, args.rounds * 5 // k)
        cfg = EngineConfig(trace=False)
        t_eng = best_of(
            args.repeat,
            partial(simulate, drop, work, alloc, **_engine_kw(args, rounds, cfg)),
        )
        traced = EngineConfig(trace=True)
        t_trace = best_of(
            args.repeat,
            partial(simulate, drop, work, alloc, **_engine_kw(args, rounds, traced)),
        )
        # the bare loop gets the engine's own per-event durations
        costs = Costs(drop, event_sizes(work, alloc, 16), ChannelState(drop, alloc, cfg, None), cfg)
        s_f, s_b = costs.server_s(list(range(k)), k)
        t_bare = best_of(
            args.repeat,
            partial(
                bare_loop,
                k,
                args.iterations,
                rounds,
                costs.fwd_s,
                costs.act_up_s,
                costs.bwd_s,
                costs.lora_up_s,
                s_f,
                s_b,
            ),
        )
        n = k * args.iterations * rounds
        rows.append(
            {
                "K": k,
                "client_it_per_s": n / t_eng,
                "bare_client_it_per_s": n / t_bare,
                "engine_over_bare": t_eng / t_bare,
                "traced_client_it_per_s": n / t_trace,
                "traced_over_bare": t_trace / t_bare,
            }
        )
        print(
            f"{k:>5} {n / t_eng:>12,.0f} {n / t_bare:>17,.0f} {t_eng / t_bare:>12.2f} {n / t_trace:>12,.0f} "
            f"{t_trace / t_bare:>12.2f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"engine": rows}, f, indent=1)


if __name__ == "__main__":
    main()
