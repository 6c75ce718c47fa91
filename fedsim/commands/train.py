"""``fedsim train``: real split-federated (and centralized) LoRA fine-tuning on E2E.

Writes one convergence record per (model, scheme, rank) to ``--records-dir`` and its curve as CSV to
``--out``; with ``--table`` also a Table IV style comparison (centralized vs split-federated PPL per rank, and
test PPL, BLEU and ROUGE-L on the E2E test MRs when measured).
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
from pathlib import Path

from fedsim.atomic import atomic_path, atomic_write_text
from fedsim.errors import InputError
from fedsim.learn.config import TrainConfig
from fedsim.learn.records import ConvergenceRecord

# CLI flag -> TrainConfig field (flags mirror the config so a scenario and the CLI mean the same thing)
_FIELDS = {
    "model": "model", "clients": "num_clients", "batch_size": "batch_size", "seq_len": "seq_len",
    "local_iterations": "local_iterations", "steps": "steps", "alpha": "lora_alpha", "dropout": "lora_dropout",
    "cut": "cut", "lr": "lr", "weight_decay": "weight_decay", "eval_every": "eval_every",
    "eval_samples": "eval_samples", "train_samples": "train_samples", "target_ppl": "target_ppl",
    "test_samples": "test_samples", "generate_mrs": "generate_mrs", "max_new_tokens": "max_new_tokens",
    "partition": "partition", "partition_attribute": "partition_attribute",
    "dirichlet_alpha": "dirichlet_alpha", "data": "data_path", "seed": "seed", "device": "device", "checkpoint_every": "checkpoint_every",
    "alpha_policy": "lora_alpha_policy", "lr_schedule": "lr_schedule", "warmup_steps": "warmup_steps",
}  # fmt: skip


_CHOICE_FIELDS = ("partition", "lora_alpha_policy", "lr_schedule")


def _ranks(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_parser(subparsers) -> None:
    d = TrainConfig.model_fields
    p = subparsers.add_parser(
        "train", help="real split-federated LoRA fine-tuning on E2E; writes convergence records",
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )  # fmt: skip
    p.add_argument("--model", default=d["model"].default, help=d["model"].description)
    p.add_argument(
        "--scheme",
        choices=["split_fed", "centralized", "both"],
        default="split_fed",
        help="which system to train; both = centralized and split_fed (Table IV)",
    )
    p.add_argument(
        "--rank",
        "--ranks",
        dest="ranks",
        type=_ranks,
        default=[d["rank"].default],
        help="LoRA rank(s), comma-separated: one run per rank",
    )
    p.add_argument("--clients", type=int, default=d["num_clients"].default, help=d["num_clients"].description)
    for flag, field in _FIELDS.items():
        if flag in ("model", "clients"):
            continue
        info = d[field]
        kind = str if field in ("partition", "partition_attribute", "data_path") else type(info.default)
        choices = getattr(info.annotation, "__args__", None) if field in _CHOICE_FIELDS else None
        if info.default is None or kind is type(None):
            kind = float if field == "target_ppl" else (str if field == "data_path" else int)
        p.add_argument(
            f"--{flag.replace('_', '-')}", dest=flag, type=kind, default=info.default, help=info.description,
            choices=choices,
        )  # fmt: skip
    p.add_argument("--out", default="results/train", help="folder for curve CSVs, tables and checkpoints")
    p.add_argument("--records-dir", default="results/records", help="folder for the convergence records")
    p.add_argument(
        "--cache-dir",
        default=None,
        help="model cache folder (default ~/.cache/fedsim/models), as in fedsim models",
    )
    p.add_argument(
        "--table", action="store_true",
        help="write Table IV (final val PPL, test PPL, BLEU, ROUGE-L per scheme and rank)",
    )  # fmt: skip
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (1 is often fastest on a shared, oversubscribed machine)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace, scheme: str, rank: int, out: Path) -> TrainConfig:
    values = {field: getattr(args, flag) for flag, field in _FIELDS.items()}
    values.update(scheme=scheme, rank=rank)
    if args.checkpoint_every:
        values["checkpoint_path"] = str(out / f"{Path(args.model).name}_{scheme}_r{rank}.pt")
    return TrainConfig.parse(values)


def run(args: argparse.Namespace) -> int:
    """Train every (rank, scheme); SIGINT / SIGTERM stop it (exit 130 / 143) keeping the last checkpoint."""
    from fedsim.interrupt import Interrupted, interruptible

    state: dict = {"cfg": None}
    with interruptible():
        try:
            return _run(args, state)
        except Interrupted as stop:
            print(_resume_hint(stop, state["cfg"]), file=sys.stderr)
            return stop.exit_code


def _resume_hint(stop, cfg: TrainConfig | None) -> str:
    """The line an interrupted ``fedsim train`` prints: what is kept and how to go on."""
    argv = sys.argv[2:] if sys.argv[1:2] == ["train"] else sys.argv[1:]
    again = "fedsim train " + shlex.join(argv)
    head = f"fedsim train: interrupted by {stop.name}"
    if cfg is None or not cfg.checkpoint_path:
        return f"{head}; no checkpoint (add --checkpoint-every N to resume a run later)"
    ckpt = Path(cfg.checkpoint_path)
    if not ckpt.is_file():
        return f"{head} before the first checkpoint of {cfg.scheme} r={cfg.rank}; rerun `{again}` to start it again"
    return f"{head}; last checkpoint {ckpt} kept; rerun `{again}` (same options) to resume"


def _run(args: argparse.Namespace, state: dict) -> int:
    from fedsim.learn.loading.models import load_model
    from fedsim.learn.setup import prepare_data
    from fedsim.learn.train import train

    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads: must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    schemes = ["split_fed", "centralized"] if args.scheme == "both" else [args.scheme]
    if not args.ranks or min(args.ranks) < 1:
        raise InputError(f"--rank: LoRA ranks must be integers >= 1, got {args.ranks}")
    out, records_dir = Path(args.out), Path(args.records_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = "fedsim train " + shlex.join(sys.argv[2:] if sys.argv[1:2] == ["train"] else sys.argv[1:])
    progress = not args.no_progress
    data, finals = None, {}
    for rank in args.ranks:
        for scheme in schemes:
            cfg = state["cfg"] = _config(args, scheme, rank, out)
            model, tokenizer = load_model(
                cfg.model, args.cache_dir, progress=progress, seed=cfg.seed
            )  # fresh: peft wraps in place
            data = data or prepare_data(cfg, tokenizer)
            record = train(cfg, model, data, progress=progress, source=source)
            record.model = Path(cfg.model).name
            record.save(records_dir / record.file_name())
            _write_curve(out / record.file_name().replace(".json", "_curve.csv"), record.curve)
            finals[(scheme, rank)] = _table_values(record)
            extra = "".join(
                f", {_LABELS[k]} {v:.3f}" for k, v in finals[(scheme, rank)].items() if k != "val_ppl"
            )
            print(f"{scheme} r={rank}: val PPL {record.curve[0]['val_ppl']:.3f} -> "
                  f"{finals[(scheme, rank)]['val_ppl']:.3f}{extra}, E(r) = {record.rounds_to_target}; "
                  f"record {records_dir / record.file_name()}")  # fmt: skip
    if args.table:  # schemes/ranks not trained in this invocation come from their records, if present
        for scheme in ("split_fed", "centralized"):
            for rank in args.ranks:
                path = records_dir / f"{Path(args.model).name}_{scheme}_r{rank}.json"
                if (scheme, rank) not in finals and path.is_file():
                    finals[(scheme, rank)] = _table_values(ConvergenceRecord.load(path))
        columns = [s for s in ("centralized", "split_fed") if any((s, r) in finals for r in args.ranks)]
        _write_table(out / f"{Path(args.model).name}_table_iv", args.ranks, columns, finals)
    return 0


def _write_curve(path: Path, curve: list[dict]) -> None:
    keys = ["step", "round", "train_loss", "val_ppl", "sim_time_s"]
    keys = [k for k in keys if any(k in row for row in curve)]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(curve)


# Table IV columns per scheme, in order: record value key -> header label
_LABELS = {"val_ppl": "val PPL", "test_ppl": "test PPL", "bleu": "BLEU", "rouge_l": "ROUGE-L"}


def _table_values(record: ConvergenceRecord) -> dict:
    """Final val PPL (last curve row) and, when the record has them, test PPL, BLEU and ROUGE-L."""
    values = {"val_ppl": record.curve[-1].get("val_ppl") if record.curve else None}
    final = record.final or {}
    values.update({k: float(final[k]) for k in ("test_ppl", "bleu", "rouge_l") if final.get(k) is not None})
    return values


def _write_table(stem: Path, ranks: list[int], schemes: list[str], finals: dict) -> None:
    """Table IV: one row per rank; per scheme the final val PPL and (when any run measured them) test PPL,
    BLEU and ROUGE-L."""
    columns = [
        (s, key) for key in _LABELS for s in schemes  # metric-major: schemes side by side per metric
        if any(finals.get((s, r), {}).get(key) is not None for r in ranks)
    ]  # fmt: skip
    rows = [[rank] + [finals.get((s, rank), {}).get(key) for s, key in columns] for rank in ranks]
    with atomic_path(stem.with_suffix(".csv")) as tmp, tmp.open("w", newline="") as fh:
        csv.writer(fh).writerows([["rank"] + [f"{s}_{key}" for s, key in columns]] + rows)
    import pandas as pd

    from fedsim.experiments.montecarlo.summary import to_markdown

    cells = pd.DataFrame(
        [[str(r[0])] + ["-" if v is None else f"{v:.3f}" for v in r[1:]] for r in rows],
        columns=["rank"] + [f"{s} {_LABELS[key]}" for s, key in columns],
    )
    text = to_markdown(cells, align=["right"] * cells.shape[1])
    atomic_write_text(stem.with_suffix(".md"), text + "\n")
    print(text)
