"""Shared state of one engine run: the SimPy resources, and the synchronisation points of one round.

``RoundState`` holds one ``Countdown`` per (phase, local iteration): the main server waits for the
"arrive" countdown (all activations in), clients wait for "bwd" (all backward passes done: the next
iteration starts together, eq. 16) and so on. Dropping a client counts it down everywhere it has not
reached yet, so nobody waits for a client that is gone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import simpy

from fedsim.engine.config import EngineConfig
from fedsim.engine.costs import Costs
from fedsim.engine.trace import TraceRow
from fedsim.engine.trainer import Trainer

PHASES = ("arrive", "bwd", "iter_upload")  # per-iteration countdowns; "upload" is once per round


class Countdown:
    """An event that fires when ``count`` participants have checked in (or been excluded)."""

    __slots__ = ("count", "event", "_on_zero")

    def __init__(self, env: simpy.Environment, count: int, on_zero: Callable[[], None] | None = None):
        self.count, self.event, self._on_zero = count, env.event(), on_zero
        if count == 0:
            self._fire()

    def _fire(self) -> None:
        if self._on_zero is not None:
            self._on_zero()
        self.event.succeed()

    def dec(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._fire()


@dataclass
class RunContext:
    """Everything the actors of one run share (resources, costs, switches, outputs)."""

    env: simpy.Environment
    config: EngineConfig
    costs: Costs
    num_clients: int
    local_iterations: int
    client_gpu: list[simpy.Resource]
    main_subchannels: list[simpy.Resource]  # client k's subchannels on the main link, held as one
    fed_subchannels: list[simpy.Resource]
    server_gpu: simpy.Resource
    downlink: simpy.Resource
    trainer: Trainer | None
    new_block: Callable[[], None] | None  # redraw fading at each iteration start, or None
    trace: list[TraceRow] | None
    names: dict[str, list[str]]  # actor and resource labels per client (trace rows)
    energy_tx_j: list[float] = field(default_factory=list)
    energy_cpu_j: list[float] = field(default_factory=list)
    # live mode with cut changes (SplitFT): bits of a moved block's state, and re-timing for new cuts/ranks
    block_bits: Callable[[int, int], float] | None = None
    on_layout: Callable[[np.ndarray, np.ndarray], None] | None = None
    # live mode with the radio re-optimised after cut moves: switch to a new Allocation (subchannels, PSDs);
    # ``reallocates`` (the trainer's attribute) adds each round's allocation version to the round rows
    on_allocation: Callable[[object], None] | None = None
    reallocates: bool = False
    allocation_version: int = 0
    # rounds run as fedsim.engine.actors.BarrierRound (event callbacks), not processes: set by simulate
    callback_rounds: bool = False


class RoundState:
    """Synchronisation of one global round among its participating clients.

    Attributes:
        index: 0-based round number.
        active: clients still in the round.
        grads: per iteration, fires when the main server has sent the activation gradients.
        arrived: per iteration, clients whose activations reached the main server, in arrival order.
        uploaded: clients whose LoRA reached the federated server, in arrival order.
        excluded: clients a deadline excluded from the rest of the round (rows: ``clients_excluded``;
            trace phase ``excluded``). A *drop* is always a Monte Carlo placement.
        processes: client processes, so an excluded client can be interrupted.
    """

    def __init__(self, ctx: RunContext, index: int, clients: list[int]):
        env, n, iters = ctx.env, len(clients), ctx.local_iterations
        self.index, self.active = index, set(clients)
        self.arrived: list[list[int]] = [[] for _ in range(iters)]
        self.grads = [env.event() for _ in range(iters)]  # main server sent the gradients (paper mode)
        self.uploaded: list[int] = []
        self.excluded: list[int] = []
        self.processes: dict[int, simpy.Process] = {}
        d2 = ctx.config.lora_upload_every_iteration
        redraw = ctx.new_block
        self.countdowns = {
            "arrive": [Countdown(env, n) for _ in range(iters)],
            # the phase that ends an iteration draws the next fading block when it completes
            "bwd": [Countdown(env, n, None if d2 else redraw) for _ in range(iters)],
            # reading D2 only (in D1 nobody waits for it; a countdown from 0 would fire an idle event)
            "iter_upload": [Countdown(env, n, redraw) for _ in range(iters)] if d2 else [],
        }
        self.upload = Countdown(env, n)
        self._progress = {phase: dict.fromkeys(clients, 0) for phase in PHASES}

    def event(self, phase: str, iteration: int) -> simpy.Event:
        """The event that fires when every active client has passed ``phase`` of ``iteration``."""
        return self.countdowns[phase][iteration].event

    def check_in(self, phase: str, client: int, iteration: int) -> None:
        """Client passed ``phase`` of ``iteration``."""
        self._progress[phase][client] = iteration + 1
        if phase == "arrive":
            self.arrived[iteration].append(client)
        self.countdowns[phase][iteration].dec()

    def uploaded_lora(self, client: int) -> None:
        self.uploaded.append(client)
        self.upload.dec()

    def exclude(self, client: int) -> None:
        """Exclude ``client`` from the rest of the round: interrupt it and stop waiting for it anywhere."""
        if client not in self.active:
            return
        self.active.discard(client)
        self.excluded.append(client)
        proc = self.processes.get(client)
        if proc is not None and proc.is_alive:
            proc.interrupt("excluded")
        for phase, per_iter in self.countdowns.items():
            for it in range(self._progress[phase][client], len(per_iter)):
                if phase != "iter_upload" or per_iter[it].count > 0:
                    per_iter[it].dec()
        if client not in self.uploaded:
            self.upload.dec()
