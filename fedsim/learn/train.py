"""The training loops: split-federated (FedsLLM Algorithm 1) and the centralized LoRA baseline.

``train(cfg, model, data)`` reads straight down like nanoGPT: build the system -> resume if a checkpoint
exists -> per step: one local iteration (clients FP -> main server FP/BP on all activations -> clients BP),
FedAvg every I steps -> evaluate every ``eval_every`` steps -> checkpoint every N steps -> at the end, test
perplexity and generation scored with BLEU / ROUGE-L (``final_metrics``). Both schemes share the loop, the
data and the hyper-parameters; only the system differs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from fedsim.learn.checkpoint import restore_rng, resume_point, save_checkpoint
from fedsim.learn.config import TrainConfig
from fedsim.learn.federated.systems import build_system
from fedsim.learn.precision import peak_memory_bytes, reset_peak_memory
from fedsim.learn.records import ConvergenceRecord, rounds_to_target


@dataclass
class TrainData:
    """Tokenised training and validation sets and the client partition of the training indices."""

    train: object  # torch Dataset of dicts input_ids / attention_mask / labels, each (L,)
    validation: object
    partition: list[np.ndarray]  # K index arrays into ``train``
    eval_indices: np.ndarray  # validation indices used for perplexity
    test: object | None = None  # the test set, same item format; None = no test perplexity
    test_pairs: list[tuple[str, str]] = field(default_factory=list)  # (mr, ref) of the test split
    tokenizer: object | None = None  # needed (with test_pairs) for generation


def perplexity(system, data: TrainData, batch_size: int) -> float:
    """exp(mean token NLL) over ``data.eval_indices`` (token-weighted, as HF's loss)."""
    total, count = system.eval_nll(data.validation, data.eval_indices, batch_size)
    return math.exp(total / max(count, 1))


def evaluate_validation(system, data: TrainData, batch_size: int, *, halves: bool = False) -> dict:
    """``{"val_ppl": ...}``; with ``halves`` also ``val_ppl_a`` / ``val_ppl_b``, the perplexity of the even and
    odd positions of ``data.eval_indices`` (same forward passes: val_ppl pools both halves' tokens)."""
    if not halves:
        return {"val_ppl": perplexity(system, data, batch_size)}
    indices = np.asarray(data.eval_indices)
    (nll_a, n_a), (nll_b, n_b) = (system.eval_nll(data.validation, part, batch_size)
                                  for part in (indices[0::2], indices[1::2]))  # fmt: skip
    return {
        "val_ppl": math.exp((nll_a + nll_b) / max(n_a + n_b, 1)),
        "val_ppl_a": math.exp(nll_a / max(n_a, 1)),
        "val_ppl_b": math.exp(nll_b / max(n_b, 1)),
    }


def final_metrics(system, cfg: TrainConfig, data: TrainData) -> dict:
    """Test perplexity and generation scores of the model as deployed (``system.deployed()``).

    ``test_ppl`` over the first ``cfg.test_samples`` examples of ``data.test``; with ``cfg.generate_mrs`` > 0,
    greedy generation (at most ``cfg.max_new_tokens`` tokens) for the first that many distinct test MRs,
    through the same forward (split: client part with the FedAvg client LoRA, then the server part), scored
    by corpus BLEU and ROUGE-L against all references of each MR (0-100). Parts whose inputs ``data`` lacks
    (no test set, no test pairs or tokenizer) are left out of the dict.
    """
    from fedsim.learn.evaluate import evaluate_generation

    out: dict = {}
    batch = cfg.batch_size * cfg.num_clients
    if cfg.test_samples and data.test is not None and len(data.test):
        n = min(cfg.test_samples, len(data.test))
        total, count = system.eval_nll(data.test, np.arange(n), batch)
        out.update(test_ppl=math.exp(total / max(count, 1)), test_samples=n)
    if cfg.generate_mrs and data.test_pairs and data.tokenizer is not None:
        device = next(system.model.parameters()).device
        with system.deployed() as forward:
            result = evaluate_generation(
                lambda input_ids, attention_mask: forward(input_ids.to(device), attention_mask.to(device)),
                data.tokenizer,
                data.test_pairs,
                max_new_tokens=cfg.max_new_tokens,
                batch_size=batch,
                limit=cfg.generate_mrs,
                max_len=cfg.seq_len,
            )
        out.update(bleu=result["bleu"], rouge_l=result["rouge_l"], n_mrs=result["num_mrs"])
        out["max_new_tokens"] = cfg.max_new_tokens
    return out


def train(
    cfg: TrainConfig, model, data: TrainData, *, progress: bool = True, source: str = ""
) -> ConvergenceRecord:
    """Run ``cfg.steps`` local iterations of ``cfg.scheme`` on ``model`` (a plain HF causal LM)."""
    system = build_system(model, cfg, data.train, partition=data.partition)
    eval_batch = cfg.batch_size * cfg.num_clients
    step, curve = 0, []
    ckpt = Path(cfg.checkpoint_path) if cfg.checkpoint_path else None
    payload = resume_point(ckpt, cfg.model_dump())
    if payload is not None:  # resume: same state, same RNG, the curve continues
        system.load_state_dict(payload["system"])
        step, curve = int(payload["step"]), list(payload["curve"])
        restore_rng(payload)
    else:
        curve.append(
            {"step": 0, "round": 0.0, **evaluate_validation(system, data, eval_batch, halves=cfg.eval_halves)}
        )

    bar = tqdm(
        total=cfg.steps, initial=step, disable=not progress, desc=f"{cfg.scheme} r={cfg.rank}", unit="step"
    )
    device = next(system.model.parameters()).device
    reset_peak_memory(device)
    tokens_before, train_s = system.tokens, 0.0
    while step < cfg.steps:
        started = time.perf_counter()
        loss = system.local_iteration()
        step += 1
        if step % cfg.local_iterations == 0:
            system.aggregate()  # end of a global round: FedAvg + broadcast (eq. 7)
        train_s += time.perf_counter() - started
        row = {"step": step, "round": step / cfg.local_iterations, "train_loss": loss}
        if step % cfg.eval_every == 0 or step == cfg.steps:
            row.update(evaluate_validation(system, data, eval_batch, halves=cfg.eval_halves))
        curve.append(row)
        if ckpt is not None and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
            save_checkpoint(ckpt, cfg.model_dump(), step, curve=curve, system_state=system.state_dict())
        bar.update(1)
        bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k in ("train_loss", "val_ppl")})
    bar.close()
    record = make_record(cfg, curve, source, final=final_metrics(system, cfg, data))
    trained = system.tokens - tokens_before  # this process's steps (a resumed run counts its own)
    if train_s > 0:
        record.measured = {"train_tokens_per_s": trained / train_s, "peak_memory_bytes": peak_memory_bytes(device),
                           "device": str(device), "precision": cfg.precision}  # fmt: skip
    return record


def make_record(
    cfg: TrainConfig, curve: list[dict], source: str, *, final: dict | None = None
) -> ConvergenceRecord:
    clean = [{k: float(v) if k != "step" else int(v) for k, v in r.items() if not _is_nan(v)} for r in curve]
    if final is not None:
        final = {k: v for k, v in final.items() if not _is_nan(v)}
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
        final=final or None,
        config=cfg.model_dump(),
    )


def _is_nan(value) -> bool:
    return isinstance(value, float) and not math.isfinite(value)
