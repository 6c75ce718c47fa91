"""Figures and tables are drawn from saved rows only; the statistics behind them are checked independently."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fedsim.cli import main
from fedsim.plots import make_figures
from fedsim.plots.delay import curve_stats, mean_ci95
from fedsim.scenario import scenario_from_dict
from fedsim.sweep.store import ResultsStore
from fedsim.sweep.summary import summary_table, to_markdown

AXIS = "system.bandwidth_main_hz"


def synthetic_rows(rng: np.random.Generator, drops: int = 8) -> pd.DataFrame:
    """Rows shaped like a sweep's: total delay falls with bandwidth, proposed lowest, one infeasible drop."""
    rows = []
    for point, bw in enumerate([5e6, 10e6, 20e6]):
        for drop in range(drops):
            for scale, scheme in zip(
                [1.0, 2.5, 1.3, 1.8, 1.1], ["proposed", "a", "b", "c", "d"], strict=True
            ):
                rows.append(
                    {
                        "scenario": "synth",
                        "point": point,
                        "drop": drop,
                        "scheme": scheme,
                        AXIS: bw,
                        "status": "converged",
                        "total_s": scale * 1e11 / bw * (1 + 0.1 * rng.random()),
                    }
                )
    frame = pd.DataFrame(rows)
    frame.loc[(frame["scheme"] == "a") & (frame["drop"] == 0) & (frame["point"] == 0), "total_s"] = np.inf
    return frame


def results_folder(tmp_path, rows: pd.DataFrame, outputs: dict | None = None):
    scenario = scenario_from_dict(
        {
            "name": "synth",
            "sweep": {"axes": {AXIS: [5e6, 10e6, 20e6]}},
            "outputs": outputs or {"x_scale": 1e-6, "x_label": "Bandwidth [MHz]"},
        }
    )
    store = ResultsStore(tmp_path)
    store.prepare(scenario)
    for (point, drop), group in rows.groupby(["point", "drop"]):
        store.write_part(int(point), int(drop), group.to_dict("records"))
    store.consolidate()
    return store


def test_mean_ci95_matches_scipy_interval():
    x = np.random.default_rng(0).normal(3.0, 2.0, 25)
    mean, half = mean_ci95(np.append(x, np.inf))  # non-finite drops (infeasible) are left out
    low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert mean == pytest.approx(x.mean()) and half == pytest.approx((high - low) / 2)
    assert mean_ci95(np.array([2.0])) == (2.0, 0.0)


def test_curve_stats_and_summary_are_group_means():
    rows = synthetic_rows(np.random.default_rng(1))
    table = curve_stats(rows, AXIS)
    finite = rows[np.isfinite(rows["total_s"])]
    expected = finite.groupby([AXIS, "scheme"])["total_s"].mean()
    for _, r in table.iterrows():
        assert r["mean"] == pytest.approx(expected[(r["x"], r["scheme"])])
    summary = summary_table(rows)
    assert list(summary["infeasible"]) == [1, 0, 0]
    assert (summary["proposed_vs_a_pct"] > 50).all()
    assert to_markdown(summary).count("\n") == len(summary) + 1


def test_delay_figures_from_saved_rows(tmp_path):
    store = results_folder(tmp_path, synthetic_rows(np.random.default_rng(2)))
    made = make_figures(store.root)
    names = {p.name for p in made}
    assert {"delay_vs_axis.png", "delay_vs_axis.pdf", "delay_vs_axis.csv"} <= names
    for path in made:
        assert path.exists() and path.stat().st_size > 1000 or path.suffix == ".csv"
    assert (store.root / "figures" / "delay_vs_axis.png").read_bytes()[:4] == b"\x89PNG"
    assert (store.root / "figures" / "delay_vs_axis.pdf").read_bytes()[:4] == b"%PDF"


def test_placement_cdf_when_nothing_is_swept(tmp_path):
    rows = synthetic_rows(np.random.default_rng(3))
    rows = rows[rows["point"] == 0].drop(columns=[AXIS])
    scenario = scenario_from_dict(
        {"name": "cdf", "outputs": {"figures": ["placement_cdf"], "formats": ["png"]}}
    )
    store = ResultsStore(tmp_path)
    store.prepare(scenario)
    store.write_part(0, 0, rows.to_dict("records"))
    store.consolidate()
    assert [p.name for p in make_figures(tmp_path)] == ["delay_cdf.png"]


def test_convergence_and_table4_from_live_rows(tmp_path):
    store = results_folder(tmp_path, synthetic_rows(np.random.default_rng(4)), {"formats": ["png"]})
    live = store.root / "live"
    live.mkdir()
    curve = [
        {
            "rank": r,
            "model": "m",
            "target_ppl": 5.0,
            "step": s,
            "round": s / 2,
            "sim_time_s": 10.0 * s,
            "val_ppl": 20.0 / (1 + s * r / 8),
        }
        for r in (2, 8)
        for s in (0, 2, 4, 6)
    ]
    pd.DataFrame(curve).to_csv(live / "curve.csv", index=False)
    pd.DataFrame(
        [
            {
                "model": "m",
                "rank": 8,
                "rounds_completed": 3,
                "rounds_to_target": 2.0,
                "target_ppl": 5.0,
                "final_val_ppl": 4.0,
                "sim_total_s": 60.0,
                "converged": True,
            },
            {
                "model": "m",
                "rank": 2,
                "rounds_completed": 3,
                "rounds_to_target": None,
                "target_ppl": 5.0,
                "final_val_ppl": 10.0,
                "sim_total_s": 60.0,
                "converged": False,
            },
        ]
    ).to_csv(live / "summary.csv", index=False)
    names = {p.name for p in make_figures(store.root)}
    assert {"convergence.png", "table4.csv", "table4.md"} <= names
    table = pd.read_csv(store.root / "figures" / "table4.csv")
    assert list(table["rank"]) == [2, 8]  # sorted by rank


def test_plot_cli(tmp_path, capsys):
    store = results_folder(tmp_path / "r", synthetic_rows(np.random.default_rng(5)), {"formats": ["png"]})
    assert main(["plot", str(store.root), "--format", "svg"]) == 0
    assert (store.root / "figures" / "delay_vs_axis.svg").exists()
    assert main(["plot", str(tmp_path / "nothing")]) == 2
    assert "not a results folder" in capsys.readouterr().err
    json.loads((store.root / "scenario.json").read_text())


def test_delay_ticks_are_short_and_exact():
    from fedsim.plots.style import SECONDS_FORMATTER

    # large delays in thousands of seconds, small ones as they are; no offset text is involved
    assert [SECONDS_FORMATTER(v, 0) for v in (20000, 125000, 500, 2.5)] == ["20k", "125k", "500", "2.5"]
