"""The NR rate model itself: spectral efficiency vs SNR (Shannon vs NR PUSCH at the BLER target).

``spectral_efficiency_table`` is what the docs' gap table and the SE-vs-SNR figure are made of: for one
allocation of ``num_prbs`` PRBs, the NR goodput per data RE after link adaptation (BLER loss and the MCS
ceiling included), Shannon's log2(1 + SNR) per RE, and the SNR gap to Shannon at equal spectral efficiency.
"""

from __future__ import annotations

import numpy as np

from fedsim.radio.nr_link import SNR_DB_MIN, SNR_DB_STEP, SYMBOLS_PER_SLOT, goodput_table


def spectral_efficiency_table(
    snr_db, mcs_table: int = 1, num_prbs: int = 52, *, bler_target: float = 0.1, dmrs_symbols: int = 1
) -> dict[str, np.ndarray]:
    """Columns (arrays over ``snr_db``, which must lie on the 0.05 dB grid of -10..40 dB).

    Returns:
        snr_db; shannon_bits_per_re = log2(1 + SNR); se_bits_per_re = NR goodput (1 - TBLER) TBS per data RE;
        se_bits_per_s_hz = that times the data-RE share of the slot (DMRS symbols excluded);
        mcs (-1 in outage); tbler; gap_db = SNR - 10 log10(2^SE - 1) (nan in outage).
    """
    snr_db = np.asarray(snr_db, float)
    re_per_prb = 12 * (SYMBOLS_PER_SLOT - dmrs_symbols)
    table = goodput_table((int(num_prbs),), re_per_prb, int(mcs_table), bler_target=float(bler_target))
    idx = np.rint((snr_db - SNR_DB_MIN) / SNR_DB_STEP).astype(int)
    if np.any(idx < 0) or np.any(idx >= table.snr_db.size) or not np.allclose(table.snr_db[idx], snr_db):
        raise ValueError("snr_db must lie on the 0.05 dB grid from -10 to 40 dB")
    se = table.bits_per_slot[0, idx] / (num_prbs * re_per_prb)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.where(se > 0, snr_db - 10 * np.log10(np.expm1(se * np.log(2.0))), np.nan)
    return {
        "snr_db": snr_db,
        "shannon_bits_per_re": np.log2(1 + 10 ** (snr_db / 10)),
        "se_bits_per_re": se,
        "se_bits_per_s_hz": se * (SYMBOLS_PER_SLOT - dmrs_symbols) / SYMBOLS_PER_SLOT,
        "mcs": table.mcs[0, idx],
        "tbler": table.tbler[0, idx],
        "gap_db": gap,
    }
