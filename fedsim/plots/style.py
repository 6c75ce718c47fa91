"""Paper style for every figure: fonts readable at column width, one colour and marker per scheme, a time
unit chosen from the data, legends read row by row, and a caption line that says what the figure shows."""

from __future__ import annotations

import contextlib
import itertools
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from fedsim.atomic import atomic_savefig  # noqa: E402

SCHEME_STYLES = {
    "proposed": dict(color="#d62728", marker="o", linestyle="-"),
    "a": dict(color="#1f77b4", marker="s", linestyle="--"),
    "b": dict(color="#2ca02c", marker="^", linestyle="--"),
    "c": dict(color="#9467bd", marker="v", linestyle=":"),
    "d": dict(color="#ff7f0e", marker="D", linestyle="-."),
}
# user schemes (not in the tables above) take these in order of appearance
_EXTRA_STYLES = (
    dict(color="#8c564b", marker="P", linestyle="-"),
    dict(color="#e377c2", marker="X", linestyle="--"),
    dict(color="#17becf", marker="*", linestyle="-."),
    dict(color="#7f7f7f", marker="h", linestyle=":"),
    dict(color="#bcbd22", marker="<", linestyle="-"),
)


def scheme_style(name: str, names: Sequence[str]) -> dict:
    """Line style of ``name``: the built-in's, else the next extra style by its place among ``names``'
    non-built-in schemes."""
    if name in SCHEME_STYLES:
        return SCHEME_STYLES[name]
    others = [n for n in names if n not in SCHEME_STYLES]
    return _EXTRA_STYLES[others.index(name) % len(_EXTRA_STYLES)]


_RC = {
    "font.size": 10,
    "axes.labelsize": 10,
    "axes.titlesize": 10,
    "legend.fontsize": 8,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "lines.linewidth": 1.5,
    "lines.markersize": 5,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 150,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,  # embed TrueType: editable text, accepted by paper systems
    "svg.fonttype": "none",  # SVG text stays text (searchable, editable; tests read captions back)
}
CAPTION_FONTSIZE = 7


def rowwise(items: Sequence, ncol: int) -> list:
    """Reorder legend ``items`` so matplotlib's column-by-column fill reads row by row."""
    return [item for col in range(ncol) for item in itertools.islice(items, col, None, ncol)]


def figure_legend(fig, handles: Sequence, labels: Sequence[str], *, ncol: int = 2) -> None:
    """One legend above all panels, entries in reading order (left to right, then down)."""
    ncol = max(1, min(ncol, len(labels)))
    fig.legend(
        rowwise(list(handles), ncol),
        rowwise(list(labels), ncol),
        loc="outside upper center",
        ncol=ncol,
        frameon=False,
        columnspacing=1.2,
        handlelength=2.2,
        fontsize=7,
    )


def add_caption(fig, text: str, width: int = 130) -> None:
    """A caption line (wrapped) under the panels: what the bands are, drops per point, where E(r) is from."""
    fig.text(
        0.01,
        0.0,
        "\n".join(textwrap.wrap(text, width)),
        ha="left",
        va="top",
        fontsize=CAPTION_FONTSIZE,
        color="0.25",
        gid="caption",
    )


@contextlib.contextmanager
def paper_style() -> Iterator[None]:
    """Matplotlib settings for single-column paper figures (about 3.5 x 2.6 in)."""
    with plt.rc_context(_RC):
        yield


def save(fig, stem: Path, formats: Sequence[str]) -> list[Path]:
    """Save ``fig`` as ``stem.<fmt>`` for every format; returns the paths and closes the figure."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        paths.append(atomic_savefig(fig, stem.with_suffix(f".{fmt}")))  # never a half-written figure
    plt.close(fig)
    return paths


def _seconds_label(value: float, _pos: int) -> str:
    return f"{value / 1e3:g}k" if abs(value) >= 1e4 else f"{value:g}"


# Delays reach 1e5 s: "20k" keeps tick labels short (no offset text to collide with the legend band).
SECONDS_FORMATTER = FuncFormatter(_seconds_label)
