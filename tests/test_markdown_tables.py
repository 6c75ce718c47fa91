"""Markdown tables come from ``DataFrame.to_markdown``: the same cell text as the hand-written writer they
replaced (only padding and alignment differ)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fedsim.experiments.montecarlo.summary import to_markdown


def _hand_written(table: pd.DataFrame) -> str:
    """The writer ``to_markdown`` replaced, kept here as the reference for the cell text."""

    def cell(value) -> str:
        if isinstance(value, float):
            if not math.isfinite(value):
                return str(value)
            return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
        return str(value)

    header = [str(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(cell(v) for v in row.tolist()) + " |")
    return "\n".join(lines)


def _row(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _cells(text: str) -> list[list[str]]:
    """Each line's cells without padding; the separator line as its number of columns."""
    rows = [_row(line) for line in text.splitlines()]
    rows[1] = [str(len(rows[1]))]
    return rows


@pytest.mark.parametrize(
    "table",
    [
        pd.DataFrame(
            {
                "point": [0, 1, 2],
                "system.bandwidth_main_hz": [5e6, 2e7, 5e7],
                "proposed": [1.234567, np.inf, 123456.0],
                "a": [np.nan, -0.5, 1e-9],
                "scheme": ["proposed", "a", "my scheme"],
            }
        ),
        pd.DataFrame({"x": [1.5, 2.25], "y": [3, 4]}),  # all numeric: each row upcast to float
        pd.DataFrame({"rank": [], "proposed": []}),
    ],
)
def test_same_cells_as_the_hand_written_table(table):
    new, old = to_markdown(table), _hand_written(table)
    assert _cells(new) == _cells(old)
    assert new != old or table.empty  # padded and aligned
    assert len({len(line) for line in new.splitlines()}) == 1  # every line as wide as the header


def test_numbers_right_text_left_or_as_asked():
    table = pd.DataFrame({"n": [1, 22], "name": ["a", "bb"]})
    assert to_markdown(table).splitlines()[1] == "|----:|:-------|"
    assert to_markdown(table, align=["left", "right"]).splitlines()[1] == "|:----|-------:|"
