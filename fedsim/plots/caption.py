"""The caption line every figure carries, read from the rows alone: what the centre and bands are, how
many drops each point has (and whether they are the same drops at every point), where E(r) came from,
and how often the proposed scheme beats each baseline on the same drop."""

from __future__ import annotations

import pandas as pd

from fedsim.plots.schemes import scheme_label, scheme_order

BAND_TEXT = {
    "mean": "Lines: mean; bands: 95 % Student-t CI of the mean",
    "median": "Lines: median; bands: interquartile range (25-75 %)",
}


def drops_text(rows: pd.DataFrame) -> str:
    """'100 drops per point (the same placements at every point)' or '87-100 drops per point'."""
    counts = rows.groupby("point")["drop"].nunique()
    low, high = int(counts.min()), int(counts.max())
    text = f"{low} drops per point" if low == high else f"{low}-{high} drops per point"
    if rows["point"].nunique() > 1 and "seed" in rows and (rows.groupby("drop")["seed"].nunique() == 1).all():
        text += " (the same placements at every point)"
    return text


def rounds_text(rows: pd.DataFrame) -> str:
    """Where E(r) came from: an inline table (typed into the scenario) or measured convergence records."""
    sources = ", ".join(sorted(set(rows.get("rounds_source", pd.Series(["unknown"])).astype(str))))
    kinds = set(rows["rounds_from"].dropna()) if "rounds_from" in rows else set()
    if kinds == {"records"}:
        return f"E(r) measured: convergence records {sources}"
    if kinds == {"inline"}:
        return f"E(r) from inline table '{sources}' (not a measured record)"
    return f"E(r) source: {sources}"


def wins_text(paired: pd.DataFrame) -> str:
    """'Proposed faster on the same drop: (a) 100 %, (b) 100 %, (c) >= 98 %, (d) >= 61 % (+ ties) of drops'."""
    if paired.empty:
        return ""
    parts = []
    for scheme in scheme_order(paired["scheme"]):
        part = paired[paired["scheme"] == scheme]
        low, ties = float(part["wins_pct"].min()), float(part["ties_pct"].max())
        text = f"{scheme_label(scheme)} {'' if low >= 99.95 else '>= '}{low:.0f} %"
        parts.append(text + (f" (ties <= {ties:.0f} %)" if ties >= 0.5 else ""))
    where = " at every point" if paired["point"].nunique() > 1 else ""
    return f"Proposed faster on the same drop{where}: " + ", ".join(parts) + " of drops"


def caption(rows: pd.DataFrame, band: str, paired: pd.DataFrame | None = None, *, extra: str = "") -> str:
    """The caption: band meaning, drops per point, E(r) source, wins, and any figure-specific note."""
    parts = [band, drops_text(rows), rounds_text(rows)]
    if paired is not None and not paired.empty:
        parts.append(wins_text(paired))
    if extra:
        parts.append(extra)
    return ". ".join(p for p in parts if p) + "."
