"""The rate model itself: spectral efficiency vs SNR, Shannon against 5G NR PUSCH at the BLER target.

Drawn from the saved rows of ``python -m fedsim.radio_study se`` (one row per SNR and MCS table).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fedsim.plots.style import add_caption, paper_style, plt, save


def se_vs_snr(rows: pd.DataFrame, stem: Path, formats=("png", "pdf"), *, caption: str = "") -> list[Path]:
    """Shannon log2(1 + SNR) and the NR goodput per data RE of each MCS table against SNR [dB]; below,
    the SNR gap of NR to Shannon at equal spectral efficiency."""
    with paper_style():
        fig, (top, bottom) = plt.subplots(
            2, 1, figsize=(3.6, 4.2), layout="constrained", sharex=True, height_ratios=(2.2, 1)
        )
        first = rows[rows["mcs_table"] == rows["mcs_table"].min()]
        top.plot(first["snr_db"], first["shannon_bits_per_re"], color="0.2", label="Shannon log2(1+SNR)")
        styles = {1: dict(color="#d62728", linestyle="-"), 2: dict(color="#1f77b4", linestyle="--")}
        for table, part in rows.groupby("mcs_table"):
            qam = "64QAM" if table == 1 else "256QAM"
            style = styles.get(int(table), {})
            label = f"NR PUSCH, MCS table {table} ({qam})"
            top.step(part["snr_db"], part["se_bits_per_re"], where="post", label=label, **style)
            bottom.plot(part["snr_db"], part["gap_db"], **style)
        top.set_ylabel("bits per data RE")
        top.set_ylim(bottom=0)
        top.legend(loc="upper left", frameon=False, fontsize=7)
        top.grid(alpha=0.3)
        bottom.set_ylabel("gap to Shannon [dB]")
        bottom.set_xlabel("SNR per RE [dB]")
        bottom.grid(alpha=0.3)
        finite = rows["gap_db"].to_numpy(float)
        finite = finite[np.isfinite(finite)]
        if finite.size:
            bottom.set_ylim(0, float(np.max(finite)) * 1.05)
        if caption:
            add_caption(fig, caption, width=70)
        return save(fig, stem, formats)
