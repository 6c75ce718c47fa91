"""The training loops: split-federated (FedsLLM Algorithm 1) and the centralized LoRA baseline.

``train(cfg, model, data)`` reads straight down like nanoGPT: build the system -> resume if a checkpoint
exists -> per step: one local iteration (clients FP -> main server FP/BP on all activations -> clients BP),
FedAvg every I steps -> evaluate every ``eval_every`` steps -> checkpoint every N steps. Both schemes share
the loop, the data and the hyper-parameters; only the system differs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from fedsim.learn.checkpoint import load_checkpoint, restore_rng, save_checkpoint
from fedsim.learn.config import TrainConfig
from fedsim.learn.records import ConvergenceRecord, rounds_to_target
from fedsim.learn.systems import build_system


@dataclass
class TrainData:
    """Tokenised training and validation sets and the client partition of the training indices."""

    train: object  # torch Dataset of dicts input_ids / attention_mask / labels, each (L,)
    validation: object
    partition: list[np.ndarray]  # K index arrays into ``train``
    eval_indices: np.ndarray  # validation indices used for perplexity


def perplexity(system, data: TrainData, batch_size: int) -> float:
    """exp(mean token NLL) over ``data.eval_indices`` (token-weighted, as HF's loss)."""
    total, count = system.eval_nll(data.validation, data.eval_indices, batch_size)
    return math.exp(total / max(count, 1))


def train(
    cfg: TrainConfig, model, data: TrainData, progress: bool = True, source: str = ""
) -> ConvergenceRecord:
    """Run ``cfg.steps`` local iterations of ``cfg.scheme`` on ``model`` (a plain HF causal LM)."""
    system = build_system(model, cfg, data.train, data.partition)
    eval_batch = cfg.batch_size * cfg.num_clients
    step, curve = 0, []
    ckpt = Path(cfg.checkpoint_path) if cfg.checkpoint_path else None
    if ckpt is not None and ckpt.is_file():  # resume: same state, same RNG, the curve continues
        payload = load_checkpoint(ckpt, cfg.model_dump())
        system.load_state_dict(payload["system"])
        step, curve = int(payload["step"]), list(payload["curve"])
        restore_rng(payload)
    else:
        curve.append({"step": 0, "round": 0.0, "val_ppl": perplexity(system, data, eval_batch)})

    bar = tqdm(
        total=cfg.steps, initial=step, disable=not progress, desc=f"{cfg.scheme} r={cfg.rank}", unit="step"
    )
    while step < cfg.steps:
        loss = system.local_iteration()
        step += 1
        if step % cfg.local_iterations == 0:
            system.aggregate()  # end of a global round: FedAvg + broadcast (eq. 7)
        row = {"step": step, "round": step / cfg.local_iterations, "train_loss": loss}
        if step % cfg.eval_every == 0 or step == cfg.steps:
            row["val_ppl"] = perplexity(system, data, eval_batch)
        curve.append(row)
        if ckpt is not None and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
            save_checkpoint(ckpt, cfg.model_dump(), step, curve, system.state_dict())
        bar.update(1)
        bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k in ("train_loss", "val_ppl")})
    bar.close()
    return make_record(cfg, curve, source)


def make_record(cfg: TrainConfig, curve: list[dict], source: str) -> ConvergenceRecord:
    clean = [{k: float(v) if k != "step" else int(v) for k, v in r.items() if not _is_nan(v)} for r in curve]
    return ConvergenceRecord(
        model=cfg.model,
        scheme=cfg.scheme,
        rank=cfg.rank,
        num_clients=cfg.num_clients,
        batch_size=cfg.batch_size,
        local_iterations=cfg.local_iterations,
        seq_len=cfg.seq_len,
        target_ppl=cfg.target_ppl,
        rounds_to_target=rounds_to_target(clean, cfg.target_ppl),
        curve=clean,
        source=source,
    )


def _is_nan(value) -> bool:
    return isinstance(value, float) and not math.isfinite(value)
