"""Evaluation: perplexity over reference tokens, greedy generation on E2E MRs, BLEU and ROUGE-L.

E2E's protocol scores each distinct MR once, against all of its human references: corpus BLEU with multiple
references (sacrebleu, 13a tokenisation) and ROUGE-L F1 taking the best reference per MR (rouge-score),
averaged over MRs. Both are reported on a 0-100 scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch

from fedsim.learn.data.e2e import encode_pair, group_by_mr
from fedsim.learn.split.parts import token_nll

ForwardFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _device(model_or_fn) -> torch.device | None:
    """Where a module's weights live (inputs are moved there); None for a bare function."""
    params = getattr(model_or_fn, "parameters", None)
    first = next(iter(params()), None) if callable(params) else None
    return first.device if first is not None else None


def _logits(model_or_fn, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    device = _device(model_or_fn)
    if device is not None:
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    out = model_or_fn(input_ids=input_ids, attention_mask=attention_mask)
    return out.logits if hasattr(out, "logits") else out


def nll_sum_and_count(
    model_or_fn, batches: Iterable[dict], max_batches: int | None = None
) -> tuple[float, int]:
    """Summed next-token NLL (nats) over all label tokens != -100, and how many tokens that is.

    model_or_fn: a causal LM (called with input_ids=, attention_mask=) or any callable with that signature
    returning logits (B, L, V) or an object with ``.logits`` (e.g. a split model's forward).
    batches: dicts with input_ids, attention_mask, labels, each (B, L); labels[t] is predicted from
    positions < t, as in transformers' causal-LM loss.
    """
    total, count = 0.0, 0
    was_training = getattr(model_or_fn, "training", None)
    if was_training:
        model_or_fn.eval()
    try:
        with torch.no_grad():
            for i, batch in enumerate(batches):
                if max_batches is not None and i >= max_batches:
                    break
                logits = _logits(model_or_fn, batch["input_ids"], batch["attention_mask"])
                nll, n = token_nll(logits, batch["labels"].to(logits.device))  # the one NLL of training too
                total += float(nll)
                count += n
    finally:
        if was_training:
            model_or_fn.train()
    return total, count


def perplexity(model_or_fn, loader: Iterable[dict], max_batches: int | None = None) -> float:
    """exp(token-weighted mean NLL over the reference tokens of ``loader``); inf if it holds no such token."""
    total, count = nll_sum_and_count(model_or_fn, loader, max_batches)
    return math.exp(total / count) if count else math.inf


def greedy_generate(
    model_or_fn,
    tokenizer,
    prompts_ids: Sequence[Sequence[int]],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 16,
) -> list[list[int]]:
    """Greedy continuations (token ids, without the prompt, cut before EOS) of each prompt.

    Prompts are batched only with prompts of the same length, so no padding (and no position-id question)
    arises. A transformers model uses its ``generate`` with the KV cache; a bare forward function is run
    on the whole sequence at every step (slower, same result).
    """
    eos = tokenizer.eos_token_id
    by_len: dict[int, list[int]] = {}
    for i, ids in enumerate(prompts_ids):
        by_len.setdefault(len(ids), []).append(i)
    out: list[list[int]] = [[] for _ in prompts_ids]
    with torch.no_grad():
        for _, members in sorted(by_len.items()):
            for start in range(0, len(members), batch_size):
                chunk = members[start : start + batch_size]
                ids = torch.tensor([list(prompts_ids[i]) for i in chunk], dtype=torch.long)
                new = _greedy_batch(model_or_fn, ids, max_new_tokens, eos)
                for i, row in zip(chunk, new.tolist(), strict=True):
                    out[i] = row[: row.index(eos)] if eos in row else row
    return out


def _greedy_batch(model_or_fn, ids: torch.Tensor, max_new_tokens: int, eos: int) -> torch.Tensor:
    """(B, max_new_tokens or fewer) new tokens; finished rows are filled with EOS."""
    if hasattr(model_or_fn, "generate"):
        ids = ids.to(_device(model_or_fn) or ids.device)
        full = model_or_fn.generate(
            ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=max_new_tokens,
            eos_token_id=eos, pad_token_id=eos,
        )  # fmt: skip
        return full[:, ids.shape[1] :].cpu()
    done = torch.zeros(ids.shape[0], dtype=torch.bool)
    seq = ids
    for _ in range(max_new_tokens):
        nxt = _logits(model_or_fn, seq, torch.ones_like(seq))[:, -1].argmax(-1).cpu()
        nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
        seq = torch.cat([seq, nxt[:, None]], dim=1)
        done |= nxt == eos
        if bool(done.all()):
            break
    return seq[:, ids.shape[1] :]


def corpus_bleu(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], lowercase: bool = False
) -> float:
    """sacrebleu corpus BLEU (0-100) with a variable number of references per hypothesis."""
    import sacrebleu

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    width = max((len(r) for r in references), default=0)
    # sacrebleu takes reference *streams*; a hypothesis with fewer references gets None in the others.
    streams = [[refs[j] if j < len(refs) else None for refs in references] for j in range(width)]
    return float(sacrebleu.corpus_bleu(list(hypotheses), streams, lowercase=lowercase).score)


def rouge_l(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean over hypotheses of the best ROUGE-L F1 against its references, 0-100 (rouge-score)."""
    from rouge_score import rouge_scorer

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if not hypotheses:
        return 0.0
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    best = [
        scorer.score_multi(list(refs), hyp)["rougeL"].fmeasure
        for hyp, refs in zip(hypotheses, references, strict=True)
    ]
    return 100.0 * sum(best) / len(best)


def evaluate_generation(
    model_or_fn,
    tokenizer,
    pairs: Sequence[tuple[str, str]],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    limit: int | None = None,
    max_len: int = 512,
) -> dict:
    """Generate for each distinct MR of ``pairs`` (the first ``limit`` of them) and score against its refs.

    Returns ``{"bleu", "rouge_l", "num_mrs", "samples": [{"mr", "hypothesis", "references"}, ...]}``.
    """
    groups = group_by_mr(pairs)[:limit]
    prompts = [encode_pair(tokenizer, mr, None, max_len=max_len)[0] for mr, _ in groups]
    outputs = greedy_generate(
        model_or_fn, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    hyps = [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in outputs]
    refs = [r for _, r in groups]
    return {
        "bleu": corpus_bleu(hyps, refs),
        "rouge_l": rouge_l(hyps, refs),
        "num_mrs": len(groups),
        "samples": [
            {"mr": mr, "hypothesis": h, "references": r} for (mr, r), h in zip(groups, hyps, strict=True)
        ],
    }
