"""The downlink of the "nr" radio: 5G NR PDSCH from the main server (gNB) to each client, for the engine's
gradient downloads and LoRA broadcasts (``[engine] download`` / ``broadcast``).

The same link abstraction as the uplink (``nr_link``), on Sionna's PDSCH BLER tables: one downlink slot of
the engine (``downlink_bandwidth_hz / downlink_slots``, power ``downlink_power_w / downlink_slots``) holds
floor(bandwidth / (12 SCS)) PRBs; per slot one TB of the PDSCH MCS table ``mcs_table`` (38.214 5.1.3.1-1/-2)
on 12 (14 - PDCCH symbols - DMRS symbols) - xOverhead data REs per PRB; link adaptation to ``bler_target``;
the gNB sends on as many of the slot's PRBs as give the highest goodput (its power spread over them). The
SNR is the slot's power times the client's coupling gain (the main link's, reciprocal) over the client's
noise (``[system]`` N0 plus ``ue_noise_figure_db``). Downlink transfers are charged at the expected goodput
(TB errors are not sampled on the downlink).
"""

from __future__ import annotations

import math

import numpy as np

from fedsim.errors import InputError
from fedsim.radio.nr_link import SYMBOLS_PER_SLOT, NRLinkRate, goodput_table, usable_prb_counts


class NRDownlink:
    """PDSCH rates of a drop's clients (see module docstring).

    Args:
        radio: the ``[radio]`` section; noise_psd_w_hz: the clients' receiver noise PSD [W/Hz].
    """

    def __init__(self, radio, noise_psd_w_hz: float):
        self.scs_hz, self.mcs_table, self.bler_target = (
            radio.subcarrier_spacing_hz,
            radio.mcs_table,
            radio.bler_target,
        )
        self.re_per_prb = (
            12 * (SYMBOLS_PER_SLOT - radio.pdcch_symbols - radio.dmrs_symbols) - radio.overhead_re_per_prb
        )
        self.noise_psd_w_hz = float(noise_psd_w_hz)
        self._rates: dict[int, NRLinkRate] = {}

    def _rate(self, prbs: int) -> NRLinkRate:
        """The PDSCH rate model of a slot of ``prbs`` PRBs (built once per slot width)."""
        if prbs in self._rates:
            return self._rates[prbs]
        counts = usable_prb_counts(1, prbs)
        table = goodput_table(
            counts, self.re_per_prb, self.mcs_table, bler_target=float(self.bler_target), downlink=True
        )
        self._rates[prbs] = NRLinkRate(
            table,
            prb_counts=counts,
            prbs_per_subchannel=prbs,
            prb_hz=12 * self.scs_hz,
            slot_s=1e-3 * 15000 / self.scs_hz,
            noise_psd_w_hz=self.noise_psd_w_hz,
            harq="expected",
        )
        return self._rates[prbs]

    def rates_bps(self, gain, power_w: float, bandwidth_hz: float) -> np.ndarray:
        """(K,) goodput [bit/s] of one downlink slot of ``bandwidth_hz`` and ``power_w`` to each client."""
        prbs = int(math.floor(bandwidth_hz / (12 * self.scs_hz) + 1e-9))
        if prbs < 1:
            raise InputError(
                f"engine.downlink_bandwidth_hz / downlink_slots: a slot of {bandwidth_hz / 1e3:g} kHz holds no PRB "
                f"of {12 * self.scs_hz / 1e3:g} kHz; use more bandwidth or fewer slots"
            )
        gain = np.asarray(gain, float)
        return self._rate(prbs).rate_bps(np.full(gain.shape, float(power_w)), 1, gain)
