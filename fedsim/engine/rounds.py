"""The federated server's process: it drives the global rounds of one run.

Each round it starts the round's clients (and the paper-mode main server), waits for their LoRA
uploads (until the round deadline, if any), aggregates, optionally broadcasts, and asks the live
trainer whether the target is reached.
"""

from __future__ import annotations

import numpy as np
import simpy

from fedsim.engine.actors import BarrierRound, client, main_server
from fedsim.engine.state import RoundState, RunContext
from fedsim.engine.trace import TraceRow


def fed_server(env: simpy.Environment, ctx: RunContext, plan, *, rounds: int, log: list[dict]):
    """Drive the global rounds: start the clients, collect LoRA uploads (until the deadline), aggregate.

    ``plan(e) -> (clients, summary)`` draws round e's channel block, failures and stragglers and
    returns the participating clients; ``log`` gets one summary dict per finished round. Returns
    True when the trainer reports the target reached.
    """
    cfg, trainer = ctx.config, ctx.trainer
    for e in range(rounds):
        start, version = env.now, ctx.allocation_version
        clients, summary = plan(e)
        ctx.energy_tx_j[:] = [0.0] * ctx.num_clients
        ctx.energy_cpu_j[:] = [0.0] * ctx.num_clients
        rs = RoundState(ctx, e, clients)
        if ctx.callback_rounds:
            BarrierRound(env, ctx, rs, clients).start()
        else:
            if not cfg.pipelined_server:
                env.process(main_server(env, ctx, rs))
            for k in clients:
                rs.processes[k] = env.process(client(env, ctx, rs, k=k))
        if cfg.round_deadline_s is None:
            yield rs.upload.event
        else:
            yield rs.upload.event | env.timeout(cfg.round_deadline_s)
            for k in sorted(rs.active - set(rs.uploaded)):
                rs.exclude(k)
        aggregated = list(rs.uploaded)
        agg_start = env.now
        if cfg.aggregation_s > 0:
            yield env.timeout(cfg.aggregation_s)
        if trainer is not None:
            trainer.aggregate(aggregated)
            yield from _move_blocks(env, ctx, e)
        if ctx.trace is not None and (cfg.aggregation_s > 0 or aggregated):
            ctx.trace.append(
                TraceRow(e, None, "fed_server", "aggregate", agg_start, env.now, 0.0, 0.0, "fed_server")
            )
        if cfg.broadcast and aggregated:
            b_start = env.now
            yield env.timeout(ctx.costs.broadcast_s(aggregated))
            if ctx.trace is not None:
                ctx.trace.append(
                    TraceRow(
                        e,
                        None,
                        "fed_server",
                        "broadcast",
                        b_start,
                        env.now,
                        float(ctx.costs.sizes.lora_bits[aggregated].max()),
                        0.0,
                        "downlink",
                    )
                )
        if ctx.reallocates:
            summary = dict(summary, allocation_version=version)
        log.append(
            dict(
                summary,
                start_s=start,
                end_s=env.now,
                aggregated=aggregated,
                excluded=list(rs.excluded),
                energy_tx_j=list(ctx.energy_tx_j),
                energy_cpu_j=list(ctx.energy_cpu_j),
            )
        )
        if trainer is not None and trainer.end_round(e, env.now):
            return True
    return False


def _move_blocks(env: simpy.Environment, ctx: RunContext, e: int):
    """Live SplitFT: charge the blocks the trainer moved at this aggregation, then re-time the new cuts.

    Each move sends the block's LoRA values and both AdamW moments (``ctx.block_bits``): server -> client on
    the downlink, client -> server on the client's main-link subchannels. A client's moves run one after
    another, different clients' in parallel; the round continues when the last one is done. A trainer with
    ``take_allocation(round) -> Allocation | None`` may then hand a re-optimised radio allocation, broadcast
    (``_reallocate``) and used from the next round on.
    """
    take = getattr(ctx.trainer, "take_cut_moves", None)
    moves = take() if take is not None else []
    if not moves:
        return
    busy: dict[int, float] = {}
    rows = []
    for move in moves:
        k, to_client = int(move["client"]), bool(move["to_client"])
        bits = ctx.block_bits(int(move["block"]), int(move["rank"]))
        dur = ctx.costs.block_move_s(k, bits, to_client)
        start = busy.get(k, 0.0)
        busy[k] = start + dur
        phase, where = ("move_block_to_client", "downlink") if to_client else ("move_block_to_server", "main")
        rows.append(
            (e, None, ctx.names["client"][k], phase, env.now + start, env.now + busy[k], bits, 0.0, where)
        )
    yield env.timeout(max(busy.values()))
    if ctx.trace is not None:
        ctx.trace.extend(rows)
    cuts, ranks = ctx.trainer.layout()
    take_alloc = getattr(ctx.trainer, "take_allocation", None)
    alloc = take_alloc(e) if take_alloc is not None and ctx.on_allocation is not None else None
    if alloc is not None:
        yield from _reallocate(env, ctx, e, alloc)
    ctx.on_layout(np.asarray(cuts, dtype=int), np.asarray(ranks, dtype=int))


def _reallocate(env: simpy.Environment, ctx: RunContext, e: int, alloc):
    """Live SplitFT with the radio re-optimised after a cut move: broadcast the new allocation (each
    subchannel's owner and PSD, ``Costs.reallocate_bits``: (M + N) (ceil(log2 K) + 32) bits at the weakest
    downlink rate), charged once per aggregation with moves, then switch the channel to it."""
    start, bits = env.now, ctx.costs.reallocate_bits()
    yield env.timeout(ctx.costs.reallocate_s())
    if ctx.trace is not None:
        ctx.trace.append(TraceRow(e, None, "fed_server", "reallocate", start, env.now, bits, 0.0, "downlink"))
    ctx.on_allocation(alloc)
    ctx.allocation_version += 1
