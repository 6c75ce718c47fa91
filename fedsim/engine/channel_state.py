"""Link rates at the current simulated instant: a static drop, or block fading redrawn by the engine.

A transfer is charged ``bits / rate`` with the rate of the block current when the transfer starts.
"""

from __future__ import annotations

import numpy as np

import channel
from fedsim.core.allocation import Allocation, client_power_w
from fedsim.core.delay import link_rates_bps
from fedsim.core.system import Drop, Link
from fedsim.engine.config import EngineConfig


def mean_gain(gain: np.ndarray) -> np.ndarray:
    """Per-client large-scale gain (K,): the gain itself if flat, the mean over subchannels if faded."""
    gain = np.asarray(gain, dtype=float)
    return gain if gain.ndim == 1 else gain.mean(axis=1)


def downlink_rates_bps(
    gain: np.ndarray, config: EngineConfig, noise_psd_w_hz: float, *, downlink=None
) -> np.ndarray:
    """Rate of one downlink slot to each client, (K,) [bit/s].

    A slot has bandwidth B/S and power P/S, so its PSD is P/B whatever the number of slots S. The rate is
    Shannon's, or that of the radio's own ``downlink`` model (fedsim.radio "nr": PDSCH) when it has one.
    """
    bandwidth_hz = config.downlink_bandwidth_hz / config.downlink_slots
    if downlink is not None:
        return downlink.rates_bps(gain, config.downlink_power_w / config.downlink_slots, bandwidth_hz)
    psd_w_hz = config.downlink_power_w / config.downlink_bandwidth_hz
    return channel.shannon_rate_bps(bandwidth_hz, psd_w_hz, gain, noise_psd_w_hz=noise_psd_w_hz)


class ChannelState:
    """Current gains and rates of the main, federated and down links of one drop under one allocation.

    Without fading switches the drop's own gains are used for the whole run (paper mode). With them,
    every ``redraw()`` multiplies each client's large-scale gain by fresh unit-mean exponential power
    gains, drawn in a fixed order: main (K, M), then fed (K, N), then downlink (K,).

    Attributes:
        rate_main_bps, rate_fed_bps: (K,) uplink rates over each client's subchannels [bit/s].
        rate_down_bps: (K,) rate of one downlink slot to each client [bit/s].
        power_main_w, power_fed_w: (K,) client transmit powers on each uplink [W].
    """

    def __init__(self, drop: Drop, alloc: Allocation, config: EngineConfig, rng: np.random.Generator):
        self._drop, self._alloc, self._config, self._rng = drop, alloc, config, rng
        k = drop.num_clients
        self.power_main_w = client_power_w(
            alloc.owner_main, alloc.psd_main_w_hz, drop.main.subchannel_hz, num_clients=k
        )
        self.power_fed_w = client_power_w(
            alloc.owner_fed, alloc.psd_fed_w_hz, drop.fed.subchannel_hz, num_clients=k
        )
        self._base_main = mean_gain(drop.main.gain)
        self._base_fed = mean_gain(drop.fed.gain)
        self._set_gains(drop.main.gain, drop.fed.gain, self._base_main)
        # a rate model with sampled HARQ (fedsim.radio "nr"): its per-link sampler and an own stream
        self.harq_main = self._harq(drop.main, alloc.owner_main, alloc.psd_main_w_hz)
        self.harq_fed = self._harq(drop.fed, alloc.owner_fed, alloc.psd_fed_w_hz)
        self.harq_rng = rng.spawn(1)[0] if self.harq_main or self.harq_fed else None

    def _harq(self, link: Link, owner: np.ndarray, psd: np.ndarray):
        """The link's sampler of HARQ retransmissions (``duration_s(k, bits, rng)``; it may keep per-client
        state such as an outer-loop offset across transfers) when the link samples HARQ, else None."""
        if getattr(link.rate, "harq", None) != "sampled":
            return None
        from fedsim.core.link import client_power_and_counts

        power, counts = client_power_and_counts(
            owner, psd, link.subchannel_hz, num_clients=self._drop.num_clients
        )
        return link.rate.harq_transfers(power, counts, np.asarray(link.gain, float))

    def set_allocation(self, alloc: Allocation) -> None:
        """Live SplitFT with re-optimised radio: use ``alloc``'s subchannels and PSDs from now on. Client powers
        and HARQ samplers are rebuilt and the rates recomputed from the current gains (the fading block, if
        any, is kept: nothing is drawn). The caller refreshes the per-event costs."""
        d = self._drop
        self._alloc = alloc
        self.power_main_w = client_power_w(
            alloc.owner_main, alloc.psd_main_w_hz, d.main.subchannel_hz, num_clients=d.num_clients
        )
        self.power_fed_w = client_power_w(
            alloc.owner_fed, alloc.psd_fed_w_hz, d.fed.subchannel_hz, num_clients=d.num_clients
        )
        self.harq_main = self._harq(d.main, alloc.owner_main, alloc.psd_main_w_hz)
        self.harq_fed = self._harq(d.fed, alloc.owner_fed, alloc.psd_fed_w_hz)
        self._set_gains(*self._gains)

    def _set_gains(self, gain_main: np.ndarray, gain_fed: np.ndarray, gain_down: np.ndarray) -> None:
        d, a = self._drop, self._alloc
        self._gains = (gain_main, gain_fed, gain_down)
        self.rate_main_bps = link_rates_bps(
            d.main, a.owner_main, a.psd_main_w_hz, num_clients=d.num_clients, gain=gain_main
        )
        self.rate_fed_bps = link_rates_bps(
            d.fed, a.owner_fed, a.psd_fed_w_hz, num_clients=d.num_clients, gain=gain_fed
        )
        downlink = getattr(d.main.rate, "downlink", None)
        self.rate_down_bps = downlink_rates_bps(
            gain_down, self._config, d.main.noise_psd_w_hz, downlink=downlink
        )

    def redraw(self) -> None:
        """Draw a new fading block (only call when a fading switch is on)."""
        k, rng = self._drop.num_clients, self._rng
        g_main = self._base_main[:, None] * channel.rayleigh_power_gains(
            rng, (k, self._drop.main.num_subchannels)
        )
        g_fed = self._base_fed[:, None] * channel.rayleigh_power_gains(
            rng, (k, self._drop.fed.num_subchannels)
        )
        g_down = self._base_main * channel.rayleigh_power_gains(rng, k)
        self._set_gains(g_main, g_fed, g_down)
