"""5G NR PUSCH link abstraction: the goodput of a client on m PRBs at a given SNR, from Sionna.

A subchannel is a group of PRBs (12 subcarriers each) of one numerology (SCS 15 or 30 kHz, slot 1 or
0.5 ms). Per slot a client sends one transport block (TB) over its PRBs: its size follows 38.214 from the
MCS (Qm, R) and the data REs (12 x (14 - DMRS symbols) - xOverhead per PRB); its error rate is Sionna's
``PHYAbstraction`` BLER of the TB's code blocks, TBLER = 1 - (1 - BLER)^C. Link adaptation picks the MCS
with the highest goodput (1 - TBLER) TBS among those with TBLER <= the target (10 %): the SNR below which
no MCS meets the target is outage (goodput 0), and the top MCS is the ceiling.

``goodput_table`` evaluates this once per process and link shape on a 0.05 dB SNR grid (vectorised over
every PRB count, MCS and SNR in one Sionna call); ``NRLinkRate`` then answers the optimiser and the engine with numpy
look-ups. The SNR is floored to the grid (a conservative 0.05 dB quantisation, like a CQI report), so the
rate, its inverse and the TB statistics the engine samples all come from one table entry.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from fedsim.radio.sionna_env import phy_abstraction, sionna_call

SNR_DB_MIN, SNR_DB_MAX, SNR_DB_STEP = -10.0, 40.0, 0.05
SYMBOLS_PER_SLOT = 14
# (MCS table, downlink) -> (Sionna BLER-table category, table index): PUSCH table 1 has its own curves; for
# table 2 (256QAM) Sionna's PUSCH file repeats table 1's curves, so the PDSCH table-2 curves (same Qm, R) stand
# in; the downlink (PDSCH) uses its own tables 1 and 2
_BLER_SOURCE = {(1, False): (0, 1), (2, False): (1, 2), (1, True): (1, 1), (2, True): (1, 2)}


@dataclass(frozen=True)
class GoodputTable:
    """Link adaptation result on the SNR grid, arrays (R, L) for R PRB counts and L SNR points.

    Attributes:
        snr_db: (L,) the grid [dB]; bits_per_slot: goodput (1 - TBLER) TBS [bit per slot] (0 in outage);
        tb_bits: TBS of the chosen MCS [bit]; tbler: its TB error rate; mcs: its index (-1: outage).
    """

    snr_db: np.ndarray
    bits_per_slot: np.ndarray
    tb_bits: np.ndarray
    tbler: np.ndarray
    mcs: np.ndarray


def usable_prb_counts(num_subchannels: int, prbs_per_subchannel: int) -> tuple[int, ...]:
    """PRB counts a client may send on: 1..p within its first subchannel, then whole subchannels 2p..Sp."""
    p = int(prbs_per_subchannel)
    return tuple(sorted(set(range(1, p + 1)) | {p * k for k in range(1, int(num_subchannels) + 1)}))


@dataclass(frozen=True)
class McsTables:
    """Every MCS of the table on every PRB count, before link adaptation.

    Attributes:
        snr_db: (L,) the SNR grid [dB]; mcs: (C,) MCS indices; tb_bits: (R, C) TBS [bit];
        tbler: (R, C, L) TB error rate 1 - (1 - BLER)^C_cb (not finite where Sionna has no data for the MCS).
    """

    snr_db: np.ndarray
    mcs: np.ndarray
    tb_bits: np.ndarray
    tbler: np.ndarray

    @functools.cached_property
    def lowest_usable(self) -> int:
        """The lowest MCS with BLER data (where no MCS meets the target, link adaptation still sends it)."""
        return int(np.flatnonzero(np.isfinite(self.tbler).any(axis=(0, 2)))[0])


@dataclass(frozen=True)
class LinkAdaptation:
    """How the engine's sampled HARQ picks MCS (``nr_harq``): ``outer`` loop or not, the error of the SNR
    estimate [dB], OLLA's NACK step [dB], the BLER target, and every MCS's TBS and TBLER (``McsTables``)."""

    outer: bool
    sinr_bias_db: float
    delta_up_db: float
    bler_target: float
    tables: McsTables


def mcs_tables(
    prb_counts: tuple[int, ...], re_per_prb: int, mcs_table: int, *, downlink: bool = False
) -> McsTables:
    """TBS and TB error rate of every MCS for TBs on each of ``prb_counts`` PRBs on the SNR grid (cached);
    PUSCH, or PDSCH for the ``downlink``."""
    return _mcs_tables(prb_counts, re_per_prb, mcs_table, downlink)


@functools.lru_cache(maxsize=8)
def _mcs_tables(prb_counts: tuple[int, ...], re_per_prb: int, mcs_table: int, downlink: bool) -> McsTables:
    """``mcs_tables``, cached on positional arguments: one entry per table however the caller spells them."""
    phy = phy_abstraction(SNR_DB_MIN, SNR_DB_MAX, SNR_DB_STEP, downlink=downlink)
    with sionna_call():
        import torch
        from sionna.phy.nr.utils import TransportBlockNR, decode_mcs_index

        category, table = _BLER_SOURCE[(mcs_table, downlink)]
        snr_db = np.round(np.arange(SNR_DB_MIN, SNR_DB_MAX + 0.5 * SNR_DB_STEP, SNR_DB_STEP), 10)
        m = np.asarray(prb_counts, dtype=int)
        mcs = np.arange(phy._bler_table_interp.shape[2])
        mm, cc = np.meshgrid(m, mcs, indexing="ij")
        qm, rate = decode_mcs_index(
            torch.tensor(cc.ravel()), table_index=mcs_table, is_pusch=not downlink, check_index_validity=False
        )
        qm, rate = qm.reshape(mm.shape), rate.reshape(mm.shape)
        coded_bits = qm * torch.tensor(mm * re_per_prb)
        tbs, cbs, num_cb = TransportBlockNR().transport_block_size(qm, rate, coded_bits)
        shape = (m.size, mcs.size, snr_db.size)
        snr_lin = torch.tensor(10.0 ** (snr_db / 10.0))
        bler = phy.get_bler(
            torch.tensor(cc)[..., None].expand(shape),
            table,
            category,
            cbs[..., None].expand(shape),
            snr_lin.expand(shape),
        )
        bler = bler.double().numpy()
        tbs, num_cb = tbs.double().numpy(), num_cb.double().numpy()
    with np.errstate(invalid="ignore"):
        tbler = 1.0 - (1.0 - bler) ** num_cb[..., None]
    return McsTables(snr_db=snr_db, mcs=mcs, tb_bits=tbs, tbler=tbler)


@functools.lru_cache(maxsize=64)
def goodput_table(
    prb_counts: tuple[int, ...],
    re_per_prb: int,
    mcs_table: int,
    *,
    bler_target: float,
    downlink: bool = False,
) -> GoodputTable:
    """Link adaptation to ``bler_target`` for TBs on each of ``prb_counts`` PRBs on the SNR grid (cached);
    PUSCH, or PDSCH for the ``downlink``."""
    every = mcs_tables(prb_counts, re_per_prb, mcs_table, downlink=downlink)
    snr_db, mcs, tbs, tbler = every.snr_db, every.mcs, every.tb_bits, every.tbler
    shape = tbler.shape
    ok = np.isfinite(tbler) & (tbler <= bler_target)  # rows of MCS without BLER data are +inf
    goodput = np.where(ok, (1.0 - np.where(ok, tbler, 0.0)) * tbs[..., None], 0.0)
    best = np.argmax(goodput, axis=1)  # (S, L): the fastest MCS meeting the target
    pick = lambda a: np.take_along_axis(a, best[:, None, :], axis=1)[:, 0, :]  # noqa: E731
    bits = pick(goodput)
    tb_bits = pick(np.broadcast_to(tbs[..., None], shape))
    tb_err = pick(np.where(ok, tbler, 1.0))
    chosen = mcs[best]
    # the goodput is non-decreasing in SNR (every MCS's TBLER falls with SNR): where interpolation noise in
    # the tables says otherwise, keep the better operating point of a lower SNR (it is still available)
    grid = np.arange(snr_db.size)
    src = np.maximum.accumulate(np.where(bits >= np.maximum.accumulate(bits, axis=1), grid, 0), axis=1)
    keep = lambda a: np.take_along_axis(a, src, axis=1)  # noqa: E731
    bits, tb_bits, tb_err, chosen = keep(bits), keep(tb_bits), keep(tb_err), keep(chosen)
    outage = bits <= 0
    return GoodputTable(
        snr_db=snr_db,
        bits_per_slot=bits,
        tb_bits=np.where(outage, 0.0, tb_bits),
        tbler=np.where(outage, 1.0, tb_err),
        mcs=np.where(outage, -1, chosen),
    )


class NRLinkRate:
    """The ``LinkRate`` of a 5G NR PUSCH uplink (see module docstring).

    A client with total power P on n subchannels of p PRBs each sends its TB on m PRBs, m in {1..p} or
    {2p, ..., np}, whichever gives the highest goodput (the gNB does not schedule PRBs the UE cannot
    power), with P spread over those m PRBs; so the rate is non-decreasing in P and in n.

    Attributes:
        table: the link's ``GoodputTable`` over ``prb_counts``; prbs_per_subchannel: p; prb_hz: 12 x SCS
        [Hz]; slot_s: slot duration [s]; noise_psd_w_hz: N0 x noise figure [W/Hz]; harq: "sampled" or
        "expected" (how the engine charges TB errors); open_loop: 38.213 open-loop power control or None.
    """

    name = "nr"

    def __init__(
        self,
        table: GoodputTable,
        prb_counts: tuple[int, ...],
        prbs_per_subchannel: int,
        prb_hz: float,
        slot_s: float,
        noise_psd_w_hz: float,
        harq: str,
    ):
        self.table, self.prbs_per_subchannel = table, int(prbs_per_subchannel)
        self.prb_hz, self.slot_s = float(prb_hz), float(slot_s)
        self.noise_psd_w_hz, self.harq = float(noise_psd_w_hz), harq
        self.open_loop = None  # an OpenLoopPower replaces the optimiser's power step (fedsim.radio.nr)
        self.adaptation = None  # a LinkAdaptation: biased SNR estimate and/or OLLA in the engine's HARQ
        self.downlink = None  # on the main link: the engine's PDSCH downlink (fedsim.radio.nr_downlink)
        self._m = np.asarray(prb_counts, dtype=float)  # PRBs per table row
        rows = self._m.size
        self._rows = np.arange(rows)
        self._noise_w = self.noise_psd_w_hz * self._m * self.prb_hz  # noise power on each PRB count [W]
        rate = table.bits_per_slot / self.slot_s  # [bit/s]; rate and inverse read these same numbers
        self._padded = np.concatenate([np.zeros((rows, 1)), rate], axis=1)  # column 0: below the grid
        # rows shifted apart so one searchsorted finds, per PRB count, the first grid point reaching a rate
        self._offset = (float(rate.max()) + 1.0) * np.arange(rows)
        self._flat = (rate + self._offset[:, None]).ravel()

    def _usable(self, n_sub) -> np.ndarray:
        """(..., R) which PRB counts a client on ``n_sub`` subchannels may use."""
        return self._m <= np.asarray(n_sub, float)[..., None] * self.prbs_per_subchannel

    def _grid_index(self, power_w, gain) -> np.ndarray:
        """(..., R) padded grid column of the SNR per RE on each PRB count (0 below the grid)."""
        power_w, gain = np.asarray(power_w, float), np.asarray(gain, float)
        snr = (power_w * gain)[..., None] / self._noise_w
        with np.errstate(divide="ignore", invalid="ignore"):
            snr_db = 10.0 * np.log10(snr)
        # 1e-6 of a grid step absorbs rounding when the power came from min_power_w's grid point
        pos = np.floor((snr_db - SNR_DB_MIN) / SNR_DB_STEP + 1e-6)
        pos = np.where(np.isfinite(pos), pos, -1.0)
        last = self.table.snr_db.size - 1
        return (np.clip(pos, -1, last) + 1).astype(int)

    def _row_rates(self, power_w, n_sub, gain):
        """(..., R) rate [bit/s] on each PRB count (0 where unusable), and its padded grid column."""
        col = self._grid_index(power_w, gain)
        return np.where(self._usable(n_sub), self._padded[self._rows, col], 0.0), col

    def _best(self, power_w, n_sub, gain):
        """(rate [bit/s], PRB-count row, padded grid column), broadcast over the inputs."""
        rate, col = self._row_rates(power_w, n_sub, gain)
        col = np.broadcast_to(col, rate.shape)
        row = np.argmax(rate, axis=-1)
        best_rate = np.take_along_axis(rate, row[..., None], axis=-1)[..., 0]
        best_col = np.take_along_axis(col, row[..., None], axis=-1)[..., 0]
        return best_rate, row, best_col

    def rate_bps(self, power_w, n_sub, gain) -> np.ndarray:
        return np.max(self._row_rates(power_w, n_sub, gain)[0], axis=-1, keepdims=True)[..., 0]

    def min_power_w(self, rate_bps, n_sub, gain) -> np.ndarray:
        need = np.asarray(rate_bps, float)
        col = np.searchsorted(self._flat, need[..., None] + self._offset, side="left")
        col = col - self._rows * self.table.snr_db.size  # first grid point meeting need, per row
        ok = col < self.table.snr_db.size
        snr_db = SNR_DB_MIN + SNR_DB_STEP * np.where(ok, col, 0)
        gain = np.asarray(gain, float)[..., None]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            p = 10.0 ** (snr_db / 10.0) * self.noise_psd_w_hz * self._m * self.prb_hz / gain
        p = np.where(ok & (gain > 0) & self._usable(n_sub), p, np.inf)
        return np.where(need > 0, np.min(p, axis=-1), 0.0)

    def harq_transfers(self, power_w, n_sub, gain):
        """The sampler of HARQ retransmissions of (K,) clients at their operating points (``nr_harq``): inner
        loop (the MCS of the true SNR, or of the biased estimate) or outer loop (``adaptation``)."""
        from fedsim.radio.nr_harq import InnerLoopHarq, OuterLoopHarq

        la = self.adaptation
        if la is None or (not la.outer and la.sinr_bias_db == 0):
            return InnerLoopHarq(self.rate_bps(power_w, n_sub, gain), *self.blocks(power_w, n_sub, gain))
        _, row, col = self._best(power_w, n_sub, gain)
        g = col - 1  # true-SNR grid index, -1 below the grid
        every, table = la.tables, self.table
        mcs_by_estimate = np.where(table.mcs[row] < 0, every.lowest_usable, table.mcs[row])  # (K, L)
        tb_bits = every.tb_bits[row].copy()  # (K, C)
        tbler = np.where(g[:, None] >= 0, every.tbler[row, :, np.maximum(g, 0)], 1.0)
        # at the true SNR the inner loop's own MCS keeps the goodput table's TBS and TBLER exactly
        clients = np.arange(row.size)
        own = table.mcs[row, np.maximum(g, 0)]
        has = (g >= 0) & (own >= 0)
        tb_bits[clients[has], own[has]] = table.tb_bits[row[has], g[has]]
        tbler[clients[has], own[has]] = table.tbler[row[has], g[has]]
        tbler = np.clip(np.nan_to_num(tbler, nan=1.0, posinf=1.0), 0.0, 1.0)
        if la.outer:
            return OuterLoopHarq(
                mcs_by_estimate,
                tb_bits,
                tbler,
                g,
                la.sinr_bias_db,
                SNR_DB_STEP,
                la.delta_up_db,
                la.bler_target,
                self.slot_s,
            )
        # inner loop on a biased estimate: the MCS of the estimated SNR, its errors at the true SNR
        shift = math.floor(la.sinr_bias_db / SNR_DB_STEP + 1e-9)
        est = np.clip(g + shift, 0, table.snr_db.size - 1)
        mcs = mcs_by_estimate[clients, est]
        tb, p = tb_bits[clients, mcs], np.where(g >= 0, tbler[clients, mcs], 1.0)
        return InnerLoopHarq(np.where(p < 1, tb * (1 - p) / self.slot_s, 0.0), tb, p)

    def blocks(self, power_w, n_sub, gain) -> tuple[np.ndarray, np.ndarray]:
        """(TBS [bit], TBLER) of the TB a client sends per slot at its operating point (0, 1 in outage)."""
        _, row, col = self._best(power_w, n_sub, gain)
        inside = col > 0
        idx = np.maximum(col - 1, 0)
        tb = np.where(inside, self.table.tb_bits[row, idx], 0.0)
        return tb, np.where(inside, self.table.tbler[row, idx], 1.0)
