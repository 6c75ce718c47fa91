"""The README and the MkDocs site: a short front page whose commands are CI's, links that resolve, a nav
whose pages exist, a docs extra whose packages are pinned, and (with the docs extra) a strict build."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
GENERATED_AT_BUILD = {"reference/cli.md", "reference/scenario-keys.md"}  # docs/gen_pages.py


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def test_readme_is_short():
    assert len(README.splitlines()) <= 170


def test_readme_test_command_is_the_one_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    blocks = [b.strip() for b in _bash_blocks(README)]
    test_command = next(b for b in blocks if 'pytest' in b and ".[test]" in b)
    assert test_command in ci.splitlines()
    assert any(b.endswith("fedsim run scenarios/quickstart.toml") for b in blocks)


def test_readme_keeps_the_reproduces_pointer_and_the_paragraph_lives_in_the_docs():
    assert "What \"reproduces\" means" in README and "docs/getting-started.md#what-reproduces-means" in README
    start = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    assert "## What \"reproduces\" means" in start and "ATEN_CPU_CAPABILITY=default" in start


def test_readme_quotes_no_measured_time():
    assert not re.search(r"\b\d+(\.\d+)? ?(s|min|h)\b", README)


def test_readme_links_resolve():
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README):
        if target.startswith("http"):
            continue
        path = ROOT / target
        rel = path.relative_to(ROOT / "docs").as_posix() if path.is_relative_to(ROOT / "docs") else None
        assert path.exists() or rel in GENERATED_AT_BUILD, target


def test_the_api_example_is_the_same_in_readme_and_docs():
    docs = (ROOT / "docs" / "guides" / "extending.md").read_text(encoding="utf-8")
    code = re.compile(r"```python\n(.*?)```", re.S)
    assert code.search(README).group(1) == code.search(docs).group(1)


def _nav_pages() -> list[str]:
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text.split("\nnav:", 1)[1]
    return re.findall(r"([\w/.-]+\.md)\s*$", nav, re.M)


def test_every_nav_page_exists():
    pages = _nav_pages()
    assert "results/index.md" in pages and "model.md" in pages and "reference/api.md" in pages
    for page in pages:
        assert (ROOT / "docs" / page).is_file() or page in GENERATED_AT_BUILD, page


def test_docs_extra_is_pinned():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    extra = re.search(r"\ndocs = \[(.*?)\]\n", pyproject, re.S).group(1)
    names = re.findall(r'"([A-Za-z0-9_.-]+)', extra)
    pins = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
        if "==" in line
    }
    assert {"mkdocs", "mkdocs-material", "mkdocstrings", "mkdocs-gen-files"} <= set(names)
    for name in names + ["mkdocstrings-python"]:
        assert name.lower() in pins, name
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()


def test_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocs_gen_files")
    pytest.importorskip("mkdocstrings_handlers.python")
    env = {"NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env}, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    cli = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    from fedsim.cli import COMMANDS

    for command in COMMANDS:
        assert f"fedsim {command}" in cli, command
    keys = (tmp_path / "site" / "reference" / "scenario-keys" / "index.html").read_text(encoding="utf-8")
    from fedsim.scenario.describe import describe

    for key, kind, _, _ in describe():
        if kind != "section":
            assert key in keys, key
    assert (tmp_path / "site" / "results" / "figures" / "fig5_bandwidth" / "delay_vs_axis.png").is_file()
