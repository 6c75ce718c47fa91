"""The three FedsLLM roles (spec §2, Algorithm 1) and the system that wires them.

* ``ClientSide`` (x K): its own copy of the client LoRA (frozen weights shared in memory), its AdamW, its
  data stream. FP -> activation upload (eq. 3); BP with the activation gradient from the server (eq. 6).
* ``MainServer``: ONE server LoRA trained on the concatenation of all clients' activations (eq. 4-5); the
  loss is the mean over every labelled token of the K·b samples, so ∂ℓ/∂a_k is client k's slice.
* ``FederatedServer``: FedAvg of the client LoRA weighted by local dataset size D_k / D (eq. 7), broadcast.

Each client keeps its own AdamW moments across aggregations (only the LoRA weights are averaged).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from fedsim.learn.batches import BatchStream
from fedsim.learn.lora import lora_parameters, lora_state
from fedsim.learn.split import ClientPart, ServerPart, token_nll


@dataclass
class Upload:
    """What a client sends the main server for one local iteration (b samples)."""

    activation: torch.Tensor  # (b, L, d), detached from the client's graph
    attention_mask: torch.Tensor  # (b, L)
    labels: torch.Tensor  # (b, L), -100 where no loss


def fedavg(states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """Weighted average sum_k w_k/sum(w) * state_k of same-keyed tensor dicts (eq. 7)."""
    if len(states) == 0 or len(states) != len(weights):
        raise ValueError("fedavg needs one weight per state and at least one state")
    w = torch.tensor([float(x) for x in weights], dtype=torch.float64)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"fedavg weights must be >= 0 with a positive sum, got {list(weights)}")
    w = w / w.sum()
    return {
        key: sum(wk * s[key].detach().double() for wk, s in zip(w, states, strict=True)).to(
            states[0][key].dtype
        )
        for key in states[0]
    }


def replicate(part: ClientPart) -> ClientPart:
    """A copy of ``part`` with its own LoRA tensors; frozen base weights stay shared (saves K-1 copies)."""
    memo = {id(p): p for p in part.parameters() if not p.requires_grad}
    return copy.deepcopy(part, memo)


def _adamw(params, lr: float, weight_decay: float) -> torch.optim.AdamW:
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


class ClientSide:
    """Client k: client part with its LoRA, optimiser and batch stream."""

    def __init__(self, part: ClientPart, stream: BatchStream, lr: float, weight_decay: float):
        self.part = part.train()
        self.stream = stream
        self.optimizer = _adamw(lora_parameters(part), lr, weight_decay)
        self._activation: torch.Tensor | None = None

    @property
    def num_samples(self) -> int:
        """D_k, the client's local dataset size."""
        return len(self.stream.indices)

    def forward(self) -> Upload:
        """FP of the next mini-batch through embeddings + blocks 1..c; keeps the graph for ``backward``."""
        batch = self.stream.next_batch()
        self.optimizer.zero_grad(set_to_none=True)
        self._activation = self.part(batch["input_ids"], batch["attention_mask"])
        return Upload(self._activation.detach(), batch["attention_mask"], batch["labels"])

    def backward(self, activation_grad: torch.Tensor) -> None:
        """BP with ∂ℓ/∂a_k from the main server, then one AdamW step on the client LoRA (eq. 6)."""
        if self._activation is None:
            raise RuntimeError("client backward before forward")
        self._activation.backward(activation_grad)
        self._activation = None
        self.optimizer.step()

    def state_dict(self) -> dict:
        return {
            "lora": {k: v.detach().clone() for k, v in lora_state(self.part).items()},
            "optimizer": self.optimizer.state_dict(),
            "stream": self.stream.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        load_lora(self.part, state["lora"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.stream.load_state_dict(state["stream"])


class MainServer:
    """Server part with the single server LoRA, trained on all clients' activations at once."""

    def __init__(self, part: ServerPart, lr: float, weight_decay: float):
        self.part = part.train()
        self.optimizer = _adamw(lora_parameters(part), lr, weight_decay)

    def step(self, uploads: Sequence[Upload]) -> tuple[float, list[torch.Tensor]]:
        """FP + BP on A = [a_1; ...; a_K], server LoRA step (eq. 5). Returns (mean loss, ∂ℓ/∂a_k per upload)."""
        acts = [u.activation.detach().requires_grad_(True) for u in uploads]
        mask = torch.cat([u.attention_mask for u in uploads])
        labels = torch.cat([u.labels for u in uploads])
        self.optimizer.zero_grad(set_to_none=True)
        total, count = token_nll(self.part(torch.cat(acts), mask), labels)
        loss = total / max(count, 1)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()), [a.grad for a in acts]

    def state_dict(self) -> dict:
        return {
            "lora": {k: v.detach().clone() for k, v in lora_state(self.part).items()},
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        load_lora(self.part, state["lora"])
        self.optimizer.load_state_dict(state["optimizer"])


class FederatedServer:
    """FedAvg by local dataset size over the participating clients, broadcast to every receiver."""

    def aggregate(
        self, senders: Sequence[ClientSide], receivers: Sequence[ClientSide]
    ) -> dict[str, torch.Tensor]:
        average = fedavg([lora_state(c.part) for c in senders], [c.num_samples for c in senders])
        for client in receivers:
            load_lora(client.part, average)
        return average


def load_lora(module: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy LoRA tensors into ``module`` in place (optimiser references stay valid)."""
    live = lora_state(module)
    if set(live) != set(state):
        raise ValueError("LoRA state keys do not match the module (different model, cut or targets?)")
    with torch.no_grad():
        for key, tensor in state.items():
            live[key].copy_(tensor)
