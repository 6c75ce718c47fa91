"""The layers of DESIGN.md hold: imports run one way, downward, the four peers (radio, optimize, engine,
learn) never import each other, and no module imports itself back through others (no cycle)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_linter_contracts_of_pyproject_are_kept():
    done = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v), on.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles():
    graph = grimp.build_graph("fedsim", "channel", exclude_type_checking_imports=True)
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    pkg = tmp_path / "cyc"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cyc import b\n")
    (pkg / "b.py").write_text("from cyc import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _cycles(grimp.build_graph("cyc")) == [["cyc.a", "cyc.b"]]


def _wide_positional_functions() -> list[str]:
    """Public functions and methods (outside private classes) with more than three positional parameters."""
    import ast

    found = []
    for path in sorted((ROOT / "fedsim").rglob("*.py")) + sorted((ROOT / "channel").rglob("*.py")):
        tree, where = ast.parse(path.read_text()), path.relative_to(ROOT)

        def visit(node, private_class=False, where=where):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.ClassDef):
                    visit(child, child.name.startswith("_"), where)
                elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    params = [a.arg for a in child.args.posonlyargs + child.args.args]
                    params = params[1:] if params[:1] in (["self"], ["cls"]) else params
                    if not child.name.startswith("_") and not private_class and len(params) > 3:
                        found.append(f"{where}:{child.lineno} {child.name}")

        visit(tree)
    return found


def test_public_functions_take_at_most_three_positional_arguments():
    assert _wide_positional_functions() == []
