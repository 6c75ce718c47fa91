"""The federated server's process: it drives the global rounds of one run.

Each round it starts the round's clients (and the paper-mode main server), waits for their LoRA
uploads (until the round deadline, if any), aggregates, optionally broadcasts, and asks the live
trainer whether the target is reached.
"""

from __future__ import annotations

import simpy

from fedsim.engine.actors import client, main_server
from fedsim.engine.state import RoundState, RunContext


def fed_server(env: simpy.Environment, ctx: RunContext, plan, rounds: int, log: list[dict]):
    """Drive the global rounds: start the clients, collect LoRA uploads (until the deadline), aggregate.

    ``plan(e) -> (clients, summary)`` draws round e's channel block, failures and stragglers and
    returns the participating clients; ``log`` gets one summary dict per finished round. Returns
    True when the trainer reports the target reached.
    """
    cfg, trainer = ctx.config, ctx.trainer
    for e in range(rounds):
        start = env.now
        clients, summary = plan(e)
        ctx.energy_tx_j[:] = [0.0] * ctx.num_clients
        ctx.energy_cpu_j[:] = [0.0] * ctx.num_clients
        rs = RoundState(ctx, e, clients)
        if not cfg.pipelined_server:
            env.process(main_server(env, ctx, rs))
        for k in clients:
            rs.processes[k] = env.process(client(env, ctx, rs, k))
        if cfg.round_deadline_s is None:
            yield rs.upload.event
        else:
            yield rs.upload.event | env.timeout(cfg.round_deadline_s)
            for k in sorted(rs.active - set(rs.uploaded)):
                rs.drop(k)
        aggregated = list(rs.uploaded)
        agg_start = env.now
        if cfg.aggregation_s > 0:
            yield env.timeout(cfg.aggregation_s)
        if trainer is not None:
            trainer.aggregate(aggregated)
        if ctx.trace is not None and (cfg.aggregation_s > 0 or aggregated):
            ctx.trace.append((e, None, "fed_server", "aggregate", agg_start, env.now, 0.0, 0.0, "fed_server"))
        if cfg.broadcast and aggregated:
            b_start = env.now
            yield env.timeout(ctx.costs.broadcast_s(aggregated))
            if ctx.trace is not None:
                ctx.trace.append(
                    (
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
        log.append(
            dict(
                summary,
                start_s=start,
                end_s=env.now,
                aggregated=aggregated,
                dropped=list(rs.dropped),
                energy_tx_j=list(ctx.energy_tx_j),
                energy_cpu_j=list(ctx.energy_cpu_j),
            )
        )
        if trainer is not None and trainer.end_round(e, env.now):
            return True
    return False
