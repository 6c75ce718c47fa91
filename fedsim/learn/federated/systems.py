"""The two trainable systems behind one small API: split-federated (FedsLLM) and the centralized baseline.

Both expose ``local_iteration() -> train loss``, ``aggregate()``, ``eval_nll(dataset, indices, batch_size)``
(per example: ``example_nll``), ``deployed()`` (the model as it would be deployed, as a logits function),
``state_dict()`` / ``load_state_dict()``. The split-federated one also exposes the per-role calls the
event engine's live mode drives (``client_forward``, ``server_step``, ``client_backward``, ``aggregate``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from fedsim.errors import InputError
from fedsim.learn.config import TrainConfig
from fedsim.learn.data.batches import BatchStream
from fedsim.learn.data.prompt_packing import pack_shared_prompts
from fedsim.learn.federated.adaptive_cut import CutAdapter
from fedsim.learn.federated.fedsplit import (
    ClientSide,
    FederatedServer,
    MainServer,
    Upload,
    load_lora,
    replicate,
)
from fedsim.learn.federated.hetrank import project
from fedsim.learn.precision import autocast
from fedsim.learn.schedule import schedule_of, scheduled_step
from fedsim.learn.split.layout import Layout, check_cuts
from fedsim.learn.split.lora import (
    LoraScale,
    add_lora,
    lora_parameters,
    lora_state,
    module_rank,
    peft_alpha,
    set_module_rank,
)
from fedsim.learn.split.parts import (
    ClientPart,
    ServerPart,
    check_cut,
    decoder_parts,
    shared_prompt_mask,
    token_nll,
)


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


def _example_nll(
    forward, config, dataset, indices: Sequence[int], batch_size: int, device=None, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per example of ``indices`` (in that order): summed token NLL [nats] (float64) and labelled-token count of
    ``forward(input_ids, attention_mask, position_ids=) -> logits``, the deployed model of a system whose
    decoder config is ``config``.

    Fast and exact: the examples of one prompt packed behind a single copy of it
    (``fedsim.learn.data.prompt_packing``, with ``shared_prompt_mask``), at most about ``batch_size`` examples'
    worth of tokens per batch, logits scored only where they predict a labelled token, under inference mode.
    ``benchmarks/bench_eval.py`` measures the speed-up and checks the NLL against the plain loop."""
    indices = np.asarray(indices, dtype=np.int64)
    nll = torch.zeros(len(indices), dtype=torch.float64)
    tokens = torch.zeros(len(indices), dtype=torch.long)
    if len(indices) == 0:
        return nll.numpy(), tokens.numpy()
    width = len(dataset[int(indices[0])]["input_ids"])
    batches = pack_shared_prompts(dataset, indices, max_tokens=batch_size * width)
    with torch.inference_mode():
        for batch in tqdm(batches, disable=not progress, unit="batch", leave=False):
            batch = batch.to(device)
            mask = shared_prompt_mask(config, batch.attention_mask, batch.segments)
            logits = forward(batch.input_ids, mask, position_ids=batch.position_ids)
            token_nll = nn.functional.cross_entropy(
                logits[batch.rows, batch.cols].float(), batch.targets, reduction="none"
            )
            examples = batch.examples.cpu()
            nll.index_add_(0, examples, token_nll.double().cpu())
            tokens.index_add_(0, examples, torch.ones_like(examples))
    return nll.numpy(), tokens.numpy()


def _eval_nll(
    forward, config, dataset, indices: Sequence[int], batch_size: int, device=None
) -> tuple[float, int]:
    """Summed token NLL and token count over ``indices``: ``_example_nll`` summed."""
    nll, tokens = _example_nll(forward, config, dataset, indices, batch_size, device)
    return float(nll.sum()), int(tokens.sum())


def make_layout(cfg: TrainConfig, num_blocks: int) -> Layout:
    """Cuts and ranks of ``cfg``: equal cut (1..J) or per-client cuts (1..J-1), cut-layer rank, adaptivity."""
    adaptive = cfg.adaptive_cuts
    if cfg.cuts is None and adaptive is None and cfg.rank_cut is None:
        cuts = [check_cut(cfg.cut, num_blocks)] * cfg.num_clients  # FedsLLM: c = J allowed (head-only server)
    else:
        cuts = check_cuts(cfg.client_cuts(), num_blocks)
    first = min(cuts)
    if adaptive is not None:
        top = num_blocks - 1 if adaptive.cut_max is None else adaptive.cut_max
        check_cuts([adaptive.cut_min, top], num_blocks, "adaptive_cuts.cut_min/cut_max")
        if not all(adaptive.cut_min <= c <= top for c in cuts):
            raise InputError(
                f"cuts: {cuts} must lie in adaptive_cuts.cut_min..cut_max = {adaptive.cut_min}..{top}"
            )
        first = adaptive.cut_min
    return Layout(cuts, num_blocks, cfg.rank, cfg.rank_cut, cfg.rank_cut_side, first, adaptive is not None)


class SplitFedSystem:
    """K clients + main server + federated server over one peft-wrapped model (spec Algorithm 1), with
    per-client cuts, cut-layer ranks and adaptive cuts (SplitFT, spec §10) when ``cfg`` asks for them.

    The peft model is the *global* model: every holder (client or server) trains its own replica of the blocks
    it holds (frozen weights shared), and aggregation writes the layer-wise average back into the model."""

    def __init__(self, peft_model: nn.Module, cfg: TrainConfig, dataset, partition: Sequence[np.ndarray]):
        if len(partition) != cfg.num_clients:
            raise ValueError(f"partition has {len(partition)} clients, config says {cfg.num_clients}")
        self.cfg = cfg
        self.model = peft_model
        parts = decoder_parts(peft_model)
        self.layout = make_layout(cfg, parts.num_blocks)
        self.lora_config = peft_model.peft_config["default"]
        self.scale = LoraScale(cfg.lora_alpha, cfg.lora_alpha_policy)  # every holder's LoRA scale rule
        self.global_blocks = parts.blocks
        first = self.layout.server_first
        self.clients = []
        for k, cut in enumerate(self.layout.cuts):
            part = replicate(ClientPart(parts, cut))
            self.fit_ranks(part.blocks, 0, lambda j, k=k: self.layout.client_rank(k, j), init=True)
            stream = BatchStream(
                dataset, partition[k], cfg.batch_size, seed=(cfg.seed, k), device=_device(peft_model)
            )
            self.clients.append(
                ClientSide(part, stream, cfg.lr, cfg.weight_decay, schedule_of(cfg), precision=cfg.precision)
            )
        server_part = replicate(ServerPart(parts, first))
        self.fit_ranks(server_part.blocks, first, self.layout.server_rank, init=True)
        self.server = MainServer(
            server_part,
            cfg.lr,
            cfg.weight_decay,
            per_client_loss=cfg.adaptive_cuts is not None,
            schedule=schedule_of(cfg),
            precision=cfg.precision,
        )
        self.fed = FederatedServer(parts.blocks, self.scale, cfg.rank_aggregation)
        self.eval_client, self.eval_server = ClientPart(parts, first), ServerPart(parts, first)
        self.adapter = (
            None
            if cfg.adaptive_cuts is None
            else CutAdapter(self, cfg.adaptive_cuts, dataset=dataset, partition=partition)
        )
        self._uploads: dict[int, Upload] = {}
        self._grads: dict[int, torch.Tensor] = {}
        self.last_loss = float("nan")

    def fit_ranks(
        self, blocks: nn.ModuleList, offset: int, rank_of, *, init: bool = False
    ) -> list[nn.Module]:
        """Give each block (global index offset + i) the rank ``rank_of(j)``: a resized block gets the
        global block projected to its rank (at init: truncated, B = 0). Returns the resized blocks."""
        resized = []
        for i, block in enumerate(blocks):
            j, rank = offset + i, rank_of(offset + i)
            if module_rank(block) != rank:
                set_module_rank(
                    block, rank, self.lora_config, alpha=peft_alpha(self.scale.alpha, self.scale.policy, rank)
                )
                method = "zero_pad" if init else self.cfg.rank_aggregation
                load_lora(block, project(lora_state(self.global_blocks[j]), rank, self.scale, method=method))
                resized.append(block)
        return resized

    # --- the per-role calls (live mode drives these one by one) ---
    def client_forward(self, client: int) -> None:
        self._uploads[client] = self.clients[client].forward()

    def server_step(self, clients: Sequence[int]) -> float:
        self.last_loss, grads, per_client = self.server.step([self._uploads.pop(k) for k in clients])
        self._grads.update(zip(clients, grads, strict=True))
        if self.adapter is not None:
            self.adapter.observe(clients, per_client)
        return self.last_loss

    def client_backward(self, client: int) -> None:
        self.clients[client].backward(self._grads.pop(client))

    def aggregate(self, clients: Sequence[int] | None = None) -> None:
        """Layer-wise FedAvg over ``clients`` (default all) into the global model, broadcast to every holder;
        with no upload in time, nothing changes. With adaptive cuts, every tau rounds the cuts then move."""
        senders = self.clients if clients is None else [self.clients[k] for k in clients]
        if senders:
            self.fed.aggregate(senders, self.clients, self.server)
        if self.adapter is not None:
            self.adapter.end_round()

    # --- one whole local iteration, as in the plain loop ---
    @property
    def tokens(self) -> int:
        """Real (unpadded) training tokens the clients have run so far."""
        return sum(client.tokens for client in self.clients)

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
        """The global model as the federated server would deploy it, in eval mode: the layer-wise average of
        the current copies (clients' and server's) of every block. Yields
        ``forward(input_ids (B,L), attention_mask (B,L), position_ids=None) -> logits (B,L,V)`` (the mask may
        also be a ready 4-D one, as ``_eval_nll`` passes); training resumes unchanged afterwards (the holders'
        own LoRA and optimisers are not touched)."""
        self.fed.load_global(self.fed.global_states(self.clients, self.server))
        self.eval_client.eval(), self.eval_server.eval()
        yield lambda input_ids, attention_mask, position_ids=None: self.eval_server(
            self.eval_client(input_ids, attention_mask, position_ids=position_ids),
            attention_mask,
            position_ids=position_ids,
        )

    def eval_nll(self, dataset, indices: Sequence[int], batch_size: int) -> tuple[float, int]:
        """Summed token NLL and token count of the deployed global model (see ``deployed``) on ``indices``."""
        nll, tokens = self.example_nll(dataset, indices, batch_size)
        return float(nll.sum()), int(tokens.sum())

    def example_nll(self, dataset, indices: Sequence[int], batch_size: int, *, progress: bool = False):
        """``_example_nll`` of the deployed global model: per example, summed token NLL and token count."""
        with self.deployed() as forward:
            return _example_nll(forward, self.eval_client.config, dataset, indices, batch_size,
                                _device(self.model), progress)  # fmt: skip

    def state_dict(self) -> dict:
        state = {"clients": [c.state_dict() for c in self.clients], "server": self.server.state_dict()}
        if self.adapter is not None:
            state["adaptive"] = self.adapter.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if self.adapter is not None:
            self.adapter.load_state_dict(state["adaptive"])  # re-cuts the system first
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
        self.schedule = schedule_of(cfg)
        self.tokens = 0  # real (unpadded) tokens of the batches run
        self.last_loss = float("nan")

    def local_iteration(self) -> float:
        batch = self.stream.next_batch()
        self.optimizer.zero_grad(set_to_none=True)
        self.tokens += int(batch["attention_mask"].sum())
        with autocast(batch["input_ids"].device, self.cfg.precision):
            logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        total, count = token_nll(logits, batch["labels"])
        loss = total / max(count, 1)
        loss.backward()
        scheduled_step(self.optimizer, self.schedule)
        self.last_loss = float(loss.detach())
        return self.last_loss

    def aggregate(self, clients: Sequence[int] | None = None) -> None:
        """Nothing to aggregate: one model."""

    @contextmanager
    def deployed(self) -> Iterator[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
        """The LoRA model in eval mode as ``forward(input_ids, attention_mask, position_ids=None) -> logits``."""
        self.model.eval()
        try:
            yield (
                lambda input_ids, attention_mask, position_ids=None: (
                    self.model(
                        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
                    ).logits
                )
            )
        finally:
            self.model.train()

    def eval_nll(self, dataset, indices: Sequence[int], batch_size: int) -> tuple[float, int]:
        nll, tokens = self.example_nll(dataset, indices, batch_size)
        return float(nll.sum()), int(tokens.sum())

    def example_nll(self, dataset, indices: Sequence[int], batch_size: int, *, progress: bool = False):
        with self.deployed() as forward:
            return _example_nll(forward, self.model.config, dataset, indices, batch_size, _device(self.model),
                                progress)  # fmt: skip

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


def build_system(model: nn.Module, cfg: TrainConfig, dataset, *, partition: Sequence[np.ndarray]):
    """Add LoRA to a plain HF causal LM (seeded) and build the system ``cfg.scheme`` names.

    peft wraps ``model``'s target layers in place: build each system from a freshly loaded model.
    """
    layout = make_layout(cfg, decoder_parts(model).num_blocks)  # validates the cut(s) before any work
    model = model.to(resolve_device(cfg.device))  # before peft, which puts LoRA on the base layer's device
    peft_model = add_lora(
        model,
        cfg.rank,
        cfg.lora_alpha,
        dropout=cfg.lora_dropout,
        seed=cfg.seed,
        targets=cfg.targets,
        block_ranks=layout.block_ranks(),
        alpha_policy=cfg.lora_alpha_policy,
    )
    torch.manual_seed(cfg.seed + 1)  # dropout draws from the global generator; checkpoints save its state
    cls = SplitFedSystem if cfg.scheme == "split_fed" else CentralizedSystem
    return cls(peft_model, cfg, dataset, partition)
