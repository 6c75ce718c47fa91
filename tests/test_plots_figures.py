"""Figures and tables are drawn from saved rows only; the statistics behind them are checked independently."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fedsim.cli import main
from fedsim.experiments.harness.store import ResultsStore
from fedsim.experiments.montecarlo.columns import BREAKDOWN_COLUMNS
from fedsim.experiments.montecarlo.summary import summary_table, to_markdown
from fedsim.plots import make_figures
from fedsim.plots.delay import curve_stats, mean_ci95
from fedsim.plots.schemes import legend_label, scheme_description, scheme_label, scheme_order
from fedsim.plots.style import rowwise
from fedsim.scenario import scenario_from_dict
from fedsim.stats import paired_stats, paired_table, time_unit

AXIS = "system.bandwidth_main_hz"


def synthetic_rows(rng: np.random.Generator, drops: int = 8) -> pd.DataFrame:
    """Rows shaped like a sweep's: total delay falls with bandwidth, proposed lowest, one infeasible drop."""
    rows = []
    for point, bw in enumerate([5e6, 10e6, 20e6]):
        for drop in range(drops):
            for scale, scheme in zip(
                [1.0, 2.5, 1.3, 1.8, 1.1], ["proposed", "a", "b", "c", "d"], strict=True
            ):
                total = scale * 1e11 / bw * (1 + 0.1 * rng.random())
                rows.append(
                    {
                        "scenario": "synth",
                        "point": point,
                        "drop": drop,
                        "scheme": scheme,
                        AXIS: bw,
                        "seed": json.dumps([1, 0, drop]),
                        "status": "converged",
                        "rank": 8 if scheme in ("proposed", "b", "c") else int(rng.choice([1, 2, 4, 6, 8])),
                        "cut_mean": 1.0 if scheme != "c" else float(rng.integers(1, 13)),
                        "rounds_source": "spec_proposed",
                        "rounds_from": "inline",
                        "total_s": total,
                        "analytic_total_s": total,
                        "subchannels_main": json.dumps([4, 4, 5, 3, 4]),
                        "power_main_total_w": 0.6 * rng.random(),
                        "p_th_main_w": 0.6,
                        "p_max_w": 0.2,
                        **dict(zip(BREAKDOWN_COLUMNS, total * np.array([0.6, 0.1, 0.29, 0.01]), strict=True)),
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
    assert {"delay_vs_axis.png", "delay_vs_axis.pdf", "delay_vs_axis.csv", "paired_vs_proposed.csv"} <= names
    assert {"decisions.png", "breakdown.png"} <= names
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
    assert [p.name for p in make_figures(tmp_path)] == ["delay_cdf.png", "paired_vs_proposed.csv"]


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


# A fixed paired table: 6 drops; drop 4 is a tie, drop 5 is infeasible for the baseline.
PROPOSED = np.array([10.0, 12.0, 9.0, 30.0, 11.0, 8.0])
BASELINE = np.array([25.0, 13.0, 20.0, 28.0, 11.0, np.inf])


def test_paired_stats_equal_a_hand_computation_with_scipy():
    # Prepare: the pairs where both delays are finite, computed by hand
    p, b = PROPOSED[:5], BASELINE[:5]
    reduction = 100 * (1 - p / b)
    # Execute
    got = paired_stats(PROPOSED, BASELINE)
    # Assert
    ci = stats.ttest_1samp(reduction, 0.0).confidence_interval(0.95)
    assert got["n_pairs"] == 5
    assert got["reduction_mean_pct"] == pytest.approx(reduction.mean())
    assert (got["reduction_lo_pct"], got["reduction_hi_pct"]) == pytest.approx((ci.low, ci.high))
    log_ci = stats.ttest_rel(np.log(b), np.log(p)).confidence_interval(0.95)
    assert got["ratio_gmean"] == pytest.approx(stats.gmean(b / p))
    assert (got["ratio_lo"], got["ratio_hi"]) == pytest.approx((np.exp(log_ci.low), np.exp(log_ci.high)))
    assert got["reduction_median_pct"] == pytest.approx(np.median(reduction))
    # wins over all 6 drops: 0, 1, 2 and the infeasible 5 (not the reversal 3, not the tie 4)
    assert got["wins_pct"] == pytest.approx(100 * 4 / 6) and got["ties_pct"] == pytest.approx(100 / 6)


def test_paired_table_pairs_on_point_and_drop():
    rows = synthetic_rows(np.random.default_rng(6))
    shuffled = rows.sample(frac=1.0, random_state=0)  # pairing must not depend on row order
    table = paired_table(shuffled, AXIS)
    assert len(table) == 3 * 4 and set(table["scheme"]) == {"a", "b", "c", "d"}
    at = rows[rows["point"] == 1].set_index(["drop", "scheme"])["total_s"].unstack()
    expected = paired_stats(at["proposed"].to_numpy(), at["c"].to_numpy())
    got = table[(table["point"] == 1) & (table["scheme"] == "c")].iloc[0]
    assert got["reduction_mean_pct"] == pytest.approx(expected["reduction_mean_pct"])
    assert got["x"] == 10e6 and (table["wins_pct"] == 100).all()


def _svg_text(path) -> tuple[str, str]:
    """(all text of the SVG, text of its caption group)."""
    svg = path.read_text(encoding="utf-8")
    caption = svg[svg.index('id="caption"') :].split("</g>", 1)[0]
    texts = lambda s: " ".join(re.findall(r"<text[^>]*>([^<]*)</text>", s))  # noqa: E731
    return html.unescape(texts(svg)), html.unescape(texts(caption))


def test_every_figure_has_its_caption_line_and_units(tmp_path):
    rows = synthetic_rows(np.random.default_rng(7))
    store = results_folder(
        tmp_path / "sweep", rows, {"formats": ["svg"], "x_scale": 1e-6, "x_label": "B [MHz]"}
    )
    cdf_rows = rows[rows["point"] == 0].drop(columns=[AXIS])
    cdf = results_folder(tmp_path / "cdf", cdf_rows, {"formats": ["svg"], "figures": ["placement_cdf"]})
    made = [p for p in make_figures(store.root) + make_figures(cdf.root) if p.suffix == ".svg"]
    units = {
        "delay_vs_axis": ["Total training delay [h]", "[%]", "B [MHz]"],
        "decisions": ["[W]", "LoRA rank r", "p_th"],
        "breakdown": ["Mean total delay [h]", "T1: client forward"],
        "delay_cdf": ["Total training delay [h]", "T_baseline / T_proposed"],
    }
    assert sorted(p.stem for p in made) == sorted(units)
    for path in made:
        text, caption = _svg_text(path)
        assert "drops per point" in caption and "E(r) from inline table 'spec_proposed'" in caption, path
        assert "8 drops per point" in caption  # synthetic rows have 8 drops per point
        for unit in units[path.stem]:
            assert unit in text, (path.stem, unit)
        first_line = legend_label("a").splitlines()[0]  # legends name what each scheme randomises
        assert (first_line in text) == (path.stem != "breakdown"), path.stem


def test_legend_entries_read_row_by_row_and_describe_the_schemes():
    assert rowwise(list(range(5)), 3) == [0, 3, 1, 4, 2]  # columns (0, 3), (1, 4), (2): rows 0 1 2 / 3 4
    assert rowwise(list(range(4)), 2) == [0, 2, 1, 3]
    assert scheme_order(["d", "mine", "proposed", "a"]) == ["proposed", "a", "d", "mine"]
    for name in ("proposed", "a", "b", "c", "d"):  # the registry's own description, label in front
        label = legend_label(name, width=1000)
        assert scheme_description(name) in label and label.lower().count(scheme_label(name).lower()) >= 1
    assert legend_label("proposed").startswith("Proposed: ") and legend_label("mine") == "mine"
    assert all(len(line) <= 52 for line in legend_label("a").splitlines())


def test_time_unit_follows_the_data():
    assert time_unit([4e4, 6e4, np.inf]) == (3600.0, "h")
    assert time_unit([300.0, 900.0]) == (60.0, "min")
    assert time_unit([3.0, 5.0]) == (1.0, "s")


def test_plot_redraws_from_rows_alone(tmp_path):
    store = results_folder(tmp_path, synthetic_rows(np.random.default_rng(8)), {"formats": ["png"]})
    first = sorted(p.name for p in make_figures(store.root))
    shutil.rmtree(store.root / "parts")
    shutil.rmtree(store.root / "figures")
    (store.root / "rows.csv").unlink()
    assert main(["plot", str(store.root)]) == 0
    assert sorted(p.name for p in (store.root / "figures").iterdir()) == first


def test_plot_median_option_changes_centre_and_caption(tmp_path):
    store = results_folder(tmp_path, synthetic_rows(np.random.default_rng(9)), {"formats": ["svg"]})
    assert main(["plot", str(store.root), "--stat", "median", "--y-scale", "linear"]) == 0
    _, caption = _svg_text(store.root / "figures" / "delay_vs_axis.svg")
    assert caption.startswith("Lines: median; bands: interquartile range (25-75 %)")
    assert main(["plot", str(store.root)]) == 0  # the scenario's default again: mean with t-CI
    _, caption = _svg_text(store.root / "figures" / "delay_vs_axis.svg")
    assert caption.startswith("Lines: mean; bands: 95 % Student-t CI of the mean")


def test_breakdown_shows_engine_extra_and_energy_when_the_rows_have_them(tmp_path):
    rows = synthetic_rows(np.random.default_rng(10))
    rows["total_s"] = rows["total_s"] * 1.1  # e.g. downloads switched on: the engine exceeds eq. (17)
    rows["energy_j"] = 5e3
    store = results_folder(tmp_path, rows, {"formats": ["svg"], "figures": ["breakdown"]})
    make_figures(store.root)
    text, _ = _svg_text(store.root / "figures" / "breakdown.svg")
    assert "event engine beyond eq. (17)" in text and "Mean client energy [kJ]" in text


def test_a_study_without_targets_draws_its_curves(tmp_path):
    """The lr sweep sets no PPL targets: its rounds-to-target table is empty, and its curves are still drawn
    (one panel per rank, one line per lr)."""
    from fedsim.experiments.study.tables import study_row, write_study_tables
    from fedsim.learn.records import ConvergenceRecord

    records = sorted(
        (Path(__file__).resolve().parents[1] / "results" / "rank_lr_sweep" / "records").glob("*.json")
    )
    rows = pd.DataFrame(
        [study_row(ConvergenceRecord.load(p), i, [], record_path=p) for i, p in enumerate(records)]
    )
    rows.to_parquet(tmp_path / "rows.parquet")
    (tmp_path / "scenario.json").write_text(json.dumps({"study": {}, "outputs": {"formats": ["png"]}}))
    write_study_tables(rows, [], tmp_path / "tables")
    assert not (tmp_path / "tables" / "rounds_to_target.csv").read_text().strip()
    assert [p.name for p in make_figures(tmp_path, ["png"])] == ["lr_sweep_val_ppl.png"]  # an lr sweep


def test_a_study_committed_record_by_record_draws_from_its_records(tmp_path):
    """A study whose rows file is not kept (or is older than its records) is drawn from every record: the
    rank study commits records one by one."""
    import shutil

    records = sorted((Path(__file__).resolve().parents[1] / "results" / "rank_study" / "records").glob("*_r1_*.json"))
    (tmp_path / "records").mkdir()
    for p in records[:3]:
        shutil.copy(p, tmp_path / "records" / p.name)
    (tmp_path / "scenario.json").write_text(json.dumps({"study": {}, "outputs": {"formats": ["png"]}}))
    pd.DataFrame({"training_scheme": ["split_fed"], "rank": [1]}).to_parquet(tmp_path / "rows.parquet")  # stale
    made = make_figures(tmp_path, ["png"])
    assert [p.name for p in made] == ["fig3_val_ppl.png"]
    from fedsim.experiments.study.tables import study_curves, study_rows
    from fedsim.plots.study import fig3_curves

    rows = study_rows(tmp_path)
    assert len(rows) == 3
    drawn = fig3_curves(study_curves(tmp_path, rows), rows)
    legends = [ax.get_legend() for ax in drawn.axes if ax.get_legend() is not None]
    labels = [t.get_text() for legend in legends for t in legend.get_texts()]
    counts = rows.groupby("training_scheme").size()
    assert labels == [f"r = 1 (n={n})" for n in (counts.get(s, 0) for s in ("split_fed", "centralized")) if n]
    # the bottom row: the second half of the steps, linear axis, the same mean as the top row
    schemes = len(legends)
    top, bottom = drawn.axes[0], drawn.axes[schemes]
    half = int(study_curves(tmp_path, rows)["step"].max()) // 2
    x_top, y_top = top.get_lines()[0].get_data()
    x_late, y_late = bottom.get_lines()[0].get_data()
    assert min(x_late) >= half and max(x_late) == max(x_top) and bottom.get_yscale() == "linear"
    late = {x: y for x, y in zip(x_top, y_top, strict=True) if x >= half}
    assert dict(zip(x_late, y_late, strict=True)) == late


def test_a_complete_rows_file_is_the_study_even_beside_extra_records(tmp_path):
    """The convergence study keeps two learning-rate checks (``*_lr<lr>.json``) beside its 30 runs: its rows
    file holds every planned run, so its figures are the study's Fig. 3/4, not an lr-sweep figure drawn from
    all 32 records."""
    import shutil

    source = Path(__file__).resolve().parents[1] / "results" / "convergence_study"
    for name in ("records", "tables"):
        shutil.copytree(source / name, tmp_path / name)
    for name in ("rows.parquet", "scenario.json"):
        shutil.copy(source / name, tmp_path / name)
    rows = pd.read_parquet(tmp_path / "rows.parquet")
    assert len(list((tmp_path / "records").glob("*.json"))) > len(rows) == 30
    made = [p.name for p in make_figures(tmp_path, ["png"])]
    assert made[0] == "fig3_val_ppl.png" and "lr_sweep_val_ppl.png" not in made
    # a rows file short of the plan (a run that stopped early) is rebuilt from every record instead
    rows.iloc[:12].to_parquet(tmp_path / "rows.parquet")
    assert [p.name for p in make_figures(tmp_path, ["png"])] == ["lr_sweep_val_ppl.png"]
    # a folder with rows but no records at all still draws from its rows
    shutil.rmtree(tmp_path / "records")
    rows.to_parquet(tmp_path / "rows.parquet")
    assert make_figures(tmp_path, ["png"])[0].name == "fig3_val_ppl.png"
