"""Validation perplexity speed: fedsim's evaluation (length-sorted batches trimmed to their longest example,
inference mode) against the plain loop (fixed-length batches in index order, no_grad), measured in the same
run on the same model, examples and batch size; the two summed NLLs must agree.

    python benchmarks/bench_eval.py [--model smollm2-135m] [--samples 256] [--seq-len 64] [--batch 16]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from fedsim.learn.config import TrainConfig
from fedsim.learn.data.batches import collate
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cfg = TrainConfig(model=args.model, seq_len=args.seq_len, eval_samples=args.samples)
    model, _, data = load(cfg, progress=False)
    model.eval()
    indices = np.arange(args.samples)
    forward = lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits  # noqa: E731
    lengths = [int(data.validation[int(i)]["attention_mask"].sum()) for i in indices]  # tokenise once
    times = {"plain": [], "fedsim": []}
    for _ in range(args.repeat):
        t = time.perf_counter()
        plain = plain_nll(model, data.validation, indices, args.batch)
        times["plain"].append(time.perf_counter() - t)
        t = time.perf_counter()
        fast = _eval_nll(forward, data.validation, indices, args.batch)
        times["fedsim"].append(time.perf_counter() - t)
    assert plain[1] == fast[1]
    rel = abs(plain[0] - fast[0]) / abs(plain[0])
    best = {k: min(v) for k, v in times.items()}
    print(f"{args.model}, {args.samples} validation examples, L = {args.seq_len} (mean real length "
          f"{np.mean(lengths):.1f}), batch {args.batch}, torch threads {torch.get_num_threads()}, best of {args.repeat}")  # fmt: skip
    print(f"plain (fixed length, index order): {best['plain']:.2f} s")
    print(f"fedsim (length-sorted, trimmed, inference mode): {best['fedsim']:.2f} s")
    print(f"speed-up: {best['plain'] / best['fedsim']:.2f}x; PPL {math.exp(fast[0] / fast[1]):.4f}, "
          f"relative NLL difference {rel:.1e}")


if __name__ == "__main__":
    main()
