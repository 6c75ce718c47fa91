"""How many validation examples make the evaluation noise small: the relative gap between the perplexities of
two halves of the first N E2E validation examples, for growing N, with the model as loaded (before
fine-tuning) and after a short fine-tuning. Two splits: the interleaved halves of ``eval_halves`` (even and
odd positions) and random halves that keep each MR's references together (mean over 200 seeded splits).
Two subset orders: ``first`` (the first N examples of the file, as the rank study evaluates: about 8
references of each of N/8 MRs) and ``mr_spread`` (one reference of every MR before any MR's second one, so
the first N examples hold min(N, 547) MRs).

N runs up to the whole split (4,672 examples, 547 MRs) unless ``--max-n`` stops it; each example is scored
once per model state (``example_nll``: shared-prompt packing, exact per example).

Writes ``results/rank_study/eval_noise.csv`` (one row per order, model state and N, with ``split_mrs``, the
number of MRs in the whole split); ``fedsim report`` reads it into the rank-study page.

    python benchmarks/eval_noise.py [--model smollm2-135m] [--max-n N] [--seq-len 64] [--steps 24]
        [--order first mr_spread]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd

from fedsim.atomic import atomic_write_csv
from fedsim.learn.config import TrainConfig
from fedsim.learn.data.e2e import mr_spread_order
from fedsim.learn.federated.systems import build_system
from fedsim.learn.setup import load

SIZES = (64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)


def gaps(nll: np.ndarray, count: np.ndarray, mrs: list[str], state: str, order: str,
         splits: int = 200) -> list[dict]:  # fmt: skip
    """Per N: the parity halves' gap (``eval_halves``) and the mean gap of ``splits`` random halves that keep
    each MR's references together (seeded), the noise a subset of N examples really has."""
    rows = []
    rng = np.random.default_rng(0)
    for n in sorted({s for s in SIZES if s < len(nll)} | {len(nll)}):
        a = math.exp(nll[:n:2].sum() / count[:n:2].sum())
        b = math.exp(nll[1:n:2].sum() / count[1:n:2].sum())
        pooled = math.exp(nll[:n].sum() / count[:n].sum())
        groups = {}
        for i, mr in enumerate(mrs[:n]):
            groups.setdefault(mr, []).append(i)
        members = list(groups.values())
        mr_gaps = []
        for _ in range(splits):
            pick = rng.permutation(len(members))[: len(members) // 2]
            half = np.zeros(n, dtype=bool)
            for g in pick:
                half[members[g]] = True
            pa = math.exp(nll[:n][half].sum() / count[:n][half].sum())
            pb = math.exp(nll[:n][~half].sum() / count[:n][~half].sum())
            mr_gaps.append(100 * abs(pa - pb) / pooled)
        rows.append({"order": order, "model_state": state, "examples": n, "mrs": len(members), "val_ppl": pooled,
                     "val_ppl_a": a, "val_ppl_b": b, "halves_gap_pct": 100 * abs(a - b) / pooled,
                     "mr_halves_gap_pct": float(np.mean(mr_gaps))})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--max-n", type=int, default=None, help="largest N (default: the whole split)")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument(
        "--steps", type=int, default=24, help="fine-tuning steps before the second measurement"
    )
    parser.add_argument("--order", nargs="+", choices=("first", "mr_spread"), default=["first", "mr_spread"])
    parser.add_argument("--out", type=Path, default=Path("results/rank_study/eval_noise.csv"))
    args = parser.parse_args()
    cfg = TrainConfig(model=args.model, seq_len=args.seq_len, num_clients=2, batch_size=4, local_iterations=2,
                      steps=args.steps, lr=1e-3, eval_samples=args.max_n, test_samples=0, generate_mrs=0,
                      train_samples=2000, seed=0)  # fmt: skip
    model, _, data = load(cfg, progress=False)
    system = build_system(model, cfg, data.train, partition=data.partition)
    all_mrs = [mr for mr, _ in data.validation.pairs]
    orders = {
        "first": np.arange(len(all_mrs)),
        "mr_spread": np.asarray(mr_spread_order(data.validation.pairs)),
    }
    orders = {name: orders[name][: args.max_n] for name in args.order}
    scored = np.unique(np.concatenate(list(orders.values())))  # each example is scored once per state
    rows = []

    def measure(state: str) -> None:
        nll, count = system.example_nll(data.validation, scored, batch_size=16, progress=True)
        at = {int(i): k for k, i in enumerate(scored)}
        for name, order in orders.items():
            pick = [at[int(i)] for i in order]
            rows.extend(gaps(nll[pick], count[pick], [all_mrs[i] for i in order], state, name))

    measure("pre-trained")
    for _ in range(args.steps):
        system.local_iteration()
        if (_ + 1) % cfg.local_iterations == 0:
            system.aggregate()
    measure(f"after {args.steps} steps")
    table = pd.DataFrame(rows).assign(split_mrs=len(set(all_mrs)))  # how many MRs the whole split has
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(args.out, table)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
