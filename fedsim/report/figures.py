"""The paper's figures (Fig. 5-8, the p_th companion, the placement CDF), their measured-E(r) twins and the
quickstart: pages built from each run's committed ``summary.md`` and figures."""

from __future__ import annotations

import re
from pathlib import Path

from fedsim.report.common import GENERATED, frame_table, image, md_table, numbers, read_summary, span

PAPER = [
    ("fig5_bandwidth", "Fig. 5"),
    ("fig6_client_flops", "Fig. 6"),
    ("fig7_server_compute", "Fig. 7"),
    ("fig8_power", "Fig. 8"),
    ("fig8_power_pth5w", "Fig. 8 companion, p_th = 5 W"),
    ("montecarlo_placement", "placement CDF"),
]
MEASURED = [(f"{name}_measured", f"{label}, measured E(r)") for name, label in PAPER[:4]]
# Fig. 5 with E(r) from the rank study's seeds and the optimiser told how sure E(r) is (training.e_draws)
UNCERTAIN = [  # sweeps run with training.e_draws, each with its section once its summary is committed
    ("fig5_bandwidth_rank_study", "Fig. 5, E(r) from the rank study, drawn from its seeds"),
    ("fig5_bandwidth_rank_plateau", "Fig. 5, E(r) from the rank study at its plateau, drawn from its seeds"),
]
BASELINES = ("a", "b", "c", "d")
_PAIRED = re.compile(r"(-?[\d.]+) % \[(-?[\d.]+), (-?[\d.]+)\], wins ([\d.]+) %")


def paired_cells(cells) -> list[tuple[float, float, float]]:
    """(mean reduction, CI half-width, share of wins) from cells like ``56.8 % [53.7, 59.9], wins 100 %``."""
    out = []
    for cell in cells:
        m = _PAIRED.fullmatch(cell.strip())
        if m is None:
            raise ValueError(f"not a paired-reduction cell: {cell!r}")
        mean, lo, hi, wins = (float(x) for x in m.groups())
        out.append((mean, (hi - lo) / 2, wins))
    return out


def overview_row(folder: Path, label: str) -> list[str]:
    """One row of the overview: drops per point, paired reductions vs each baseline, means vs a."""
    summary = read_summary(folder)
    heading, _ = summary.section("Mean total delay")
    drops = int(numbers(heading.split("(", 1)[1])[0])
    means = summary.table("Mean total delay")
    paired = summary.table("Proposed vs each baseline")
    cells = [label, f"`{folder.name}`", str(len(means)), str(drops), str(int(sum(map(int, means.infeasible))))]
    for b in BASELINES:
        stats = paired_cells(paired[f"proposed vs {b}"])
        cells.append(
            f"{span([s[0] for s in stats], unit=' %')} (±{max(s[1] for s in stats):.1f}); "
            f"wins {span([s[2] for s in stats], '{:.0f}', ' %')}"
        )
    vs_a = [float(x) for x in means.proposed_vs_a_pct]
    cells.append(f"{vs_a[0]:.1f} % → {vs_a[-1]:.1f} %" if len(vs_a) > 1 else f"{vs_a[0]:.1f} %")
    return cells


OVERVIEW_HEADER = ["figure", "results", "points", "drops per point", "infeasible drops",
                   *(f"vs ({b})" for b in BASELINES), "means vs (a), first → last point"]  # fmt: skip


def overview(results: Path, runs) -> str:
    rows = [overview_row(results / name, label) for name, label in runs]
    return md_table(OVERVIEW_HEADER, rows)


def run_section(results: Path, name: str, label: str, *, level: str = "##") -> list[str]:
    """One run: its description, mean delay per point, E(r) line and its figures."""
    folder = results / name
    summary = read_summary(folder)
    heading, _ = summary.section("Mean total delay")
    lines = [f"{level} {label} (`{name}`)", "", summary.description, "", f"**{heading}**", "",
             frame_table(summary.table("Mean total delay")), ""]  # fmt: skip
    try:
        lines += [summary.line("E(r)"), ""]
    except KeyError:
        pass
    figures = [f for f in ("delay_vs_axis", "delay_cdf", "decisions", "breakdown", "convergence")
               if (folder / "figures" / f"{f}.png").is_file()]  # fmt: skip
    lines += [image(f"{name}/{f}.png", f"{label}: {f}") for f in figures]
    return [*lines, ""]


_EXPLAIN = (
    "Per baseline: the mean over drops of the paired per-drop reduction 100 (1 - T_proposed / T_baseline), "
    "its range over the swept points, the largest 95 % t-CI half-width over the points (±) and the range "
    "of the share of drops where proposed is faster; means vs (a): the reduction of the mean delays at the "
    "first and last point (what the paper quotes). Each run's `summary.md` has every point."
)


def paper_page(results: Path) -> str:
    lines = [GENERATED, "", "# The paper's figures", "",
             "Fig. 5-8 of FedsLLM, the p_th companion of Fig. 8 and the placement CDF, each a Monte Carlo sweep "
             "with E(r) from the spec's assumed table (`spec_proposed`). How to rerun them: "
             "[Reproduce Fig. 5-8](../guides/reproduce-figures.md).", "",
             overview(results, PAPER), "", _EXPLAIN, ""]  # fmt: skip
    for name, label in PAPER:
        lines += run_section(results, name, label)
    lines += quickstart_section(results)
    return "\n".join(lines).rstrip() + "\n"


def measured_page(results: Path) -> str:
    lines = [GENERATED, "", "# Fig. 5-8 with measured E(r)", "",
             "The same sweeps with E(r) measured by the [convergence study](convergence.md) (its split-fed "
             "records, mean over seeds) for the system it trained, instead of the spec's assumed table. The "
             "last sections take E(r) from the [rank study](rank-study.md) instead and tell the optimiser how "
             "sure it is: every task is optimised again with E(r) drawn from the seeds.", "",
             overview(results, MEASURED), "", _EXPLAIN, ""]  # fmt: skip
    for name, label in MEASURED:
        lines += run_section(results, name, label)
    for name, label in UNCERTAIN:
        if (results / name / "summary.md").is_file():
            lines += uncertain_section(results, name, label)
    return "\n".join(lines).rstrip() + "\n"


def uncertain_section(results: Path, name: str, label: str) -> list[str]:
    """A sweep run with ``training.e_draws``: its run section, then how often each scheme's chosen rank
    changes when E(r) is drawn from the seeds, and the 5-95 % range of the predicted delay."""
    summary = read_summary(results / name)
    heading, _ = summary.section("How sure")
    sure = summary.table("How sure")
    lines = run_section(results, name, label)
    lines += [f"**{heading}**", "", frame_table(sure), ""]
    flips = {
        scheme: [float(v) for v in part.rank_flip_pct]
        for scheme, part in sure.groupby("scheme", sort=False)
    }
    said = "; ".join(f"{scheme} {span(values, '{:.0f}', ' %')}" for scheme, values in sorted(flips.items()))
    lines += [
        "Share of draws whose chosen rank differs from the rank chosen with the mean E(r), over the swept "
        f"points: {said}. Schemes (a) and (d) draw their rank at random, so theirs cannot change. Where the "
        "share is near 50 %, the ranks' E(r) overlap within their seed spread and the optimiser's rank choice "
        "is not determined by the measured E(r); the delay range (dotted in the figure) is what that "
        "uncertainty costs.",
        "",
    ]
    return lines


def quickstart_section(results: Path) -> list[str]:
    folder = results / "quickstart"
    summary = read_summary(folder)
    live = summary.table("Live co-simulation").drop(columns=["wall_s"], errors="ignore")
    lines = ["## The quickstart (`quickstart`)", "", summary.description, "",
             "Live co-simulation (test PPL over the run's `test_samples`, BLEU / ROUGE-L over `n_mrs` test "
             "MRs; wall time left out: the machine is not recorded):", "", frame_table(live), ""]  # fmt: skip
    heading, _ = summary.section("Mean total delay")
    lines += [f"**{heading}**", "", frame_table(summary.table("Mean total delay")), ""]
    lines += [image(f"quickstart/{f}.png", f"quickstart: {f}") for f in ("convergence", "delay_vs_axis")]
    return [*lines, ""]
