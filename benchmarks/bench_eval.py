"""Validation perplexity speed: fedsim's evaluation (the examples of one prompt packed behind a single copy of
it, logits scored only where they predict a label, inference mode) against two baselines measured in the same
run on the same model, examples and batch size: the plain loop (fixed-length batches in index order, no_grad)
and length-sorted batches trimmed to their longest example (fedsim's evaluation before prompt packing). The
three summed NLLs must agree.

    python benchmarks/bench_eval.py [--model smollm2-135m] [--samples 256] [--seq-len 64] [--batch 12]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from fedsim.learn.config import TrainConfig
from fedsim.learn.data.batches import collate
from fedsim.learn.data.prompt_packing import split_example
from fedsim.learn.federated.systems import _eval_nll
from fedsim.learn.setup import load
from fedsim.learn.split.parts import token_nll


def plain_nll(model, dataset, indices, batch_size):
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(indices), batch_size):
            batch = collate(dataset, indices[start : start + batch_size])
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            nll, n = token_nll(logits, batch["labels"])
            total, count = total + float(nll), count + n
    return total, count


def trimmed_nll(model, dataset, indices, batch_size):
    lengths = np.array([int(dataset[int(i)]["attention_mask"].sum()) for i in indices])
    ordered = np.asarray(indices)[np.argsort(lengths, kind="stable")]
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(ordered), batch_size):
            batch = collate(dataset, ordered[start : start + batch_size])
            width = max(int(batch["attention_mask"].sum(dim=1).max()), 1)
            batch = {key: value[:, :width] for key, value in batch.items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            nll, n = token_nll(logits, batch["labels"])
            total, count = total + float(nll), count + n
    return total, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cfg = TrainConfig(model=args.model, seq_len=args.seq_len, eval_samples=args.samples)
    model, _, data = load(cfg, progress=False)
    model.eval()
    indices = np.arange(args.samples)
    forward = lambda ids, mask, position_ids=None: model(  # noqa: E731
        input_ids=ids, attention_mask=mask, position_ids=position_ids
    ).logits
    items = [data.validation[int(i)] for i in indices]  # tokenise once, outside the timings
    lengths = [int(item["attention_mask"].sum()) for item in items]
    prompts = {parts[0] for item in items if (parts := split_example(item)) is not None}
    runs = {
        "plain": lambda: plain_nll(model, data.validation, indices, args.batch),
        "trimmed": lambda: trimmed_nll(model, data.validation, indices, args.batch),
        "packed": lambda: _eval_nll(forward, model.config, data.validation, indices, args.batch),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    nll: dict[str, tuple[float, int]] = {}
    for _ in range(args.repeat):  # interleaved, so that a slow spell of a shared machine hits all three
        for name, run in runs.items():
            t = time.perf_counter()
            nll[name] = run()
            times[name].append(time.perf_counter() - t)
    assert len({n for _, n in nll.values()}) == 1, nll
    rel = {name: abs(v[0] - nll["plain"][0]) / abs(nll["plain"][0]) for name, v in nll.items()}
    best = {k: min(v) for k, v in times.items()}
    print(f"{args.model}, {args.samples} validation examples ({len(prompts)} distinct prompts), L = {args.seq_len} "
          f"(mean real length {np.mean(lengths):.1f}), batch {args.batch}, torch threads "
          f"{torch.get_num_threads()}, best of {args.repeat}")  # fmt: skip
    print(f"plain (fixed length, index order): {best['plain']:.2f} s")
    print(f"trimmed (length-sorted, trimmed, inference mode): {best['trimmed']:.2f} s, "
          f"relative NLL difference {rel['trimmed']:.1e}")  # fmt: skip
    print(f"packed (fedsim: shared prompts packed, inference mode): {best['packed']:.2f} s, "
          f"relative NLL difference {rel['packed']:.1e}")  # fmt: skip
    print(f"speed-up of packed: {best['plain'] / best['packed']:.2f}x over plain, "
          f"{best['trimmed'] / best['packed']:.2f}x over trimmed; PPL {math.exp(nll['packed'][0] / nll['packed'][1]):.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
