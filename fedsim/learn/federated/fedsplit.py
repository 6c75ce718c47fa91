"""The three FedsLLM roles (spec §2, Algorithm 1) and the system that wires them.

* ``ClientSide`` (x K): its own copy of the client LoRA (frozen weights shared in memory), its AdamW, its
  data stream. FP -> activation upload (eq. 3); BP with the activation gradient from the server (eq. 6).
* ``MainServer``: ONE server LoRA trained on the concatenation of all clients' activations (eq. 4-5); the
  loss is the mean over every labelled token of the K·b samples, so ∂ℓ/∂a_k is client k's slice.
* ``FederatedServer``: layer-wise FedAvg (eq. 7 per block, over the block's holders: clients with c_k >= j
  and the server for the rest, ``fedsim.learn.federated.hetrank``) into ONE global model, broadcast to every holder.

Each client keeps its own AdamW moments across aggregations (only the LoRA weights are averaged).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from fedsim.learn.data.batches import BatchStream
from fedsim.learn.federated.hetrank import BlockState, aggregate_block, fedavg, project
from fedsim.learn.precision import autocast
from fedsim.learn.schedule import scheduled_step
from fedsim.learn.split.lora import LoraScale, as_scale, lora_parameters, lora_state, module_rank
from fedsim.learn.split.parts import ClientPart, ServerPart, token_nll

__all__ = ["ClientSide", "FederatedServer", "MainServer", "Upload", "fedavg", "load_lora", "replicate"]


@dataclass
class Upload:
    """What a client sends the main server for one local iteration (b samples)."""

    activation: torch.Tensor  # (b, L, d), detached from the client's graph
    attention_mask: torch.Tensor  # (b, L)
    labels: torch.Tensor  # (b, L), -100 where no loss
    cut: int  # c_k: the activation is the output of block c_k; the server runs blocks c_k+1..J


def replicate(part: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``part`` with its own LoRA tensors; frozen base weights stay shared (saves K-1 copies)."""
    memo = {id(p): p for p in part.parameters() if not p.requires_grad}
    return copy.deepcopy(part, memo)


def _adamw(params, lr: float, weight_decay: float) -> torch.optim.AdamW:
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _constant(step: int) -> float:
    return 1.0


class ClientSide:
    """Client k: client part with its LoRA, optimiser and batch stream."""

    def __init__(
        self,
        part: ClientPart,
        stream: BatchStream,
        lr: float,
        weight_decay: float,
        schedule=_constant,
        precision: str = "fp32",
    ):
        self.part = part.train()
        self.stream = stream
        self.precision = precision
        self.tokens = 0  # real (unpadded) tokens of the batches this client has run
        self.optimizer = _adamw(lora_parameters(part), lr, weight_decay)
        self.schedule = schedule  # step -> lr factor (fedsim.learn.schedule)
        self._activation: torch.Tensor | None = None

    @property
    def num_samples(self) -> int:
        """D_k, the client's local dataset size."""
        return len(self.stream.indices)

    def forward(self) -> Upload:
        """FP of the next mini-batch through embeddings + blocks 1..c; keeps the graph for ``backward``."""
        batch = self.stream.next_batch()
        self.optimizer.zero_grad(set_to_none=True)
        self.tokens += int(batch["attention_mask"].sum())
        with autocast(batch["input_ids"].device, self.precision):
            self._activation = self.part(batch["input_ids"], batch["attention_mask"])
        return Upload(self._activation.detach(), batch["attention_mask"], batch["labels"], self.cut)

    @property
    def cut(self) -> int:
        """c_k, the number of decoder blocks this client runs."""
        return len(self.part.blocks)

    def backward(self, activation_grad: torch.Tensor) -> None:
        """BP with ∂ℓ/∂a_k from the main server, then one AdamW step on the client LoRA (eq. 6)."""
        if self._activation is None:
            raise RuntimeError("client backward before forward")
        self._activation.backward(activation_grad)
        self._activation = None
        scheduled_step(self.optimizer, self.schedule)

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

    def __init__(
        self,
        part: ServerPart,
        lr: float,
        weight_decay: float,
        per_client_loss: bool = False,
        schedule=_constant,
        precision: str = "fp32",
    ):
        self.part = part.train()
        self.precision = precision
        self.optimizer = _adamw(lora_parameters(part), lr, weight_decay)
        self.schedule = schedule  # step -> lr factor (fedsim.learn.schedule)
        self.per_client_loss = per_client_loss  # also report each upload's own loss (adaptive cuts)

    def step(self, uploads: Sequence[Upload]) -> tuple[float, list[torch.Tensor], list[tuple[float, int]]]:
        """FP + BP on A = [a_1; ...; a_K], server LoRA step (eq. 5).

        Clients are grouped by cut (in order of first appearance); each group runs from its first server
        block. One loss over every labelled token of all uploads, one backward, one step. Returns (mean
        loss, ∂ℓ/∂a_k per upload, (summed token NLL, token count) per upload).
        """
        acts = [u.activation.detach().requires_grad_(True) for u in uploads]
        groups: dict[int, list[int]] = {}
        for i, u in enumerate(uploads):
            groups.setdefault(u.cut, []).append(i)
        self.optimizer.zero_grad(set_to_none=True)
        total, count, per_upload = None, 0, [(0.0, 0)] * len(uploads)
        for cut, members in groups.items():
            mask = torch.cat([uploads[i].attention_mask for i in members])
            labels = torch.cat([uploads[i].labels for i in members])
            with autocast(mask.device, self.precision):
                logits = self.part(torch.cat([acts[i] for i in members]), mask, cut)
            nll, n = token_nll(logits, labels)
            total, count = (nll if total is None else total + nll), count + n
            if self.per_client_loss:  # detached: the graph and the step are unchanged
                with torch.no_grad():
                    rows = torch.split(logits.detach(), [len(uploads[i].labels) for i in members])
                    for i, part in zip(members, rows, strict=True):
                        t, m = token_nll(part, uploads[i].labels)
                        per_upload[i] = (float(t), m)
        loss = total / max(count, 1)
        loss.backward()
        scheduled_step(self.optimizer, self.schedule)
        return float(loss.detach()), [a.grad for a in acts], per_upload

    def state_dict(self) -> dict:
        return {
            "lora": {k: v.detach().clone() for k, v in lora_state(self.part).items()},
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        load_lora(self.part, state["lora"])
        self.optimizer.load_state_dict(state["optimizer"])


class FederatedServer:
    """Layer-wise aggregation into the global model's blocks and broadcast to every holder of a block."""

    def __init__(self, global_blocks: torch.nn.ModuleList, scale: float | LoraScale, method: str):
        self.blocks, self.scale, self.method = global_blocks, as_scale(scale), method

    def global_states(self, senders: Sequence[ClientSide], server: MainServer) -> dict[int, BlockState]:
        """Block j -> sum_k D_k W_{k,j} / sum_k D_k over ``senders`` (W_{k,j}: client k's copy if c_k > j,
        else the server's, which trained it on client k's data). Blocks no sender contributes to are left out."""
        first, out = server.part.first, {}
        for j, block in enumerate(self.blocks):
            states = [lora_state(c.part.blocks[j]) for c in senders if c.cut > j]
            weights = [c.num_samples for c in senders if c.cut > j]
            served = sum(c.num_samples for c in senders if c.cut <= j)
            if served > 0:
                states.append(lora_state(server.part.blocks[j - first]))
                weights.append(served)
            if states:
                out[j] = aggregate_block(
                    states, weights, module_rank(block), alpha=self.scale, method=self.method
                )
        return out

    def load_global(self, states: dict[int, BlockState]) -> None:
        """Write aggregated blocks into the global model."""
        for j, state in states.items():
            load_lora(self.blocks[j], state)

    def aggregate(
        self, senders: Sequence[ClientSide], receivers: Sequence[ClientSide], server: MainServer
    ) -> dict[int, BlockState]:
        """Aggregate ``senders`` into the global model; broadcast each block to its holders among
        ``receivers`` and to the server (each at its own rank, ``hetrank.project``)."""
        states = self.global_states(senders, server)
        self.load_global(states)
        first = server.part.first
        for j, state in states.items():
            holders = [c.part.blocks[j] for c in receivers if c.cut > j]
            if j >= first:
                holders.append(server.part.blocks[j - first])
            for block in holders:
                load_lora(block, project(state, module_rank(block), self.scale, method=self.method))
        return states


def load_lora(module: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy LoRA tensors into ``module`` in place (optimiser references stay valid)."""
    live = lora_state(module)
    if set(live) != set(state):
        raise ValueError("LoRA state keys do not match the module (different model, cut or targets?)")
    with torch.no_grad():
        for key, tensor in state.items():
            live[key].copy_(tensor)
