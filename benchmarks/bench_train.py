"""Split-LoRA training overhead and client-side memory.

1. Time: one split-federated local iteration (K clients FP -> main server FP/BP on the concatenated
   activations -> K client BP, each side its own AdamW) vs one step of the unsplit peft LoRA model on the
   same K*b samples (forward, loss, backward, AdamW). Interleaved repetitions, median ratio; target <= 1.10.
2. Memory: client-side parameters (embeddings + blocks 1..c + client LoRA) and the activations the client
   keeps for its backward pass (saved tensors, counted once per storage) vs the whole model's.

    python benchmarks/bench_train.py [--model tiny-gpt2|smollm2-135m|...] [--cut 2] [--repeat 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fedsim.learn.config import TrainConfig
from fedsim.learn.federated.systems import build_system
from fedsim.learn.loading.models import load_model
from fedsim.learn.setup import prepare_data
from fedsim.learn.split.parts import token_nll


def saved_bytes(fn) -> int:
    """Bytes of the distinct tensor storages autograd saves for backward while ``fn()`` runs."""
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def param_bytes(module) -> int:
    return sum(p.numel() * p.element_size() for p in {id(p): p for p in module.parameters()}.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-gpt2")
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--cut", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    common = dict(model=args.model, num_clients=args.clients, batch_size=args.batch_size, seq_len=args.seq_len,
                  rank=args.rank, cut=args.cut, train_samples=2000)  # fmt: skip
    split_cfg = TrainConfig(scheme="split_fed", **common)
    model, tok = load_model(args.model, progress=False)
    data = prepare_data(split_cfg, tok)
    split = build_system(model, split_cfg, data.train, partition=data.partition)
    central = build_system(load_model(args.model, progress=False)[0], split_cfg.model_copy(update={"scheme": "centralized"}),
                           data.train, partition=data.partition)  # fmt: skip

    # --- time: interleaved, after one warm-up each ---
    split.local_iteration(), central.local_iteration()
    ratios, t_split, t_central = [], [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        split.local_iteration()
        t1 = time.perf_counter()
        central.local_iteration()
        t2 = time.perf_counter()
        t_split.append(t1 - t0), t_central.append(t2 - t1), ratios.append((t1 - t0) / (t2 - t1))
    print(
        f"model {args.model}: K={args.clients} b={args.batch_size} L={args.seq_len} r={args.rank} c={args.cut}"
    )
    print(f"split iteration   median {statistics.median(t_split):.4f} s")
    print(f"unsplit peft step median {statistics.median(t_central):.4f} s")
    print(f"ratio split/unsplit median {statistics.median(ratios):.3f} (target <= 1.10)")

    # --- memory: one client's part vs the whole model, on one client's batch of b samples ---
    client = split.clients[0]
    batch = client.stream.next_batch()
    act_client = saved_bytes(lambda: client.part(batch["input_ids"], batch["attention_mask"]))
    whole = central.model

    def whole_fwd():
        logits = whole(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        token_nll(logits, batch["labels"])

    act_whole = saved_bytes(whole_fwd)
    p_client, p_whole = param_bytes(client.part), param_bytes(whole)
    mib = 2**20
    print(f"client params {p_client / mib:.1f} MiB of {p_whole / mib:.1f} MiB ({p_client / p_whole:.1%})")
    print(f"client saved activations {act_client / mib:.1f} MiB of {act_whole / mib:.1f} MiB "
          f"({act_client / act_whole:.1%}) per b={args.batch_size} samples")  # fmt: skip
    total_c, total_w = p_client + act_client, p_whole + act_whole
    print(
        f"client total {total_c / mib:.1f} MiB vs whole model {total_w / mib:.1f} MiB ({total_c / total_w:.1%})"
    )


if __name__ == "__main__":
    main()
