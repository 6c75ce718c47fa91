"""The live-mode contract between the event engine and real split-LoRA training.

In live mode the engine *drives* training: when a compute event starts in simulated time, the engine
calls the matching ``Trainer`` method, which computes the real tensors of that event (on this machine,
at whatever wall-clock cost). The simulated clock then advances by the event's *modelled* latency
only, never by wall time. The calls, in the order the engine makes them within one global round:

1. ``client_forward(k)`` when client k's forward-pass event starts on its GPU (once per local
   iteration per participating client): FP through the client's blocks on its next batch.
2. ``server_step(clients)`` when the main server's compute event starts: FP + BP of the server blocks
   on the concatenated activations of ``clients`` (all clients whose activations arrived; in
   pipelined mode one call per client, ``clients == [k]``), server-LoRA update, and keep each client's
   activation gradient. ``client_forward(k)`` has always been called before k appears here.
3. ``client_backward(k)`` when client k's backward-pass event starts: BP with the activation gradient
   from step 2 and the client-LoRA step. Only clients that were in a ``server_step`` get this call.
4. ``aggregate(clients)`` when the federated server aggregates: FedAvg over ``clients`` (those whose
   LoRA upload arrived in time; weights D_k) and broadcast of the result to *all* clients.
5. ``end_round(round_index, sim_time_s) -> bool`` after the round (0-based index, simulated time at
   its end): evaluate when due; ``True`` means the target is reached and the run stops.

SplitFT (optional, duck-typed): a trainer whose cuts can change has ``take_cut_moves() -> list of
{client, block, to_client, rank}`` (blocks moved at the aggregation just made) and ``layout() -> (cuts,
ranks)``; the engine then charges each moved block's LoRA state on the downlink (to the client) or the
client's main link (to the server) and re-times the following rounds for the new cuts and ranks.
A trainer that measures a probe set after each aggregation has ``probe_batches() -> list of n_k / b`` (or
None); the engine times those forward passes and activation uploads before the cut moves.

Clients that fail, or are excluded by a deadline, get no further calls in that round; a client excluded
between its forward and backward pass simply never gets the backward call. ``rounds`` passed to
``simulate`` is the maximum number of rounds in live mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class Trainer(Protocol):
    """What the engine calls when compute events fire (see the module docstring for the contract)."""

    def client_forward(self, client: int) -> None: ...

    def server_step(self, clients: Sequence[int]) -> None: ...

    def client_backward(self, client: int) -> None: ...

    def aggregate(self, clients: Sequence[int]) -> None: ...

    def end_round(self, round_index: int, sim_time_s: float) -> bool: ...


class StubTrainer:
    """A Trainer that only logs its calls, for tests: ``calls`` holds ``(method, argument)`` tuples.

    ``stop_after`` makes ``end_round`` report the target reached after that many rounds.
    """

    def __init__(self, stop_after: int | None = None):
        self.calls: list[tuple[str, object]] = []
        self.stop_after = stop_after

    def client_forward(self, client: int) -> None:
        self.calls.append(("client_forward", client))

    def server_step(self, clients: Sequence[int]) -> None:
        self.calls.append(("server_step", tuple(clients)))

    def client_backward(self, client: int) -> None:
        self.calls.append(("client_backward", client))

    def aggregate(self, clients: Sequence[int]) -> None:
        self.calls.append(("aggregate", tuple(clients)))

    def end_round(self, round_index: int, sim_time_s: float) -> bool:
        self.calls.append(("end_round", round_index))
        return self.stop_after is not None and round_index + 1 >= self.stop_after
