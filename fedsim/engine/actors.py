"""The SimPy processes of split federated training, one generator per actor.

``client`` runs a client's local iterations and LoRA upload for one round, ``main_server`` serves one
round's iterations after all activations are in (paper mode) and ``main_server_job`` serves one
client's batch on arrival (pipelined mode); ``fedsim.engine.rounds.fed_server`` drives the rounds. Each event is a resource request held for the duration the cost model gives at the
instant the event starts; each charged event is one trace row when tracing is on.
"""

from __future__ import annotations

import simpy

from fedsim.engine.energy import transmit_energy_j
from fedsim.engine.state import RoundState, RunContext
from fedsim.engine.trace import TraceRow


def _row(ctx: RunContext, rs: RoundState, it, *, actor, phase, start, bits, flops, resource) -> None:
    ctx.trace.append(TraceRow(rs.index, it, actor, phase, start, ctx.env.now, bits, flops, resource))


def _hold(
    ctx: RunContext,
    rs: RoundState,
    it,
    resource,
    duration_s,
    *,
    actor: str,
    phase: str,
    where: str,
    bits: float = 0.0,
    flops: float = 0.0,
    on_start=None,
):
    """Hold ``resource`` for ``duration_s()`` seconds, read when the hold starts (after ``on_start()``),
    and log one trace row (``actor`` did ``phase`` on ``where``, moving ``bits`` or computing ``flops``).
    Returns the duration charged."""
    with resource.request() as req:
        yield req
        if on_start is not None:
            on_start()
        start, dur = ctx.env.now, duration_s()
        yield ctx.env.timeout(dur)
    if ctx.trace is not None:
        _row(ctx, rs, it, actor=actor, phase=phase, start=start, bits=bits, flops=flops, resource=where)
    return dur


def _upload_lora(ctx: RunContext, rs: RoundState, k: int, it):
    """Client k sends its LoRA to the federated server over its fed-link subchannels."""
    costs = ctx.costs
    dur = yield from _hold(
        ctx,
        rs,
        it,
        ctx.fed_subchannels[k],
        lambda: costs.lora_up_s[k],
        actor=ctx.names["client"][k],
        phase="upload_lora",
        bits=costs.sizes.lora_bits[k],
        where=ctx.names["fed"][k],
    )
    ctx.energy_tx_j[k] += transmit_energy_j(costs.power_fed_w[k], dur)


def client(env: simpy.Environment, ctx: RunContext, rs: RoundState, *, k: int):
    """Client k in one round: I local iterations, then (reading D1) the LoRA upload."""
    cfg = ctx.config
    # A client's back-to-back events on its own GPU and subchannels (which no other process requests) are
    # fused into one timeout, their trace rows written from the same times; unsafe only if a fading redraw
    # could fall between, or (with tracing on) if a deadline could interrupt the client between them, which
    # would leave the first event's row without the second's.
    interruptible = cfg.activation_deadline_s is not None or cfg.round_deadline_s is not None
    fuse = (cfg.iteration_barrier or not cfg.fading_every_iteration) and (
        ctx.trace is None or not interruptible
    )
    it = None
    try:
        for it in range(ctx.local_iterations):
            yield from _local_iteration(env, ctx, rs, k, it, fuse)
        if not cfg.lora_upload_every_iteration:
            if cfg.iteration_barrier:
                yield rs.event("bwd", ctx.local_iterations - 1)
            yield from _upload_lora(ctx, rs, k, None)
        rs.uploaded_lora(k)
    except simpy.Interrupt:
        if ctx.trace is not None:
            name = ctx.names["client"][k]
            _row(ctx, rs, it, actor=name, phase="excluded", start=env.now, bits=0.0, flops=0.0, resource="")


def callback_clients_apply(ctx: RunContext) -> bool:
    """Whether a round's clients and main server can run as ``BarrierRound`` (event callbacks), not processes.

    That is the paper-mode round of an untraced replay: iteration barrier, barrier server, no deadline to
    interrupt anyone, no gradient download, the LoRA uploaded once per round (reading D1), no fading redraw
    or HARQ draw within the round and no live trainer; Monte Carlo sweeps and the scale benchmark run so.
    """
    cfg, chan = ctx.config, ctx.costs.chan
    return (
        ctx.trace is None
        and ctx.trainer is None
        and cfg.iteration_barrier
        and not cfg.pipelined_server
        and not cfg.download
        and not cfg.lora_upload_every_iteration
        and not cfg.fading_every_iteration
        and cfg.activation_deadline_s is None
        and cfg.round_deadline_s is None
        and chan.harq_main is None
        and chan.harq_fed is None
    )


class BarrierRound:
    """The clients and the main server of one paper-mode round as event callbacks, not processes.

    In such a round (``client`` with fused events, ``main_server`` without a deadline) a client only ever
    waits for a timeout on resources of its own or for an event that every client waits for (the main
    server's gradients, the end of the iteration's slowest backward pass), and the main server, the only
    user of its GPU, for all activations. So each of those events gets one callback that starts, for
    every waiting client, its next step, in the order the processes would have resumed (the order they
    began waiting), and the server's FP and BP are two chained timeouts. The clients' timeouts of one step
    are folded into one at the latest end (``_after_each``), whose callback runs each client's step in the
    order the separate timeouts would have fired: every event time, arrival order and energy sum is the
    processes' (tests/test_engine_callbacks.py). It saves SimPy's process machinery and the server GPU's request and
    release events, most of an untraced run's time. Use only where ``callback_clients_apply(ctx)``.
    """

    def __init__(self, env: simpy.Environment, ctx: RunContext, rs: RoundState, clients: list[int]):
        self._env, self._ctx, self._rs, self._clients = env, ctx, rs, clients
        self._it = 0  # the local iteration under way (the barrier keeps every client in the same one)
        self._finished: list[int] = []  # clients whose backward pass of that iteration is done, in order

    def start(self) -> None:
        """Start iteration 0 of every client, in the order of ``clients`` (their processes' start order)."""
        if self._clients:
            self._forward(self._clients, 0)

    def _after_each(self, order: list[int], delays: list[float], then) -> None:
        """One timeout per client (``delays`` in ``order``), each followed by ``then(k)``, as ONE timeout at
        the latest end: ``then`` runs for every client there, in the order SimPy would have fired the
        separate timeouts (end time, then creation order). Nothing in such a round looks at the clock
        before its barrier, so every time, order and sum is the same (fl(now + d) is monotone in d, so the
        latest end is fl(now + max d)); a round makes a third of the events."""
        now = self._env.now
        ends = [now + d for d in delays]
        fired = [order[i] for i in sorted(range(len(order)), key=ends.__getitem__)]  # stable: ties keep order

        def each(_event) -> None:
            for k in fired:
                then(k)

        self._env.timeout(max(delays)).callbacks.append(each)

    def _forward(self, order: list[int], it: int) -> None:
        """FP and activation upload of iteration ``it`` (one fused timeout per client), then its arrival."""
        costs = self._ctx.costs
        self._after_each(order, [costs.fwd_s[k] + costs.act_up_s[k] for k in order], self._arrived)
        self._it, self._finished = it, []
        # RoundState.check_in's work, less the progress it keeps for excluding a client (none is, here)
        self._arrived_list, self._arrive = self._rs.arrived[it], self._rs.countdowns["arrive"][it]
        self._finished_countdown = self._rs.countdowns["bwd"][it]
        self._arrive.event.callbacks.append(self._server)

    def _arrived(self, k: int) -> None:
        ctx = self._ctx
        costs = ctx.costs
        ctx.energy_cpu_j[k] += costs.fwd_j[k]
        ctx.energy_tx_j[k] += transmit_energy_j(costs.power_main_w[k], costs.act_up_s[k])
        self._arrived_list.append(k)
        self._arrive.dec()

    def _server(self, _event) -> None:
        """All activations are in: the main server's FP, then its BP, on the batches of the clients in."""
        env, arrived = self._env, self._rs.arrived[self._it]
        fwd_s, bwd_s = self._ctx.costs.server_s(arrived, self._ctx.num_clients)
        env.timeout(fwd_s).callbacks.append(lambda _: env.timeout(bwd_s).callbacks.append(self._backward))

    def _backward(self, _event) -> None:
        """The gradients are sent: every client that arrived starts its BP, in arrival order."""
        bwd_s, it = self._ctx.costs.bwd_s, self._it
        order = self._rs.arrived[it]
        self._after_each(order, [bwd_s[k] for k in order], self._backward_done)
        last = self._ctx.local_iterations - 1
        self._finished_countdown.event.callbacks.append(
            (lambda _: self._forward(self._finished, it + 1)) if it < last else self._upload
        )

    def _backward_done(self, k: int) -> None:
        ctx = self._ctx
        ctx.energy_cpu_j[k] += ctx.costs.bwd_j[k]
        self._finished.append(k)
        self._finished_countdown.dec()

    def _upload(self, _event) -> None:
        """After the last iteration's barrier: every client's LoRA upload, in the order BP ended."""
        up_s, order = self._ctx.costs.lora_up_s, list(self._finished)
        self._after_each(order, [up_s[k] for k in order], self._uploaded)

    def _uploaded(self, k: int) -> None:
        ctx = self._ctx
        ctx.energy_tx_j[k] += transmit_energy_j(ctx.costs.power_fed_w[k], ctx.costs.lora_up_s[k])
        self._rs.uploaded_lora(k)


def _local_iteration(env: simpy.Environment, ctx: RunContext, rs: RoundState, k: int, it: int, fuse: bool):
    """Client k's local iteration ``it``: FP and activation upload, the main server's turn, [gradient
    download], BP, and (reading D2) the LoRA upload."""
    cfg = ctx.config
    if it and cfg.iteration_barrier:  # start together, after the previous iteration's last step
        yield rs.event("iter_upload" if cfg.lora_upload_every_iteration else "bwd", it - 1)
    yield from (_fused_forward_and_upload if fuse else _forward_and_upload)(ctx, rs, k, it)
    rs.check_in("arrive", k, it)
    if cfg.pipelined_server:
        yield env.process(main_server_job(env, ctx, rs, k=k, it=it))
    else:
        yield rs.grads[it]  # the main server has sent this iteration's gradients
    if cfg.download:
        yield from _download(ctx, rs, k, it)
    yield from (_fused_backward if fuse else _backward)(ctx, rs, k, it)
    ctx.energy_cpu_j[k] += ctx.costs.bwd_j[k]
    rs.check_in("bwd", k, it)
    if cfg.lora_upload_every_iteration:
        if cfg.iteration_barrier:
            yield rs.event("bwd", it)
        yield from _upload_lora(ctx, rs, k, it)
        rs.check_in("iter_upload", k, it)


def _fused_forward_and_upload(ctx: RunContext, rs: RoundState, k: int, it: int):
    """FP then activation upload on resources only client k uses: one timeout, the same times and rows."""
    costs, env = ctx.costs, ctx.env
    if ctx.trainer is not None:
        ctx.trainer.client_forward(k)
    start, fwd, dur = env.now, costs.fwd_s[k], costs.act_up_s[k]
    yield env.timeout(fwd + dur)
    ctx.energy_cpu_j[k] += costs.fwd_j[k]
    ctx.energy_tx_j[k] += transmit_energy_j(costs.power_main_w[k], dur)
    if ctx.trace is not None:
        name, sizes, mid = ctx.names["client"][k], costs.sizes, start + fwd
        ctx.trace.append(
            TraceRow(
                rs.index, it, name, "forward", start, mid, 0.0, sizes.client_fwd_flops[k], ctx.names["gpu"][k]
            )
        )
        ctx.trace.append(
            TraceRow(
                rs.index,
                it,
                name,
                "upload_activation",
                mid,
                env.now,
                sizes.act_bits[k],
                0.0,
                ctx.names["main"][k],
            )
        )


def _forward_and_upload(ctx: RunContext, rs: RoundState, k: int, it: int):
    """Client k's forward pass on its GPU, then its activation upload on its main-link subchannels."""
    costs, trainer, name = ctx.costs, ctx.trainer, ctx.names["client"][k]
    yield from _hold(
        ctx,
        rs,
        it,
        ctx.client_gpu[k],
        lambda: costs.fwd_s[k],
        actor=name,
        phase="forward",
        flops=costs.sizes.client_fwd_flops[k],
        where=ctx.names["gpu"][k],
        on_start=None if trainer is None else lambda: trainer.client_forward(k),
    )
    ctx.energy_cpu_j[k] += costs.fwd_j[k]
    dur = yield from _hold(
        ctx,
        rs,
        it,
        ctx.main_subchannels[k],
        lambda: costs.act_up_s[k],
        actor=name,
        phase="upload_activation",
        bits=costs.sizes.act_bits[k],
        where=ctx.names["main"][k],
    )
    ctx.energy_tx_j[k] += transmit_energy_j(costs.power_main_w[k], dur)


def _fused_backward(ctx: RunContext, rs: RoundState, k: int, it: int):
    """Client k's BP as a plain timeout (its GPU is its own)."""
    if ctx.trainer is not None:
        ctx.trainer.client_backward(k)
    start = ctx.env.now
    yield ctx.env.timeout(ctx.costs.bwd_s[k])
    if ctx.trace is not None:
        flops = ctx.costs.sizes.client_bwd_flops[k]
        name, gpu = ctx.names["client"][k], ctx.names["gpu"][k]
        ctx.trace.append(TraceRow(rs.index, it, name, "backward", start, ctx.env.now, 0.0, flops, gpu))


def _backward(ctx: RunContext, rs: RoundState, k: int, it: int):
    """Client k's backward pass on its GPU."""
    costs, trainer = ctx.costs, ctx.trainer
    yield from _hold(
        ctx,
        rs,
        it,
        ctx.client_gpu[k],
        lambda: costs.bwd_s[k],
        actor=ctx.names["client"][k],
        phase="backward",
        flops=costs.sizes.client_bwd_flops[k],
        where=ctx.names["gpu"][k],
        on_start=None if trainer is None else lambda: trainer.client_backward(k),
    )


def _download(ctx: RunContext, rs: RoundState, k: int, it: int):
    """Client k receives its activation gradient on the downlink."""
    costs = ctx.costs
    yield from _hold(
        ctx,
        rs,
        it,
        ctx.downlink,
        lambda: costs.grad_down_s[k],
        actor="main_server",
        phase="download_gradient",
        bits=costs.sizes.act_bits[k],
        where=f"downlink->{ctx.names['client'][k]}",
    )


def main_server(env: simpy.Environment, ctx: RunContext, rs: RoundState):
    """Paper-mode main server: per iteration, wait for all activations, FP then BP on the whole batch."""
    costs, deadline = ctx.costs, ctx.config.activation_deadline_s
    next_phase = "iter_upload" if ctx.config.lora_upload_every_iteration else "bwd"
    for it in range(ctx.local_iterations):
        arrived = rs.event("arrive", it)
        if deadline is None:
            yield arrived
        else:
            if it:
                yield rs.event(next_phase, it - 1)  # the iteration starts when the previous one has ended
            if not arrived.triggered:
                yield arrived | env.timeout(deadline)
            for k in sorted(rs.active - set(rs.arrived[it])):
                rs.exclude(k)  # late: the server proceeds without it
        clients = [k for k in rs.arrived[it] if k in rs.active]
        if not clients:
            return
        yield from _server_pass(ctx, rs, it, clients, lambda cl: costs.server_s(cl, ctx.num_clients))
        rs.grads[it].succeed()


def main_server_job(env: simpy.Environment, ctx: RunContext, rs: RoundState, *, k: int, it: int):
    """Pipelined main server: FP then BP on client k's batch as soon as it arrives (queues on the GPU)."""
    costs = ctx.costs
    yield from _server_pass(
        ctx, rs, it, [k], lambda _: (costs.server_fwd_each_s[k], costs.server_bwd_each_s[k])
    )


def _server_pass(ctx: RunContext, rs: RoundState, it: int, clients: list[int], durations_s):
    """The main server's FP then BP on ``clients``' batches, holding its GPU; ``durations_s(clients)``
    gives (FP, BP) seconds when the GPU is granted. Two trace rows."""
    env, sizes = ctx.env, ctx.costs.sizes
    with ctx.server_gpu.request() as req:
        yield req
        if ctx.trainer is not None:
            ctx.trainer.server_step(clients)
        fwd_s, bwd_s = durations_s(clients)
        start = env.now
        yield env.timeout(fwd_s)
        mid = env.now
        yield env.timeout(bwd_s)
    if ctx.trace is not None:
        for phase, t0, t1, flops in (
            ("server_forward", start, mid, sizes.server_fwd_flops),
            ("server_backward", mid, env.now, sizes.server_bwd_flops),
        ):
            ctx.trace.append(
                TraceRow(
                    rs.index, it, "main_server", phase, t0, t1, 0.0, float(flops[clients].sum()), "server_gpu"
                )
            )
