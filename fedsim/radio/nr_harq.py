"""HARQ retransmissions of the "nr" radio's uploads, sampled per transfer, with inner- or outer-loop link
adaptation (the engine's ``harq = "sampled"`` mode).

**Inner loop** (ILLA, default): each client's MCS is fixed for the drop, chosen from its SNR as seen by the
gNB (the true SNR plus ``sinr_bias_db``). A transfer's failed TBs are drawn in aggregate
(``harq_duration_s``: F ~ NegBinomial(N, 1 - TBLER)).

**Outer loop** (OLLA, 38.214 practice; Sionna's ``OuterLoopLinkAdaptation``): the MCS is chosen from the
estimated SNR minus a per-client offset, which rises by delta_up on every NACK and falls by delta_down =
delta_up BLER_target / (1 - BLER_target) on every ACK (clamped to [-20, 20] dB, Sionna's bounds), so the
long-run TB error rate is the target whatever the estimate's bias. The offset lives across a client's
transfers on the link. A transfer is sampled run by run, not slot by slot: at a fixed MCS the ACKs before the
next NACK are Geometric(TBLER), so one draw covers a whole run of ACKs, cut short where the falling offset
changes the MCS or the transfer's bits are through; the cost is O(NACKs + MCS changes) per transfer.

TB error rates are those of the MCS at the client's true SNR (the same PRBs and power as the optimiser
chose; HARQ without soft combining, as the expected-goodput model). With no bias the inner loop is exactly
the expected-goodput model's link (same MCS, TBS and TBLER).
"""

from __future__ import annotations

import bisect
import math

import numpy as np

OFFSET_MIN_DB, OFFSET_MAX_DB = -20.0, 20.0  # Sionna's OuterLoopLinkAdaptation defaults
_BATCH = 256  # uniforms drawn at a time for the ACK runs
# a transfer's first EXACT_TBS transmissions walk the loop TB by TB (OLLA's transient: a 20 dB offset takes
# 180 ACKs at delta_down = 0.11 dB); beyond them the stationary goodput of a STATIONARY_TBS walk applies
EXACT_TBS, STATIONARY_TBS = 500, 20_000


def harq_duration_s(
    bits: float, rate_bps: float, tb_bits: float, *, tbler: float, rng: np.random.Generator
) -> float:
    """One transfer of ``bits`` with its HARQ retransmissions sampled in aggregate [s].

    The transfer needs N = ceil(bits / TBS) TBs; each transmission fails independently with TBLER, so the
    failed transmissions F ~ NegBinomial(N, 1 - TBLER) and the transfer holds (N + F) / N times its error-free
    duration bits / (rate / (1 - TBLER)). The mean is bits / rate, the expected-goodput duration.
    """
    if bits <= 0:
        return 0.0
    if not (rate_bps > 0 and tb_bits > 0):
        return math.inf
    n = math.ceil(bits / tb_bits)
    failures = int(rng.negative_binomial(n, 1.0 - tbler)) if tbler > 0 else 0
    return bits * (1.0 - tbler) / rate_bps * (n + failures) / n


class InnerLoopHarq:
    """Fixed MCS per client: (K,) goodput rate [bit/s], TBS [bit] and TBLER of each client's operating point."""

    def __init__(self, rate_bps, tb_bits, tbler):
        self.rate_bps, self.tb_bits, self.tbler = (
            np.asarray(a, float).tolist() for a in (rate_bps, tb_bits, tbler)
        )

    def duration_s(self, k: int, bits: float, rng: np.random.Generator) -> float:
        """One transfer of client k [s]."""
        return harq_duration_s(bits, self.rate_bps[k], self.tb_bits[k], tbler=self.tbler[k], rng=rng)


class OuterLoopHarq:
    """OLLA per client (see module docstring); ``offset_db``, ``acks`` and ``nacks`` (K,) are its state.

    Args:
        mcs_by_estimate: (K, G) the MCS link adaptation picks at each estimated-SNR grid index (lowest MCS
            where no MCS meets the target: OLLA always transmits).
        tb_bits, tbler: (K, C) TBS [bit] and TB error rate of each MCS at the client's true SNR.
        true_index: (K,) the clients' true-SNR grid indices; bias_db: SNR estimate error [dB];
        step_db: the grid step [dB]; delta_up_db: OLLA's NACK step; bler_target: its target.
        slot_s: slot duration [s] (one TB per slot).
    """

    def __init__(
        self, mcs_by_estimate, tb_bits, tbler, true_index, bias_db, step_db, delta_up_db, bler_target, slot_s
    ):
        mcs = np.asarray(mcs_by_estimate).astype(np.int64)
        self._mcs = mcs.tolist()
        # grid indices where the picked MCS changes, per client (the ACK runs stop there)
        self._changes = [(np.flatnonzero(np.diff(row)) + 1).tolist() for row in mcs]
        self._tb = np.asarray(tb_bits, float).tolist()
        self._tbler = np.clip(np.nan_to_num(np.asarray(tbler, float), nan=1.0, posinf=1.0), 0.0, 1.0).tolist()
        self._true = [int(g) for g in true_index]
        self.bias_db, self.step_db, self.slot_s = float(bias_db), float(step_db), float(slot_s)
        self.delta_up_db = float(delta_up_db)
        self.delta_down_db = self.delta_up_db * bler_target / (1.0 - bler_target)
        k = len(self._true)
        self._steady: dict[int, tuple[float, float]] = {}
        self._grid: dict[int, dict[int, tuple]] = {}  # client -> {estimate shift: ``_point``}
        self.offset_db, self.acks, self.nacks = (
            np.zeros(k),
            np.zeros(k, dtype=np.int64),
            np.zeros(k, dtype=np.int64),
        )

    def duration_s(self, k: int, bits: float, rng: np.random.Generator) -> float:
        """One transfer of client k [s]; updates the client's offset and ACK/NACK counts.

        The loop is walked TB by TB (run by run) for the transfer's first ``EXACT_TBS`` transmissions, which
        covers OLLA's transient; bits left after that go at the client's stationary OLLA goodput."""
        if bits <= 0:
            return 0.0
        walk = self._walk(k, float(self.offset_db[k]), float(bits), EXACT_TBS, rng)
        if walk is None:
            return math.inf
        slots, sent, acks, nacks, offset = walk
        left = bits - sent
        if left > 0:  # the stationary regime: its goodput and NACK share from one long walk of the loop
            bits_per_slot, nack_share = self._stationary(k, offset, rng)
            extra = left / bits_per_slot
            slots += extra
            nacks += round(extra * nack_share)
            acks += round(extra * (1 - nack_share))
        self.offset_db[k] = offset
        self.acks[k] += acks
        self.nacks[k] += nacks
        return slots * self.slot_s

    def _stationary(self, k: int, offset_db: float, rng: np.random.Generator) -> tuple[float, float]:
        """(bits per slot, NACK share) of client k's loop in its stationary regime: a walk of
        ``STATIONARY_TBS`` transmissions after a burn-in of ``EXACT_TBS`` (once per client)."""
        if k not in self._steady:
            burn = self._walk(k, offset_db, math.inf, EXACT_TBS, rng)
            walk = self._walk(k, burn[4], math.inf, STATIONARY_TBS, rng)
            slots, sent, acks, nacks, _ = walk
            self._steady[k] = (sent / slots, nacks / (acks + nacks))
        return self._steady[k]

    def _point(self, k: int, shift: int) -> tuple:
        """Client k with its SNR estimate ``shift`` grid steps off the true SNR (clamped to the grid): (TBS,
        log(1 - TBLER) (0 where the TBLER is 0 or 1), the ACK run where that is not random (inf at TBLER 0,
        0 at TBLER 1), the offset at which the estimate reaches the next MCS change (or OFFSET_MIN_DB), and
        the offset from which the walk gives up (no TB gets through)); the constants ``_walk`` reads per run,
        kept per client in ``_grid`` as the walk meets them (it visits a few of the grid's indices)."""
        g = min(max(self._true[k] + shift, 0), len(self._mcs[k]) - 1)
        mcs, changes = self._mcs[k][g], self._changes[k]
        tb, p = self._tb[k][mcs], self._tbler[k][mcs]
        nxt = bisect.bisect_right(changes, g)
        target = OFFSET_MIN_DB
        if nxt < len(changes):  # offset at which the estimate index reaches changes[nxt]
            target = max(target, self.bias_db - (changes[nxt] - self._true[k] - 1e-9) * self.step_db)
        give_up = -math.inf if tb <= 0 else (OFFSET_MAX_DB if p >= 1.0 else math.inf)
        random = 0 < p < 1
        return (
            tb,
            math.log1p(-p) if random else 0.0,
            None if random else (0 if p else math.inf),
            target,
            give_up,
        )

    def _walk(self, k: int, offset: float, bits: float, max_tbs: int, rng: np.random.Generator):
        """Walk client k's loop from ``offset`` until ``bits`` are through or ``max_tbs`` TBs were sent:
        (slots, bits sent, ACKs, NACKs, offset), or None when no MCS the loop can reach gets a TB through.

        Run by run: the estimate's grid index, then the run of ACKs before the next NACK (one uniform U per
        run, floor(log U / log(1 - TBLER)): Geometric(TBLER) by inversion), cut short where the falling offset
        changes the MCS (``_point``'s target), the bits are through or the TBs run out. It is the hot loop of
        an OLLA run, so constants are local names and minima and clamps are written out."""
        points, bias, step = self._grid.setdefault(k, {}), self.bias_db, self.step_db
        down, up, lowest, highest = self.delta_down_db, self.delta_up_db, OFFSET_MIN_DB, OFFSET_MAX_DB
        floor, ceil, log, inf = math.floor, math.ceil, math.log, math.inf
        sent = 0.0
        n = nacks = 0  # TBs sent (ACKs and NACKs), NACKs
        logs = []  # log U of uniforms drawn from rng in batches, used from the end
        while n < max_tbs:
            shift = floor((bias - offset) / step + 1e-9)  # the estimate's grid index, less the true one
            try:
                tb, log_q, run, target, give_up = points[shift]
            except KeyError:
                tb, log_q, run, target, give_up = points[shift] = self._point(k, shift)
            if offset >= give_up:
                return None
            if log_q:  # 0 < TBLER < 1: the ACKs before the next NACK
                if not logs:
                    logs = list(map(log, (1.0 - rng.random(_BATCH)).tolist()))[::-1]
                run = floor(logs.pop() / log_q)
            finish = ceil((bits - sent) / tb - 1e-12) if bits < inf else inf
            # ACKs until the estimate reaches the next MCS change (or the offset its floor)
            if offset <= lowest or down <= 0:
                to_next = inf
            else:
                to_next = ceil((offset - target) / down - 1e-9)
                to_next = 1 if to_next < 1 else to_next
            m, left = run, max_tbs - n  # m = min(run, finish, to_next, TBs left)
            m = finish if finish < m else m
            m = to_next if to_next < m else m
            m = left if left < m else m
            if m == finish:  # the last TB is charged for the bits it carries, like bits / rate
                slots = n + (bits - sent) / tb
                n += finish
                return slots, bits, n - nacks, nacks, max(offset - finish * down, lowest)
            n, sent = n + m, sent + m * tb
            offset -= m * down
            offset = lowest if offset < lowest else offset
            if m == run and n < max_tbs:  # the run ends in a NACK
                n, nacks = n + 1, nacks + 1
                offset += up
                offset = highest if offset > highest else offset
        return float(n), sent, n - nacks, nacks, offset
