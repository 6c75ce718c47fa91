"""The two trainable systems behind one small API: split-federated (FedsLLM) and the centralized baseline.

Both expose ``local_iteration() -> train loss``, ``aggregate()``, ``eval_nll(dataset, indices, batch_size)``,
``deployed()`` (the model as it would be deployed, as a logits function), ``state_dict()`` /
``load_state_dict()``. The split-federated one also exposes the per-role calls the
event engine's live mode drives (``client_forward``, ``server_step``, ``client_backward``, ``aggregate``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from fedsim.errors import InputError
from fedsim.learn.batches import BatchStream, collate
from fedsim.learn.config import TrainConfig
from fedsim.learn.fedsplit import ClientSide, FederatedServer, MainServer, Upload, load_lora, replicate
from fedsim.learn.lora import add_lora, lora_parameters, lora_state
from fedsim.learn.split import check_cut, decoder_parts, split_model, token_nll


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda[:i]``, or ``auto`` (cuda when available); InputError if it does not exist here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"device: unknown torch device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device: {name!r} asked for but no CUDA GPU is available; use cpu or auto")
    return device


def _eval_nll(forward, dataset, indices: Sequence[int], batch_size: int, device=None) -> tuple[float, int]:
    """Summed token NLL and token count of ``forward(input_ids, attention_mask) -> logits`` over ``indices``."""
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(indices), batch_size):
            batch = collate(dataset, indices[start : start + batch_size], device)
            nll, n = token_nll(forward(batch["input_ids"], batch["attention_mask"]), batch["labels"])
            total, count = total + float(nll), count + n
    return total, count


class SplitFedSystem:
    """K clients + main server + federated server over one peft-wrapped model (spec Algorithm 1)."""

    def __init__(self, peft_model: nn.Module, cfg: TrainConfig, dataset, partition: Sequence[np.ndarray]):
        if len(partition) != cfg.num_clients:
            raise ValueError(f"partition has {len(partition)} clients, config says {cfg.num_clients}")
        self.cfg = cfg
        self.model = peft_model
        template, server_part = split_model(peft_model, cfg.cut)
        self.clients = [
            ClientSide(
                replicate(template),
                BatchStream(
                    dataset, partition[k], cfg.batch_size, seed=(cfg.seed, k), device=_device(peft_model)
                ),
                cfg.lr,
                cfg.weight_decay,
            )
            for k in range(cfg.num_clients)
        ]
        self.server = MainServer(server_part, cfg.lr, cfg.weight_decay)
        self.fed = FederatedServer()
        self.eval_part = template  # holds the aggregated client LoRA during evaluation
        self._uploads: dict[int, Upload] = {}
        self._grads: dict[int, torch.Tensor] = {}
        self.last_loss = float("nan")

    # --- the per-role calls (live mode drives these one by one) ---
    def client_forward(self, client: int) -> None:
        self._uploads[client] = self.clients[client].forward()

    def server_step(self, clients: Sequence[int]) -> float:
        self.last_loss, grads = self.server.step([self._uploads.pop(k) for k in clients])
        self._grads.update(zip(clients, grads, strict=True))
        return self.last_loss

    def client_backward(self, client: int) -> None:
        self.clients[client].backward(self._grads.pop(client))

    def aggregate(self, clients: Sequence[int] | None = None) -> None:
        """FedAvg over ``clients`` (default all), broadcast to all; with no upload in time, nothing changes."""
        senders = self.clients if clients is None else [self.clients[k] for k in clients]
        if senders:
            self.fed.aggregate(senders, self.clients)

    # --- one whole local iteration, as in the plain loop ---
    def local_iteration(self) -> float:
        everyone = range(len(self.clients))
        for k in everyone:
            self.client_forward(k)
        loss = self.server_step(list(everyone))
        for k in everyone:
            self.client_backward(k)
        return loss

    @contextmanager
    def deployed(self) -> Iterator[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
        """The global model as the federated server would deploy it, in eval mode: the FedAvg of the current
        client LoRA in the client part, then the server part with the server LoRA. Yields
        ``forward(input_ids (B,L), attention_mask (B,L)) -> logits (B,L,V)``; training resumes unchanged
        afterwards (the clients' own LoRA and optimisers are not touched)."""
        average = self.fed.aggregate(self.clients, [])
        load_lora(self.eval_part, average)
        self.eval_part.eval(), self.server.part.eval()
        try:
            yield lambda input_ids, attention_mask: self.server.part(
                self.eval_part(input_ids, attention_mask), attention_mask
            )
        finally:
            self.server.part.train()

    def eval_nll(self, dataset, indices: Sequence[int], batch_size: int) -> tuple[float, int]:
        """Summed token NLL and token count of the deployed global model (see ``deployed``) on ``indices``."""
        with self.deployed() as forward:
            return _eval_nll(forward, dataset, indices, batch_size, _device(self.model))

    def state_dict(self) -> dict:
        return {"clients": [c.state_dict() for c in self.clients], "server": self.server.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        for client, s in zip(self.clients, state["clients"], strict=True):
            client.load_state_dict(s)
        self.server.load_state_dict(state["server"])


class CentralizedSystem:
    """One peft LoRA model trained on the union of the clients' data, K·b samples per step (the baseline)."""

    def __init__(self, peft_model: nn.Module, cfg: TrainConfig, dataset, partition: Sequence[np.ndarray]):
        check_cut(cfg.cut, decoder_parts(peft_model).num_blocks)  # same validation as split_fed
        self.cfg = cfg
        self.model = peft_model.train()
        indices = np.concatenate([np.asarray(p) for p in partition])
        self.stream = BatchStream(
            dataset, indices, cfg.batch_size * cfg.num_clients, seed=(cfg.seed, 0), device=_device(peft_model)
        )
        self.optimizer = torch.optim.AdamW(
            lora_parameters(peft_model), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.last_loss = float("nan")

    def local_iteration(self) -> float:
        batch = self.stream.next_batch()
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        total, count = token_nll(logits, batch["labels"])
        loss = total / max(count, 1)
        loss.backward()
        self.optimizer.step()
        self.last_loss = float(loss.detach())
        return self.last_loss

    def aggregate(self, clients: Sequence[int] | None = None) -> None:
        """Nothing to aggregate: one model."""

    @contextmanager
    def deployed(self) -> Iterator[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
        """The LoRA model in eval mode as ``forward(input_ids, attention_mask) -> logits``."""
        self.model.eval()
        try:
            yield (
                lambda input_ids, attention_mask: (
                    self.model(input_ids=input_ids, attention_mask=attention_mask).logits
                )
            )
        finally:
            self.model.train()

    def eval_nll(self, dataset, indices: Sequence[int], batch_size: int) -> tuple[float, int]:
        with self.deployed() as forward:
            return _eval_nll(forward, dataset, indices, batch_size, _device(self.model))

    def state_dict(self) -> dict:
        return {
            "lora": {k: v.detach().clone() for k, v in lora_state(self.model).items()},
            "optimizer": self.optimizer.state_dict(),
            "stream": self.stream.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        load_lora(self.model, state["lora"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.stream.load_state_dict(state["stream"])


def build_system(model: nn.Module, cfg: TrainConfig, dataset, partition: Sequence[np.ndarray]):
    """Add LoRA to a plain HF causal LM (seeded) and build the system ``cfg.scheme`` names.

    peft wraps ``model``'s target layers in place: build each system from a freshly loaded model.
    """
    check_cut(cfg.cut, decoder_parts(model).num_blocks)
    model = model.to(resolve_device(cfg.device))  # before peft, which puts LoRA on the base layer's device
    peft_model = add_lora(model, cfg.rank, cfg.lora_alpha, cfg.lora_dropout, cfg.seed, cfg.targets)
    torch.manual_seed(cfg.seed + 1)  # dropout draws from the global generator; checkpoints save its state
    cls = SplitFedSystem if cfg.scheme == "split_fed" else CentralizedSystem
    return cls(peft_model, cfg, dataset, partition)
