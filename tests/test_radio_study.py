"""The radio study's summary (``python -m fedsim.radio_study compare``) against a hand computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from fedsim.radio_study import compare


def _write(results, radio, delays):
    """delays: {scheme: (points, drops) array} -> results/radio_fig5_<radio>/rows.csv."""
    rows = []
    for scheme, grid in delays.items():
        for (point, drop), value in np.ndenumerate(grid):
            rows.append({"point": point, "drop": drop, "scheme": scheme, "total_s": value})
    folder = results / f"radio_fig5_{radio}"
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "rows.csv", index=False)


_HEADER = [
    "radio", "units (all finite)", "proposed", "a", "b", "c", "d", "Shannon proxy", "proposed no slower",
    "proposed vs a [95 % CI]", "at 5 MHz", "at 50 MHz", "proxy vs proposed [95 % CI]",
]  # fmt: skip


def _cells(line: str) -> dict[str, str]:
    """A markdown table row's cells by the study table's column names."""
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    assert len(cells) == len(_HEADER)
    return dict(zip(_HEADER, cells, strict=True))


def test_compare_reports_the_reduction_with_a_ci_over_drops(tmp_path):
    rng = np.random.default_rng(0)
    proposed = rng.uniform(1e4, 2e4, (2, 4))
    a = proposed * rng.uniform(1.5, 3.0, (2, 4))
    base = {"proposed": proposed, "a": a, "b": proposed * 1.1, "c": proposed * 1.2, "d": proposed}
    _write(tmp_path, "paper", base)
    proxy = proposed * 1.3
    proxy[1, 3] = np.inf  # one unit infeasible under one radio: left out of that radio's statistics
    _write(tmp_path, "uma", base | {"proposed_shannon_proxy": proxy})
    text = compare(tmp_path)
    lines = text.splitlines()
    paper = _cells(next(line for line in lines if line.startswith("| paper")))
    uma = _cells(next(line for line in lines if line.startswith("| nr UMa")))
    reduction = 100 * (1 - proposed / a)  # (points, drops)
    per_drop = reduction.mean(axis=0)
    half = stats.t.ppf(0.975, 3) * per_drop.std(ddof=1) / 2.0
    mean = reduction.mean()
    assert paper["proposed vs a [95 % CI]"] == f"{mean:.1f} % [{mean - half:.1f}, {mean + half:.1f}]"
    assert (paper["proposed"], paper["a"]) == (f"{proposed.mean() / 3600:.2f} h", f"{a.mean() / 3600:.2f} h")
    assert paper["units (all finite)"] == "8/8" and paper["proposed no slower"] == "100 %"
    assert paper["Shannon proxy"] == "-"
    # under UMa the unit with an infinite proxy delay is left out: 7 units, proxy +30 % on each
    assert (
        uma["units (all finite)"] == "7/8" and uma["proxy vs proposed [95 % CI]"] == "+30.0 % [+30.0, +30.0]"
    )
    at_first = reduction[0]
    half0 = stats.t.ppf(0.975, 3) * at_first.std(ddof=1) / 2.0
    first = f"{at_first.mean():.1f} % [{at_first.mean() - half0:.1f}, {at_first.mean() + half0:.1f}]"
    assert paper["at 5 MHz"] == first


def test_compare_without_the_runs_is_a_one_line_error_and_writes_nothing(tmp_path, capsys):
    import pytest

    from fedsim.radio_study import main

    with pytest.raises(SystemExit) as exit_:
        main(["compare", "--results", str(tmp_path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "radio_fig5_paper" in err
    assert list(tmp_path.iterdir()) == []


def test_gap_table_cells_are_the_rows_values():
    from fedsim.radio_study import GAP_TABLE_SNR_DB, gap_table, se_rows

    rows = se_rows()
    lines = gap_table(rows).splitlines()
    assert len(lines) == 2 + len(GAP_TABLE_SNR_DB)
    for line, snr in zip(lines[2:], GAP_TABLE_SNR_DB, strict=True):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        t1 = rows[(rows["mcs_table"] == 1) & np.isclose(rows["snr_db"], snr)].iloc[0]
        assert float(cells[0]) == snr
        assert cells[1] == f"{t1['shannon_bits_per_re']:.2f}" and cells[2] == f"{t1['se_bits_per_re']:.2f}"
        assert cells[3] == ("-" if t1["mcs"] < 0 else str(int(t1["mcs"])))
