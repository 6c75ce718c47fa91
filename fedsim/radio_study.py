"""The radio study: the NR rate model against Shannon, and fig5/fig8-style sweeps under paper vs nr.

python -m fedsim.radio_study se [--out results/radio_se_vs_snr]
    SE vs SNR rows (Shannon and NR PUSCH MCS tables 1 and 2 at 10 % BLER, 52 PRBs), the gap table
    (SNR -5..30 dB) as markdown, and the figure drawn from the rows.
python -m fedsim.radio_study compare [--results results]
    After ``fedsim run scenarios/radio_fig{5,8}_{paper,uma,umi}.toml``: mean delay per scheme under
    each radio, proposed-vs-a reduction, and the Shannon-proxy design evaluated under NR vs NR-optimised,
    as markdown (results/radio_study/summary.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from fedsim.errors import InputError
from fedsim.experiments.montecarlo.summary import to_markdown

GAP_TABLE_SNR_DB = np.arange(-5.0, 30.01, 2.5)
PROXY = "proposed_shannon_proxy"


def se_rows(num_prbs: int = 52) -> pd.DataFrame:
    """SE vs SNR (-10..40 dB, 0.05 dB) for MCS tables 1 and 2, one row per (table, SNR)."""
    from fedsim.radio.nr_curves import spectral_efficiency_table

    snr = np.round(np.arange(-10.0, 40.001, 0.05), 10)
    parts = []
    for table in (1, 2):
        cols = spectral_efficiency_table(snr, mcs_table=table, num_prbs=num_prbs)
        parts.append(pd.DataFrame({"mcs_table": table, "num_prbs": num_prbs, **cols}))
    return pd.concat(parts, ignore_index=True)


def gap_table(rows: pd.DataFrame) -> str:
    """Markdown: Shannon and NR SE [bit/RE], the chosen MCS and the gap to Shannon [dB] at GAP_TABLE_SNR_DB."""
    header = ["SNR [dB]", "Shannon [bit/RE]"]
    header += [
        f"{name} {col}" for name in ("NR table 1", "NR table 2") for col in ("[bit/RE]", "MCS", "gap [dB]")
    ]
    table = []
    for snr in GAP_TABLE_SNR_DB:
        cells = [f"{snr:g}"]
        for mcs_table in (1, 2):
            r = rows[(rows["mcs_table"] == mcs_table) & np.isclose(rows["snr_db"], snr)].iloc[0]
            if mcs_table == 1:
                cells.append(f"{r['shannon_bits_per_re']:.2f}")
            gap = "outage" if not np.isfinite(r["gap_db"]) else f"{r['gap_db']:.1f}"
            mcs = "-" if r["mcs"] < 0 else str(int(r["mcs"]))
            cells += [f"{r['se_bits_per_re']:.2f}", mcs, gap]
        table.append(cells)
    return to_markdown(pd.DataFrame(table, columns=header), align=["right"] * len(header))


def run_se(out: Path) -> None:
    from fedsim.plots.radio import se_vs_snr

    out.mkdir(parents=True, exist_ok=True)
    rows = se_rows()
    rows.to_csv(out / "se_vs_snr.csv", index=False)
    table = gap_table(rows)
    (out / "gap_table.md").write_text(table + "\n")
    caption = (
        "NR: goodput (1-TBLER)*TBS per data RE after link adaptation to 10 % TB error rate, 52 PRBs, 1 DMRS "
        "symbol, Sionna PHYAbstraction BLER tables (table 2: PDSCH 256QAM curves); SNR floored to 0.05 dB."
    )
    se_vs_snr(rows, out / "se_vs_snr", caption=caption)
    print(table)
    print(f"rows and figure in {out}/")


def _rows(results: Path, name: str) -> pd.DataFrame | None:
    path = results / name / "rows.csv"
    return pd.read_csv(path) if path.exists() else None


def _paired(rows: pd.DataFrame) -> pd.DataFrame:
    """(point, drop) x scheme total delays, keeping only units where every scheme is finite."""
    wide = rows.pivot_table(index=["point", "drop"], columns="scheme", values="total_s", aggfunc="first")
    return wide[np.isfinite(wide).all(axis=1)]


def _ci(values: pd.Series, sign: str = "") -> str:
    """Mean and 95 % t-CI of per-unit values, clustered by drop (a drop's units at every point share its
    placement, so the CI is over the drops' means)."""
    from fedsim.stats import mean_ci95

    mean = float(values.mean())
    _, half = mean_ci95(values.groupby(level="drop").mean().to_numpy())
    return f"{mean:{sign}.1f} % [{mean - half:{sign}.1f}, {mean + half:{sign}.1f}]"


def _at_point(wide: pd.DataFrame, point: int) -> str:
    """Proposed vs a at one sweep point: ``paired_stats`` (mean per-drop reduction, 95 % t-CI)."""
    from fedsim.stats import paired_stats

    part = wide.xs(point, level="point")
    st = paired_stats(part["proposed"].to_numpy(), part["a"].to_numpy())
    return f"{st['reduction_mean_pct']:.1f} % [{st['reduction_lo_pct']:.1f}, {st['reduction_hi_pct']:.1f}]"


SWEEPS = (
    ("fig5", "bandwidth per link 5-50 MHz", "5 MHz", "50 MHz"),
    ("fig8", "p_max 10-30 dBm", "10 dBm", "30 dBm"),
)
LABELS = {"paper": "paper (Shannon)", "uma": "nr UMa", "umi": "nr UMi"}


def compare(results: Path) -> str:
    """The study's numbers as markdown: mean delay per scheme, proposed vs a (95 % CIs), the proxy's cost."""
    out = []
    for fig, axis, low, high in SWEEPS:
        runs = {r: _rows(results, f"radio_{fig}_{r}") for r in ("paper", "uma", "umi")}
        runs = {r: rows for r, rows in runs.items() if rows is not None}
        if not runs:
            continue
        # the (point, drop) units every radio ran: the same placements under each radio
        common = set.intersection(
            *(set(zip(rows["point"], rows["drop"], strict=True)) for rows in runs.values())
        )
        drops = len({d for _, d in common})
        out.append(f"### {fig}-style sweep ({axis}), {drops} drops, mean over every point and drop\n")
        header = ["radio", "units (all finite)", "proposed", "a", "b", "c", "d", "Shannon proxy"]
        header += ["proposed no slower", "proposed vs a [95 % CI]", f"at {low}", f"at {high}"]
        header += ["proxy vs proposed [95 % CI]"]
        table = []
        for radio, rows in runs.items():
            rows = rows[[u in common for u in zip(rows["point"], rows["drop"], strict=True)]]
            wide = _paired(rows)
            hours = wide.mean() / 3600
            cells = [
                f"{hours[s]:.2f} h" if s in hours else "-" for s in ("proposed", "a", "b", "c", "d", PROXY)
            ]
            baselines = [s for s in ("a", "b", "c", "d") if s in wide]
            no_slower = (wide[baselines].to_numpy() >= wide[["proposed"]].to_numpy() * (1 - 1e-12)).all(
                axis=1
            )
            vs_a = _ci(100 * (1 - wide["proposed"] / wide["a"]))
            points = sorted({p for p, _ in common})
            proxy = _ci(100 * (wide[PROXY] / wide["proposed"] - 1), "+") if PROXY in wide else "-"
            table.append(
                [LABELS[radio], f"{len(wide)}/{len(common)}", *cells, f"{100 * no_slower.mean():.0f} %"]
                + [vs_a, _at_point(wide, points[0]), _at_point(wide, points[-1]), proxy]
            )
        out.append(to_markdown(pd.DataFrame(table, columns=header), align=["left"] * len(header)))
        out.append("")
    if not out:
        names = ", ".join(f"radio_{fig}_{r}" for fig, *_ in SWEEPS for r in LABELS)
        raise InputError(
            f"{results}: no rows.csv of the radio study's runs ({names}); run them first (fedsim run)"
        )
    out.append(
        "proposed vs a: mean over units of 100 (1 - T_proposed / T_a), 95 % t-CI over the drops' means (a drop's "
        "units share its placement); at one point: `fedsim.stats.paired_stats` over the drops. proxy vs "
        "proposed: mean of 100 (T_proxy / T_proposed - 1). proposed no slower: share of units where no baseline "
        "a-d is faster."
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fedsim.radio_study", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    se = sub.add_parser("se", help="SE vs SNR rows, gap table and figure")
    se.add_argument("--out", type=Path, default=Path("results/radio_se_vs_snr"))
    cmp_ = sub.add_parser("compare", help="paper vs nr summary of the radio_fig* runs")
    cmp_.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    if args.what == "se":
        run_se(args.out)
    else:
        try:
            text = compare(args.results)
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        out = args.results / "radio_study"
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.md").write_text(text + "\n")
        print(text)


if __name__ == "__main__":
    main()
