"""Wire one engine run: resources, costs, the round plan and the actors; collect the result."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import simpy

from fedsim.core.allocation import Allocation
from fedsim.core.system import Drop
from fedsim.core.workload import Workload
from fedsim.engine.actors import callback_clients_apply
from fedsim.engine.channel_state import ChannelState
from fedsim.engine.config import EngineConfig
from fedsim.engine.costs import Costs, event_sizes
from fedsim.engine.rounds import fed_server
from fedsim.engine.state import RunContext
from fedsim.engine.trace import TraceRow, trace_frame
from fedsim.engine.trainer import Trainer
from fedsim.errors import InputError

if TYPE_CHECKING:  # pandas is imported where the trace frame is built (fedsim.engine.trace)
    import pandas as pd


@dataclass
class SimResult:
    """Outcome of one engine run.

    Attributes:
        total_s: simulated time when training ends [s] (fractional replay rounds charged pro rata).
        rounds_completed: global rounds simulated.
        converged: live mode: the trainer reported the target; replay: all ``rounds`` were timed.
        round_rows: one dict per round: round, start_s, end_s, duration_s, clients_started,
            clients_failed, stragglers, clients_excluded, clients_aggregated, energy_tx_j,
            energy_compute_j, energy_j; with a trainer that ``reallocates`` also allocation_version (0 = the
            allocation passed in, +1 at each re-optimisation of the radio after a cut move).
        trace_rows: the trace, one ``TraceRow`` per charged event; empty when tracing is off.
        trace: the same as a DataFrame, one row per event (see ``fedsim.engine.trace``).
        energy_tx_j, energy_compute_j: (rounds, K) per-client energy per round [J].
    """

    total_s: float
    rounds_completed: int
    converged: bool
    round_rows: list[dict]
    trace_rows: list[TraceRow]
    energy_tx_j: np.ndarray
    energy_compute_j: np.ndarray
    client_status: list[dict] = field(default_factory=list)

    @cached_property
    def trace(self) -> pd.DataFrame:
        """The trace as a DataFrame (built on first access, so Monte Carlo runs never pay for it)."""
        return trace_frame(self.trace_rows)

    def client_rows(self) -> list[dict]:
        """One dict per (round, client): energies and whether it failed, straggled, was excluded, aggregated."""
        rows = []
        for e, status in enumerate(self.client_status):
            for k in range(self.energy_tx_j.shape[1]):
                rows.append(
                    {
                        "round": e,
                        "client": k,
                        **{name: k in members for name, members in status.items()},
                        "energy_tx_j": float(self.energy_tx_j[e, k]),
                        "energy_compute_j": float(self.energy_compute_j[e, k]),
                    }
                )
        return rows


def _check(drop: Drop, alloc: Allocation, batch_size: int, local_iterations: int, rounds: float) -> None:
    if batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1, got {batch_size}")
    if local_iterations < 1:
        raise InputError(f"local_iterations must be an integer >= 1, got {local_iterations}")
    if not (rounds > 0 and math.isfinite(rounds)):
        raise InputError(f"rounds must be a finite number > 0, got {rounds}")
    if alloc.num_clients != drop.num_clients:
        raise InputError(f"allocation has {alloc.num_clients} clients but the drop has {drop.num_clients}")


def _labels(alloc: Allocation, k: int) -> dict[str, list[str]]:
    def subs(owner: np.ndarray) -> list[str]:
        """Each client's subchannel indices, comma-separated, in one pass over the owners (K x S was slow)."""
        owned: list[list[str]] = [[] for _ in range(k)]
        for i, c in enumerate(np.asarray(owner).tolist()):
            if 0 <= c < k:
                owned[c].append(str(i))
        return [",".join(o) for o in owned]

    return {
        "client": [f"client{c}" for c in range(k)],
        "gpu": [f"gpu:client{c}" for c in range(k)],
        "main": [f"main_subch:{s}" for s in subs(alloc.owner_main)],
        "fed": [f"fed_subch:{s}" for s in subs(alloc.owner_fed)],
    }


def _round_plan(ctx: RunContext, chan: ChannelState, rng: np.random.Generator):
    """Per round, in this order: a fading block (if on), failures (if p > 0), stragglers (if p > 0)."""
    cfg, k = ctx.config, ctx.num_clients

    everyone = {"started": list(range(k)), "failed": [], "stragglers": []}

    def plan(e: int) -> tuple[list[int], dict]:
        if cfg.fading:
            chan.redraw()
            ctx.costs.new_block()
        if cfg.failure_prob == 0 and cfg.straggler_prob == 0:
            return everyone["started"], everyone
        failed = rng.random(k) < cfg.failure_prob if cfg.failure_prob > 0 else np.zeros(k, bool)
        slow = rng.random(k) < cfg.straggler_prob if cfg.straggler_prob > 0 else np.zeros(k, bool)
        ctx.costs.new_round(np.where(slow, cfg.straggler_slowdown, 1.0))
        clients = np.flatnonzero(~failed).tolist()
        return clients, {
            "started": clients,
            "failed": np.flatnonzero(failed).tolist(),
            "stragglers": np.flatnonzero(slow & ~failed).tolist(),
        }

    return plan


def simulate(
    drop: Drop,
    workload: Workload,
    alloc: Allocation,
    *,
    batch_size: int,
    local_iterations: int,
    rounds: float,
    config: EngineConfig,
    rng: np.random.Generator,
    trainer: Trainer | None = None,
) -> SimResult:
    """Time split federated training of one drop under one allocation with the discrete-event engine.

    Args:
        drop, workload, alloc: the system, the model's per-layer costs and the decisions.
        batch_size: b, samples per client per local iteration.
        local_iterations: I, local iterations per global round.
        rounds: replay: E(r) global rounds (a fraction of a round is charged pro rata of the last
            simulated round); live: the maximum number of rounds.
        config: engine switches (defaults: paper mode).
        rng: draws fading blocks, failures and stragglers (untouched in paper mode).
        trainer: live mode; called when compute events start (``fedsim.engine.trainer``).
    """
    _check(drop, alloc, batch_size, local_iterations, rounds)
    env, k = simpy.Environment(), drop.num_clients
    chan = ChannelState(drop, alloc, config, rng)
    costs = Costs(drop, event_sizes(workload, alloc, batch_size), chan, config)

    def new_block() -> None:
        chan.redraw()
        costs.new_block()

    def on_layout(cuts: np.ndarray, ranks: np.ndarray) -> None:  # live SplitFT: cuts/ranks changed
        costs.set_sizes(event_sizes(workload, replace(alloc, cuts=cuts, ranks=ranks), batch_size))

    def on_allocation(new: Allocation) -> None:  # live SplitFT: the radio was re-optimised after a cut move
        chan.set_allocation(new)
        costs.set_sizes(costs.sizes)  # client powers and transfer times of the new subchannels and PSDs
        if ctx.names:
            labels = _labels(new, k)
            ctx.names["main"], ctx.names["fed"] = labels["main"], labels["fed"]

    def block_bits(block: int, rank: int) -> float:  # LoRA values + two AdamW moments of block (1-based)
        return 3.0 * float(workload.lora_bits_per_rank[block - 1]) * rank

    ctx = RunContext(
        env=env,
        config=config,
        costs=costs,
        num_clients=k,
        local_iterations=int(local_iterations),
        client_gpu=[],
        main_subchannels=[],
        fed_subchannels=[],
        server_gpu=simpy.Resource(env, config.server_gpu_capacity),
        downlink=simpy.Resource(env, config.downlink_slots),
        trainer=trainer,
        new_block=new_block if config.fading_every_iteration else None,
        trace=[] if config.trace else None,
        names={},
        energy_tx_j=[0.0] * k,
        energy_cpu_j=[0.0] * k,
        block_bits=block_bits,
        on_layout=on_layout,
        on_allocation=on_allocation,
        reallocates=bool(getattr(trainer, "reallocates", False)),
    )
    ctx.callback_rounds = callback_clients_apply(ctx)
    if not ctx.callback_rounds:  # event-callback rounds never request a client's own resources nor label
        ctx.names = _labels(alloc, k)
        ctx.client_gpu = [simpy.Resource(env, 1) for _ in range(k)]
        ctx.main_subchannels = [simpy.Resource(env, 1) for _ in range(k)]
        ctx.fed_subchannels = [simpy.Resource(env, 1) for _ in range(k)]
    log: list[dict] = []
    n_rounds = int(math.ceil(rounds)) if trainer is None else int(math.floor(rounds))
    proc = env.process(fed_server(env, ctx, _round_plan(ctx, chan, rng), rounds=max(n_rounds, 1), log=log))
    reached = env.run(until=proc)
    return _result(log, rounds, trainer, reached, ctx, k)


def _result(log: list[dict], rounds: float, trainer, reached: bool, ctx: RunContext, k: int) -> SimResult:
    rows, status = [], []
    for e, r in enumerate(log):
        tx, cpu = sum(r["energy_tx_j"]), sum(r["energy_cpu_j"])
        rows.append(
            {
                "round": e,
                "start_s": r["start_s"],
                "end_s": r["end_s"],
                "duration_s": r["end_s"] - r["start_s"],
                "clients_started": len(r["started"]),
                "clients_failed": len(r["failed"]),
                "stragglers": len(r["stragglers"]),
                "clients_excluded": len(r["excluded"]),
                "clients_aggregated": len(r["aggregated"]),
                "energy_tx_j": tx,
                "energy_compute_j": cpu,
                "energy_j": tx + cpu,
                **({"allocation_version": r["allocation_version"]} if "allocation_version" in r else {}),
            }
        )
        status.append({name: set(r[name]) for name in ("failed", "stragglers", "excluded", "aggregated")})
    total = rows[-1]["end_s"] if rows else 0.0
    frac = rounds - math.floor(rounds)
    if trainer is None and frac > 0:
        # E(r) is fractional: the last simulated round counts for its fraction only
        total = rows[-1]["start_s"] + frac * rows[-1]["duration_s"]
    energy = lambda key: np.array([r[key] for r in log], float).reshape(len(log), k)  # noqa: E731
    return SimResult(
        total_s=float(total),
        rounds_completed=len(rows),
        converged=bool(reached) if trainer is not None else True,
        round_rows=rows,
        trace_rows=ctx.trace or [],
        energy_tx_j=energy("energy_tx_j"),
        energy_compute_j=energy("energy_cpu_j"),
        client_status=status,
    )
