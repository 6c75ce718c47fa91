"""``fedsim evaluate RESULTS_DIR``: a convergence study's finished runs on the whole validation split, paired."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a study's final checkpoints on the whole validation split (paired split-fed vs centralized)",
        description="Evaluate every finished run of a convergence study (its final checkpoint in "
        "RESULTS_DIR/checkpoints/) on every validation example, per example, and compare split-fed with "
        "centralized, and each rank with the lowest, on the same examples (95 % bootstrap CI over the MRs). "
        "Writes RESULTS_DIR/precise/ and RESULTS_DIR/tables/precise_eval.{csv,md}, precise_gap.csv, "
        "precise_rank.csv; reruns reuse finished runs.",
    )
    parser.add_argument("results_dir", help="a study's results folder, e.g. results/convergence_long")
    parser.add_argument(
        "--samples", type=int, default=None, help="the first N validation examples (default: all 4,672)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N or auto (default: the device each run trained on)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fedsim.api import evaluate_study
    from fedsim.learn.limits import purpose

    with purpose("evaluation"):  # each run's memory is checked as scoring (no gradients), not training
        lines = evaluate_study(args.results_dir, samples=args.samples, threads=args.threads,
                               device=args.device, progress=not args.no_progress)  # fmt: skip
    print("\n".join(lines))
    return 0
