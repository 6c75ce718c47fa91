"""The federated server's process: it drives the global rounds of one run.

Each round it starts the round's clients (and the paper-mode main server), waits for their LoRA
uploads (until the round deadline, if any), aggregates, optionally broadcasts, and asks the live
trainer whether the target is reached.
"""

from __future__ import annotations

import numpy as np
import simpy

from fedsim.engine.actors import BarrierRound, client, main_server
from fedsim.engine.energy import transmit_energy_j
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
            yield from _probe(env, ctx, e)
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


def _probe(env: simpy.Environment, ctx: RunContext, e: int):
    """Live SplitFT's score rule with a probe set: time the forward passes that measure each client's loss on
    its fixed probe set after the aggregation (the trainer's ``probe_batches() -> list of n_k / b``, None or
    absent when there is no probe). Client k runs n_k / b batches' forward pass through its blocks on its GPU
    and uploads their activations on its main-link subchannels (at its rate, no HARQ draw: the probe is not
    part of the radio's training traffic model); the main server forwards each client's probe through its
    blocks in arrival order, one client at a time. No backward pass, no update, no LoRA upload. The round
    continues (to the cut decision) when the server has finished the last client's probe."""
    take = getattr(ctx.trainer, "probe_batches", None)
    batches = take() if take is not None else None
    if not batches:
        return
    costs, sizes, t0 = ctx.costs, ctx.costs.sizes, env.now
    arrivals = []
    for k, n in enumerate(batches):
        if n <= 0:
            continue
        fwd_s, bits = n * costs.fwd_s[k], n * float(sizes.act_bits[k])
        up_s = costs.block_move_s(k, bits, to_client=False)  # bits at client k's main-link rate
        ctx.energy_cpu_j[k] += n * costs.fwd_j[k]
        ctx.energy_tx_j[k] += transmit_energy_j(costs.power_main_w[k], up_s)
        arrivals.append((fwd_s + up_s, k, n))
        if ctx.trace is not None:
            name, mid = ctx.names["client"][k], t0 + fwd_s
            flops = n * float(sizes.client_fwd_flops[k])
            ctx.trace.append(TraceRow(e, None, name, "probe_forward", t0, mid, 0.0, flops, ctx.names["gpu"][k]))
            ctx.trace.append(
                TraceRow(e, None, name, "upload_probe_activation", mid, t0 + fwd_s + up_s, bits, 0.0,
                         ctx.names["main"][k])  # fmt: skip
            )
    free = 0.0  # the main server, one client's probe at a time in arrival order (ties: client index)
    for arrive, k, n in sorted(arrivals):
        start, free = max(free, arrive), max(free, arrive) + n * costs.server_fwd_each_s[k]
        if ctx.trace is not None:
            flops = n * float(sizes.server_fwd_flops[k])
            ctx.trace.append(
                TraceRow(e, None, "main_server", "probe_server_forward", t0 + start, t0 + free, 0.0, flops,
                         "server_gpu")  # fmt: skip
            )
    if free > 0:
        yield env.timeout(free)


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
