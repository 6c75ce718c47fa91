"""The radio study: fig5- and fig8-style sweeps under the paper radio and the 3GPP "nr" radio, from
``results/radio_study/summary.md`` (written by ``python -m fedsim.radio_study compare``)."""

from __future__ import annotations

from pathlib import Path

from fedsim.report.common import GENERATED, frame_table, image, numbers, parse_table, span

RUNS = {"fig5": ("radio_fig5_paper", "radio_fig5_uma", "radio_fig5_umi"),
        "fig8": ("radio_fig8_paper", "radio_fig8_uma", "radio_fig8_umi")}  # fmt: skip


def sweeps(results: Path) -> list[tuple[str, list[str], object]]:
    """(heading, text lines after the table, table) per sweep of the study's summary."""
    lines = (results / "radio_study" / "summary.md").read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        if lines[i].startswith("#"):
            heading = lines[i].lstrip("#").strip()
            body = []
            i += 1
            while i < len(lines) and not lines[i].startswith("#"):
                body.append(lines[i])
                i += 1
            table = parse_table(body)
            notes = [b for b in body if b.strip() and not b.startswith("|")]
            out.append((heading, notes, table))
        else:
            i += 1
    return out


def excluded(table) -> list[str]:
    """One sentence per radio whose mean is over fewer units than were run."""
    out = []
    for _, row in table.iterrows():
        finite, total = (int(x) for x in row["units (all finite)"].split("/"))
        if finite < total:
            out.append(f"**{row['radio']}: {total - finite} of {total} units are left out** of every mean and "
                       f"reduction on this row ({finite} finite): a unit is one (point, drop), and those left out are "
                       "not finite (infeasible).")  # fmt: skip
    return out


def findings(tables: dict[str, object]) -> list[str]:
    out = []
    for sweep, table in tables.items():
        by = {row["radio"]: row for _, row in table.iterrows()}
        paper = next(r for k, r in by.items() if k.startswith("paper"))
        nr = [r for k, r in by.items() if k.startswith("nr")]
        vs_a = lambda r: numbers(r["proposed vs a [95 % CI]"])[0]  # noqa: E731
        ratio = [numbers(r["proposed"])[0] / numbers(paper["proposed"])[0] for r in nr]
        proxy = [numbers(r["proxy vs proposed [95 % CI]"])[0] for r in nr]
        slower = span([numbers(r["proposed no slower"])[0] for r in by.values()], "{:.0f}", " %")
        out.append(
            f"- **{sweep}**: proposed vs a {vs_a(paper):.1f} % under the paper radio, "
            f"{span([vs_a(r) for r in nr], unit=' %')} under nr; the proposed scheme's mean delay under nr is "
            f"{span(ratio, '{:.1f}', 'x')} the paper radio's; the Shannon-proxy design costs "
            f"{span(proxy, '{:+.1f}', ' %')} per unit against optimising with the nr rate; proposed is no slower "
            f"than any baseline a-d on {slower} of the units."
        )
    return out


def page(results: Path) -> str:
    parts = sweeps(results)
    tables = {heading.split("-style", 1)[0]: table for heading, _, table in parts}
    lines = [GENERATED, "", "# Radio study: paper vs 3GPP NR", "",
             "Six sweeps (`scenarios/radio_fig5_{paper,uma,umi}.toml`, `radio_fig8_{paper,uma,umi}.toml`), the "
             "same placements under every radio, with the Shannon-proxy design as a sixth scheme. The radio "
             "and the study's settings: [The NR radio](../radio.md).", "",
             "## What the tables say", "", *findings(tables), ""]  # fmt: skip
    for heading, notes, table in parts:
        lines += [f"## {heading}", "", frame_table(table), ""]
        for sentence in excluded(table):
            lines += [sentence, ""]
        lines += [*notes, ""]
    lines += ["## Figures", ""]
    for sweep, names in RUNS.items():
        for name in names:
            if (results / name / "figures" / "delay_vs_axis.png").is_file():
                lines.append(image(f"{name}/delay_vs_axis.png", f"{sweep}: {name}"))
    return "\n".join(lines).rstrip() + "\n"
