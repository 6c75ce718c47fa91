"""The radio study's summary (``python -m fedsim.radio.study compare``) against a hand computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from fedsim.radio.study import compare


def _write(results, radio, delays):
    """delays: {scheme: (points, drops) array} -> results/radio_fig5_<radio>/rows.csv."""
    rows = []
    for scheme, grid in delays.items():
        for (point, drop), value in np.ndenumerate(grid):
            rows.append({"point": point, "drop": drop, "scheme": scheme, "total_s": value})
    folder = results / f"radio_fig5_{radio}"
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "rows.csv", index=False)


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
    paper = next(line for line in text.splitlines() if line.startswith("| paper"))
    uma = next(line for line in text.splitlines() if line.startswith("| nr UMa"))
    reduction = 100 * (1 - proposed / a)  # (points, drops)
    per_drop = reduction.mean(axis=0)
    half = stats.t.ppf(0.975, 3) * per_drop.std(ddof=1) / 2.0
    mean = reduction.mean()
    assert f"{mean:.1f} % [{mean - half:.1f}, {mean + half:.1f}]" in paper
    assert f"| {proposed.mean() / 3600:.2f} h | {a.mean() / 3600:.2f} h |" in paper
    assert "| 8/8 |" in paper and "| 100 % |" in paper
    # under UMa the unit with an infinite proxy delay is dropped: 7 units, proxy +30 % on each
    assert "| 7/8 |" in uma and "+30.0 % [+30.0, +30.0]" in uma
    at_first = reduction[0]
    half0 = stats.t.ppf(0.975, 3) * at_first.std(ddof=1) / 2.0
    assert f"{at_first.mean():.1f} % [{at_first.mean() - half0:.1f}, {at_first.mean() + half0:.1f}]" in paper
