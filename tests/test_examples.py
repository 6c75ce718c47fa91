"""Every script in examples/ runs on a small setting and prints exactly its saved expected output
(examples/expected/<name>.txt); the README's API example runs too."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest

from fedsim.optimize.schemes import unregister_scheme
from fedsim.radio import unregister_radio

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.py"))


def test_every_example_has_expected_output():
    assert EXAMPLES == ["notebook", "own_scheme", "path_loss"]
    assert {p.stem for p in (ROOT / "examples" / "expected").glob("*.txt")} == set(EXAMPLES)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_prints_its_expected_output(name, tmp_path, monkeypatch, capsys):
    # Prepare: the setting the expected output was made with (its docstring says so)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--drops", "2", "--out", str(tmp_path)])
    # Execute
    try:
        runpy.run_path(str(ROOT / "examples" / f"{name}.py"), run_name="__main__")
    finally:
        unregister_scheme("equal")
        unregister_radio("logdist")
    # Assert
    out = capsys.readouterr().out
    assert out == (ROOT / "examples" / "expected" / f"{name}.txt").read_text(encoding="utf-8")
    if name == "notebook":
        assert (tmp_path / "my_breakdown.png").stat().st_size > 10_000


def test_readme_api_example_runs(tmp_path, monkeypatch, capsys):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(ROOT)
    code = code.replace('"results/my_fig5"', repr(str(tmp_path / "my_fig5")))
    exec(compile(code, "README.md", "exec"), {})
    assert "proposed" in capsys.readouterr().out
