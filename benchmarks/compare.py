"""Regressions visible: run benchmarks for an earlier commit and for the working tree in one run, print ratios.

The earlier commit REV is checked out into a temporary ``git worktree`` and imported through PYTHONPATH
(which wins over the editable install); the working tree is imported the same way. Each benchmark is the
working tree's script (so both sides measure the same workload), run with ``--json`` in a fresh
interpreter, the two sides alternating ``--repeat`` times on the same machine; if the script cannot run
against REV (it needs a newer API), REV's own copy of the script is tried. Every numeric figure of the
JSON is printed with its median on each side and the ratio working tree / REV. Times shrink and
throughputs grow when things get faster; read each figure by its name.

    python benchmarks/compare.py REV [--bench scale optimize engine radio sweep] [--repeat 1] [--out FILE.md]

``--out`` also writes the figures as markdown tables headed by the date, the machine (CPU model, cores,
platform), the library versions and both commits, so that a figure quoted anywhere points at that file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# name -> (script, arguments before --json); quick settings so that a comparison takes minutes
BENCHMARKS = {
    "scale": ("bench_scale.py", ["--quick"]),
    "optimize": ("bench_optimize.py", ["--quick"]),
    "engine": ("bench_engine.py", ["--repeat", "3"]),
    "radio": ("bench_radio.py", ["--drops", "5"]),
    "sweep": ("bench_sweep.py", ["--executors", "process"]),  # the fig5 sweep, 5,000 tasks
}


def _leaves(value, prefix=""):
    """Numeric leaves of a JSON value as {dotted path: float}; list items keyed by their K (or index)."""
    out = {}
    if isinstance(value, dict):
        for key, v in value.items():
            out.update(_leaves(v, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            tag = f"K={v['K']}" if isinstance(v, dict) and "K" in v else str(i)
            if isinstance(v, dict) and "refine" in v:
                tag += f",refine={v['refine']}"
            out.update(_leaves(v, f"{prefix}[{tag}]"))
    elif isinstance(value, bool):
        pass
    elif isinstance(value, (int, float)):
        out[prefix] = float(value)
    return out


def _run(tree: Path, script: Path, args: list[str]) -> dict | None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        env = dict(os.environ, PYTHONPATH=str(tree), HF_HUB_OFFLINE="1")
        proc = subprocess.run(
            [sys.executable, str(script), *args, "--json", str(out)],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            print(f"    ({script.name} failed against {tree.name}: {tail[0]})", flush=True)
            return None
        return json.loads(out.read_text())


def _median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def compare(rev_tree: Path, name: str, repeat: int) -> list[str]:
    """Run one benchmark on both sides, print its figures and return them as markdown lines."""
    script, args = BENCHMARKS[name]
    mine = ROOT / "benchmarks" / script
    runs: dict[str, list[dict]] = {"rev": [], "work": []}
    for _ in range(repeat):  # alternate, so that drifting load hits both sides alike
        base = _run(rev_tree, mine, args)
        if base is None and (rev_tree / "benchmarks" / script).exists():
            base = _run(rev_tree, rev_tree / "benchmarks" / script, args)
        if base is not None:
            runs["rev"].append(_leaves(base))
        work = _run(ROOT, mine, args)
        if work is not None:
            runs["work"].append(_leaves(work))
    if not runs["rev"] or not runs["work"]:
        print(f"  {name}: n/a (see above)")
        return [f"## {name}", "", f"n/a: `{script}` did not run on both sides.", ""]
    labels = (".K", ".M=N", ".drops", "instances", "link_problems")  # what was run, not how fast
    keys = [
        k
        for k in runs["work"][0]
        if all(k in r for r in runs["rev"] + runs["work"]) and not k.endswith(labels)
    ]
    print(f"  {name} ({script}, {repeat} run(s) each side)")
    print(f"    {'figure':<58} {'REV':>12} {'work':>12} {'work/REV':>9}")
    md = [f"## {name}", "", f"`{script} {' '.join(args)}`, {repeat} run(s) each side, medians.", "",
          "| figure | REV | work | work/REV |", "|---|---|---|---|"]  # fmt: skip
    for key in keys:
        a = _median([r[key] for r in runs["rev"]])
        b = _median([r[key] for r in runs["work"]])
        ratio = f"{b / a:9.3f}" if a else f"{'-':>9}"
        print(f"    {key:<58} {a:>12.4g} {b:>12.4g} {ratio}", flush=True)
        md.append(f"| `{key}` | {a:.4g} | {b:.4g} | {ratio.strip()} |")
    return [*md, ""]


def machine() -> str:
    """CPU model, cores, platform and the libraries that set the speed."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = []
    for module in ("numpy", "simpy", "torch"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            pass
    return (
        f"{cpu}, {os.cpu_count()} logical cores, {platform.platform()}, Python {platform.python_version()}, "
        + (", ".join(versions))
    )


def _head() -> str:
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return sha.stdout.strip() + (" with uncommitted changes" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the earlier commit (any git revision)")
    parser.add_argument("--bench", nargs="+", default=list(BENCHMARKS), choices=list(BENCHMARKS))
    parser.add_argument("--repeat", type=int, default=1, help="runs per side, alternating (medians)")
    parser.add_argument("--out", type=Path, help="also write the figures as markdown, with date and machine")
    args = parser.parse_args()
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", args.rev], capture_output=True, text=True, check=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix=f"fedsim-{sha}-") as tmp:
        tree = Path(tmp) / f"rev-{sha}"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(tree), args.rev],
            check=True,
        )
        try:
            print(f"working tree {ROOT} vs {args.rev} ({sha}), same machine, same run")
            when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            lines = [f"# Benchmarks: working tree ({_head()}) vs {args.rev} ({sha})", "",
                     f"Measured {when} on {machine()}; both sides in one run, alternating. Ratios below 1 "
                     "are faster for times, slower for throughputs (read each figure by its name). Timings "
                     "move with the machine and its load; the ratios are what carry over.", ""]  # fmt: skip
            for name in args.bench:
                lines += compare(tree, name, args.repeat)
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text("\n".join(lines), encoding="utf-8")
                print(f"written: {args.out}")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)


if __name__ == "__main__":
    main()
