"""``fedsim report [--results DIR] [--out DIR] [--check]``: the documentation's results pages
(``docs/results/*.md``), generated from the committed results folders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedsim.errors import InputError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="generate the docs' results pages from the committed results folders",
        description="Write docs/results/*.md (every table and number on them) from the committed results/ "
        "folders: summaries, study records and tables, SplitFT arms, with their sample counts and seeds. "
        "--check writes nothing and fails if a committed page differs.",
    )
    parser.add_argument("--results", default="results", help="the results folder to read (default: results)")
    parser.add_argument("--out", default="docs/results", help="where the pages go (default: docs/results)")
    parser.add_argument(
        "--check", action="store_true", help="compare with the pages in --out instead of writing (exit 1 if any differ)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fedsim import report

    if not Path(args.results).is_dir():
        raise InputError(f"{args.results}: no such results folder")
    if args.check:
        stale = report.differences(args.results, args.out)
        for name in stale:
            print(f"{Path(args.out) / name}: differs from what {args.results}/ gives; run `fedsim report`",
                  file=sys.stderr)  # fmt: skip
        if not stale:
            print(f"{args.out}: every page matches {args.results}/")
        return 1 if stale else 0
    for path in report.write(args.results, args.out):
        print(path)
    return 0
