"""Layer-wise FedAvg over a block's holders, also when their LoRA ranks differ (SplitFT, spec §10).

With per-client cuts c_k, decoder block j (1-based) is held by every client with c_k >= j and by the main
server, which trained its single copy on the data of every client with c_k < j. The global LoRA of block j is

    W_j = sum_k D_k W_{k,j} / sum_k D_k,   W_{k,j} = client k's copy if c_k >= j, else the server's copy,

i.e. a FedAvg over the block's *holders*, the server weighted by the data it trained block j on. With equal
cuts this is eq. (7) on client blocks and leaves server blocks unchanged (a single holder is copied exactly).

A block's holders may hold it at different LoRA ranks (the cut-layer rank r_cut, spec §10c). Every adapted
layer's update is ``scale_r · B A`` with peft's scale (``fedsim.learn.split.lora.LoraScale``: alpha / r under
the default "fixed" policy, alpha under "proportional", alpha / sqrt(r) under "rslora"); the global copy has
the largest rank R:

* ``zero_pad`` (HetLoRA style): pad A with zero rows and B with zero columns to rank R, folding the scale into
  B (``B · scale_r / scale_R``, R / r when fixed) so each padded pair has the same product; FedAvg the padded
  A and B. A holder of rank r receives the first r components (``A[:r]``, ``B[:, :r] · scale_R / scale_r``).
* ``svd``: FedAvg the products ``scale_r B A`` and factor the average with an SVD truncated to R (the global)
  or to a holder's own rank r (what it receives): ``A = sqrt(S) V^T``, ``B = U sqrt(S) / scale``.

When all holders have the same rank both methods are plain FedAvg of A and B (then padded to R if R is
larger), so equal ranks give exactly eq. (7).

A copy re-created at another rank (a block moving between holders with different ranks) keeps its AdamW
moments under ``zero_pad`` by the same mapping as its factors (``project_moments``); under ``svd`` the new
factors are a new basis that the old moments have no counterpart in, so they restart from zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from fedsim.errors import InputError
from fedsim.learn.split.lora import LoraScale, as_scale

METHODS = ("zero_pad", "svd")
BlockState = dict[str, torch.Tensor]  # LoRA tensors of one block by name relative to the block


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


def _pairs(state: Mapping[str, torch.Tensor]) -> list[tuple[str, str]]:
    """(A key, B key) of every adapted layer in a block state."""
    return [(key, key.replace(".lora_A.", ".lora_B.")) for key in state if ".lora_A." in key]


def state_rank(state: Mapping[str, torch.Tensor]) -> int:
    """The LoRA rank of a block state (rows of its A matrices)."""
    ranks = {int(state[a].shape[0]) for a, _ in _pairs(state)}
    if len(ranks) != 1:
        raise ValueError(f"a block state must have one rank, found {sorted(ranks)}")
    return ranks.pop()


def _pad(state: Mapping[str, torch.Tensor], rank: int, scale: LoraScale) -> BlockState:
    """The same update at a larger ``rank``: zero rows in A, zero columns in B, B scaled by scale_r / scale_R
    (rank / r when fixed)."""
    r = state_rank(state)
    if r == rank:
        return dict(state)
    out: BlockState = {}
    for a_key, b_key in _pairs(state):
        a, b = state[a_key].detach(), state[b_key].detach()
        out[a_key] = torch.cat([a, a.new_zeros(rank - r, a.shape[1])])
        out[b_key] = torch.cat([b * scale.ratio(r, rank), b.new_zeros(b.shape[0], rank - r)], dim=1)
    return out


def _factor(
    products: Mapping[tuple[str, str], torch.Tensor], rank: int, scale: LoraScale, like
) -> BlockState:
    """A, B of rank ``rank`` (scale ``scale.of(rank)``) whose product is the best rank-r fit of each update."""
    out: BlockState = {}
    for (a_key, b_key), delta in products.items():
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        root = s[:rank].sqrt()
        out[a_key] = (root[:, None] * vh[:rank]).to(like[a_key].dtype)
        out[b_key] = (u[:, :rank] * root / scale.of(rank)).to(like[b_key].dtype)
    return out


def _products(state: Mapping[str, torch.Tensor], scale: LoraScale) -> dict[tuple[str, str], torch.Tensor]:
    r = state_rank(state)
    return {
        (a, b): scale.of(r) * state[b].detach().double() @ state[a].detach().double()
        for a, b in _pairs(state)
    }


def aggregate_block(
    states: Sequence[Mapping[str, torch.Tensor]],
    weights: Sequence[float],
    rank: int,
    *,
    alpha: float | LoraScale,
    method: str,
) -> BlockState:
    """Global LoRA of one block at ``rank`` (>= every holder's) from its holders' states, weights D.
    ``alpha``: the run's LoraScale (a number = the alpha of the "fixed" policy)."""
    scale = as_scale(alpha)
    if method not in METHODS:
        raise InputError(f"rank_aggregation: must be one of {METHODS}, got {method!r}")
    ranks = {state_rank(s) for s in states}
    if max(ranks) > rank:
        raise ValueError(f"global rank {rank} is below a holder's rank {max(ranks)}")
    if len(ranks) == 1:  # equal ranks: plain FedAvg (eq. 7), padded to the global rank
        return _pad(fedavg(states, weights), rank, scale)
    if method == "zero_pad":
        return fedavg([_pad(s, rank, scale) for s in states], weights)
    w = torch.tensor([float(x) for x in weights], dtype=torch.float64)
    w = w / w.sum()
    per_holder = [_products(s, scale) for s in states]
    mean = {key: sum(wk * p[key] for wk, p in zip(w, per_holder, strict=True)) for key in per_holder[0]}
    return _factor(mean, rank, scale, states[0])


def project(
    state: Mapping[str, torch.Tensor], rank: int, alpha: float | LoraScale, *, method: str
) -> BlockState:
    """What a holder of rank ``rank`` receives from the global block ``state`` (whose rank is >= rank)."""
    scale = as_scale(alpha)
    big = state_rank(state)
    if rank == big:
        return dict(state)
    if rank > big:
        return _pad(state, rank, scale)
    if method == "svd":
        return _factor(_products(state, scale), rank, scale, state)
    out: BlockState = {}
    for a_key, b_key in _pairs(state):
        out[a_key] = state[a_key][:rank].clone()
        out[b_key] = state[b_key][:, :rank] * scale.ratio(big, rank)
    return out


def project_moments(
    moments: Mapping[str, Mapping], old_rank: int, new_rank: int, *, scale: LoraScale | None = None
) -> dict[str, dict]:
    """AdamW state of a block copy mapped from rank ``old_rank`` to ``new_rank`` like its factors (zero_pad).

    Growing r -> R pads A with zero rows and B with zero columns and scales B by R / r; the padded copy is
    the same function, and its gradients are exactly those of the old copy with dL/dB scaled by r / R and
    zero on the new components. So ``exp_avg`` is padded with zeros (B's scaled by r / R) and ``exp_avg_sq``
    likewise (B's scaled by (r / R)^2): the moments the padded copy has after the same gradient history.
    Shrinking R -> r keeps the first r components the same way (scale R / r); that is exact only when the
    dropped components are zero. Scalars (``step``) are kept. ``moments``: by parameter name, as AdamW's state.
    """
    ratio = (scale or LoraScale(1.0)).ratio(
        new_rank, old_rank
    )  # dL/dB_new = dL/dB_old x this (fixed: old/new)
    out: dict[str, dict] = {}
    for name, state in moments.items():
        is_b = ".lora_B." in name
        if not is_b and ".lora_A." not in name:
            raise ValueError(f"not a LoRA factor: {name!r}")
        new: dict = {}
        for key, value in state.items():
            if not torch.is_tensor(value) or value.dim() != 2:
                new[key] = value.clone() if torch.is_tensor(value) else value
                continue
            if is_b:
                kept = value[:, :new_rank] * (ratio ** (2 if key.endswith("_sq") else 1))
                pad = value.new_zeros(value.shape[0], max(new_rank - old_rank, 0))
                new[key] = torch.cat([kept, pad], dim=1)
            else:
                pad = value.new_zeros(max(new_rank - old_rank, 0), value.shape[1])
                new[key] = torch.cat([value[:new_rank].clone(), pad])
        out[name] = new
    return out
