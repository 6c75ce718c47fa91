"""Moving one decoder block between a client and the main server when the client's cut changes (SplitFT).

A cut c -> c+1 moves block c+1 from the server to the client: the client gets a replica of the server's
copy (its LoRA values) and the server optimiser's AdamW moments for it. A cut c -> c-1 hands block c back:
the server adopts the client's LoRA values and moments unless it still trains that block for another
client (then it keeps its own copy; after the round's broadcast both equal the global block anyway).
Moves happen right after an aggregation. If the move changes a copy's rank (cut-layer ranks, spec §10c),
that copy is re-created at its new rank from the global block; with ``rank_aggregation = "zero_pad"`` its
moments follow by the same pad/truncate mapping as its factors (``hetrank.project_moments``: exact when the
rank grows), with ``"svd"`` (a new factor basis) they restart from zero.
"""

from __future__ import annotations

import torch

from fedsim.learn.federated.fedsplit import load_lora, replicate
from fedsim.learn.federated.hetrank import project_moments
from fedsim.learn.split.lora import lora_parameters, lora_state, module_rank


def _moments(optimizer: torch.optim.Optimizer, block: torch.nn.Module) -> dict[str, dict]:
    """AdamW state of ``block``'s LoRA parameters, by parameter name relative to the block (cloned)."""
    out = {}
    for name, p in lora_state(block).items():
        if p in optimizer.state:
            out[name] = {k: v.clone() if torch.is_tensor(v) else v for k, v in optimizer.state[p].items()}
    return out


def _put_moments(optimizer: torch.optim.Optimizer, block: torch.nn.Module, moments: dict[str, dict]) -> None:
    live = lora_state(block)
    for name, state in moments.items():
        optimizer.state[live[name]] = state


def _rebuild(optimizer: torch.optim.Optimizer, module: torch.nn.Module) -> torch.optim.Optimizer:
    """The same AdamW over ``module``'s current LoRA parameters, keeping the state of those it had."""
    group = optimizer.param_groups[0]
    new = torch.optim.AdamW(lora_parameters(module), lr=group["lr"], weight_decay=group["weight_decay"])
    for key in ("base_lr", "iteration"):  # the lr schedule's place (fedsim.learn.schedule) moves along
        if key in group:
            new.param_groups[0][key] = group[key]
    for p in lora_parameters(module):
        if p in optimizer.state:
            new.state[p] = optimizer.state[p]
    return new


def move_cut(system, k: int, new_cut: int) -> dict:
    """Change client k's cut by one block (``new_cut`` = c_k ± 1). Returns the move: client, block (1-based),
    to_client, and rank (of the receiving copy, after the move)."""
    client, server, layout = system.clients[k], system.server, system.layout
    old, first = client.cut, server.part.first
    if abs(new_cut - old) != 1:
        raise ValueError(f"a cut moves one block at a time, got {old} -> {new_cut}")
    if new_cut > old:  # block index j = old: server -> client
        j = old
        source = server.part.blocks[j - first]
        block = replicate(source)
        client.part.blocks.append(block)
        moments = _moments(server.optimizer, source)
        client.optimizer = _rebuild(client.optimizer, client.part)
        _put_moments(client.optimizer, block, moments)
    else:  # block index j = new_cut: client -> server
        j = new_cut
        block = client.part.blocks[j]
        del client.part.blocks[j]
        shared = any(c.cut <= j for i, c in enumerate(system.clients) if i != k)
        target = server.part.blocks[j - first]
        if not shared and lora_state(target).keys() == lora_state(block).keys():
            if all(lora_state(target)[n].shape == t.shape for n, t in lora_state(block).items()):
                load_lora(target, lora_state(block))
                for p in lora_parameters(target):
                    server.optimizer.state.pop(p, None)
                _put_moments(server.optimizer, target, _moments(client.optimizer, block))
        client.optimizer = _rebuild(client.optimizer, client.part)
    layout.cuts[k] = new_cut
    _refit(system)
    to_client = new_cut > old
    receiver = client.part.blocks[j] if to_client else server.part.blocks[j - first]
    return {"client": k, "block": j + 1, "to_client": to_client, "rank": module_rank(receiver)}


def _refit(system) -> None:
    """Bring every copy to the rank the new layout gives it; a re-created copy carries its moments across
    (zero_pad) or restarts them (svd)."""
    layout = system.layout
    for k, client in enumerate(system.clients):
        client.optimizer = _fit(
            system, client.optimizer, client.part, 0, lambda j, k=k: layout.client_rank(k, j)
        )
    server = system.server
    server.optimizer = _fit(system, server.optimizer, server.part, server.part.first, layout.server_rank)


def _fit(system, optimizer: torch.optim.Optimizer, part, offset: int, rank_of) -> torch.optim.Optimizer:
    before = {id(b): (module_rank(b), _moments(optimizer, b)) for b in part.blocks}
    resized = system.fit_ranks(part.blocks, offset, rank_of)
    if not resized:
        return optimizer
    optimizer = _rebuild(optimizer, part)
    if system.cfg.rank_aggregation == "zero_pad":
        for block in resized:
            rank, moments = before[id(block)]
            _put_moments(
                optimizer, block, project_moments(moments, rank, module_rank(block), scale=system.scale)
            )
    return optimizer
