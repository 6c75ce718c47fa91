"""Pages generated when the site is built (mkdocs-gen-files), so they can never drift from the code:

- ``reference/cli.md``: every ``fedsim`` command's ``--help``, from the argparse parser itself;
- ``reference/scenario-keys.md``: every scenario key with type, default and help, from the pydantic models;
- ``results/figures/<run>/<figure>.png``: the committed figures that the results pages show.

The results pages themselves are committed (``fedsim report`` writes them; a test checks them).
"""

from __future__ import annotations

import os
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parent.parent
os.environ["COLUMNS"] = "100"  # argparse wraps --help to the terminal: the same width on every machine


def cli_page() -> str:
    from fedsim.cli import build_parser

    parser = build_parser()
    parser.prog = "fedsim"
    sub = next(a for a in parser._actions if a.dest == "command")
    lines = ["# Command line", "",
             "Generated from the `fedsim` argparse parser when the site is built: each command's `--help`. "
             "The commands are thin layers over [the Python API](api.md).", "",
             "```text", parser.format_help().rstrip(), "```", ""]  # fmt: skip
    for name, command in sub.choices.items():
        lines += [f"## fedsim {name}", "", "```text", command.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _prose(text: str) -> str:
    """Help text in a table cell: ``[m]`` and the like are units, not link references."""
    return _cell(text).replace("[", "\\[")


def keys_page() -> str:
    from fedsim.scenario.describe import describe

    lines = ["# Every scenario key", "",
             "Generated from the scenario's pydantic models (`fedsim/scenario/`) when the site is built; "
             "`fedsim validate --keys` prints the same list. Any key can be set on the command line with "
             "`--set KEY=VALUE` (the value is read as TOML and validated like the file). How sections fit "
             "together: [Writing a scenario](../scenarios.md).", ""]  # fmt: skip
    header = ["| key | type | default | description |", "|---|---|---|---|"]
    top = []
    for key, kind, default, help_text in describe():
        if kind == "section":
            lines += ["", f"## `{key}`", "", _prose(help_text), "", *header]
        elif "." not in key:
            top.append(f"| `{key}` | `{_cell(kind)}` | `{_cell(default)}` | {_prose(help_text)} |")
        else:
            lines.append(f"| `{key}` | `{_cell(kind)}` | `{_cell(default)}` | {_prose(help_text)} |")
    return "\n".join(lines[:6] + ["## Top level", "", *header, *top] + lines[6:]) + "\n"


def copy_figures() -> None:
    for png in sorted((ROOT / "results").glob("*/figures/*.png")):
        target = f"results/figures/{png.parent.parent.name}/{png.name}"
        with mkdocs_gen_files.open(target, "wb") as out:
            out.write(png.read_bytes())


with mkdocs_gen_files.open("reference/cli.md", "w") as f:
    f.write(cli_page())
with mkdocs_gen_files.open("reference/scenario-keys.md", "w") as f:
    f.write(keys_page())
copy_figures()
