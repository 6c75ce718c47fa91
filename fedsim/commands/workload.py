"""``fedsim workload``: per-layer FLOPs and bits of a model, from its config (no weights)."""

from __future__ import annotations

import argparse
import json

from fedsim.core.workload import BITS, MODES, Workload, parameter_counts, workload_from_config
from fedsim.errors import InputError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "workload",
        help="per-layer FLOPs and bits of a model, from its config (no weights)",
        description="Print the per-sample workload of each split-able block, the head and the totals.",
    )
    parser.add_argument(
        "--model",
        default="gpt2",
        help="shipped name (gpt2, gpt2-medium, smollm2-135m, opt-125m), hub-id alias, config.json or folder",
    )
    parser.add_argument("--seq-len", type=int, default=512, help="tokens per sample L (default 512)")
    parser.add_argument("--bits", type=int, default=32, help=f"bits per value on the wire, one of {BITS}")
    parser.add_argument("--mode", default="analytic", help=f"one of {MODES} (default analytic)")
    parser.add_argument("--targets", default="q,v", help="comma-separated LoRA targets (default q,v)")
    parser.add_argument(
        "--bwd-factor", type=float, default=2.0, help="backward/forward FLOP ratio (default 2)"
    )
    parser.add_argument(
        "--rank", type=int, default=1, help="LoRA rank the LoRA columns are shown for (default 1)"
    )
    parser.add_argument("--json", action="store_true", help="print a machine-readable JSON dict instead")
    parser.set_defaults(func=run)


def summary(workload: Workload, rank: int, params: dict) -> dict:
    """Everything the command prints, as a JSON-able dict (FLOPs, bits per sample)."""
    lora_fwd = rank * workload.lora_fwd_flops_per_rank
    lora_bwd = rank * workload.lora_bwd_flops_per_rank
    return {
        "workload": workload.to_dict(),
        "rank": rank,
        "parameters": params,
        "totals": {
            "fwd_flops": float(workload.fwd_flops.sum() + workload.head_fwd_flops),
            "bwd_flops": float(workload.bwd_flops.sum() + workload.head_bwd_flops),
            "lora_fwd_flops": float(lora_fwd.sum()),
            "lora_bwd_flops": float(lora_bwd.sum()),
            "lora_bits_all_blocks": float(rank * workload.lora_bits_per_rank.sum()),
        },
    }


def _table(workload: Workload, rank: int, header: str) -> str:
    lines = [
        header,
        f"{'block':>5} {'fwd GFLOP':>10} {'bwd GFLOP':>10} {'LoRA fwd MFLOP':>15} "
        f"{'LoRA bwd MFLOP':>15} {'act Mbit':>9} {'LoRA kbit':>10}",
    ]
    for j in range(workload.num_layers):
        lines.append(
            f"{j + 1:>5} {workload.fwd_flops[j] / 1e9:>10.3f} {workload.bwd_flops[j] / 1e9:>10.3f} "
            f"{rank * workload.lora_fwd_flops_per_rank[j] / 1e6:>15.3f} "
            f"{rank * workload.lora_bwd_flops_per_rank[j] / 1e6:>15.3f} "
            f"{workload.act_bits[j] / 1e6:>9.3f} {rank * workload.lora_bits_per_rank[j] / 1e3:>10.3f}"
        )
    lines.append(f"{'head':>5} {workload.head_fwd_flops / 1e9:>10.3f} {workload.head_bwd_flops / 1e9:>10.3f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from fedsim.core.model_configs import load_model_config

    if args.rank < 1:
        raise InputError(f"--rank must be >= 1, got {args.rank}")
    if args.seq_len < 1:
        raise InputError(f"--seq-len must be > 0, got {args.seq_len}")
    if args.bits not in BITS:
        raise InputError(f"--bits must be one of {BITS}, got {args.bits}")
    config = load_model_config(args.model)
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    workload = workload_from_config(
        config,
        seq_len=args.seq_len,
        bits=args.bits,
        mode=args.mode,
        lora_targets=targets,
        bwd_factor=args.bwd_factor,
        name=args.model,
    )
    info = summary(workload, args.rank, parameter_counts(config))
    info.update(mode=args.mode, bits=args.bits, lora_targets=list(targets), bwd_factor=args.bwd_factor)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    header = (
        f"{args.model}: L={workload.seq_len}, {args.bits}-bit, mode={args.mode}, LoRA on "
        f"{'+'.join(targets)} at rank {args.rank}, bwd = {args.bwd_factor:g} x fwd (per sample)"
    )
    print(_table(workload, args.rank, header))
    t = info["totals"]
    print(
        f"total  fwd {t['fwd_flops'] / 1e9:.3f} GFLOP, bwd {t['bwd_flops'] / 1e9:.3f} GFLOP, "
        f"LoRA fwd {t['lora_fwd_flops'] / 1e6:.3f} MFLOP, LoRA upload (all blocks) "
        f"{t['lora_bits_all_blocks'] / 1e3:.3f} kbit"
    )
    p = info["parameters"]
    print(f"params {p['total']:,} frozen ({p['num_layers']} blocks: MHA {p['mha']:,}, FFN {p['ffn']:,} each)")
    return 0
