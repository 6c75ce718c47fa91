"""A link and its rate contract: what a radio model provides to the optimiser, the delay model and the engine.

A **radio model** turns a scenario's ``[system]`` and ``[radio]`` sections and a seeded generator into a
``Drop`` (client placement, per-link large-scale gains, compute). Each of the drop's two uplinks carries a
**link rate** (``Link.rate``) that maps a client's total transmit power and number of subchannels to its
rate; the optimiser (greedy assignment, exact power control), the analytical delay model (eqs. 9, 14) and
the event engine all ask that one object, so they can never disagree about the radio.

``Link.rate is None`` means the paper's Shannon FDMA rate evaluated by ``channel.fdma`` and the closed forms
of ``fedsim.optimize.power`` (kept verbatim so built-in results stay bit for bit). ``ShannonRate`` is the same
model through this interface; tests run the generic solvers on it and compare them with the closed forms.
``link_rate(link)`` gives every link a rate object. Where the two paths are different algorithms, one function
picks: client rates in ``fedsim.core.delay.link_rates_bps`` (delay model and engine), power control in
``fedsim.optimize.power.min_time_on_link`` and count refinement in ``fedsim.optimize.joint.exact_counts``.

A link rate must be **non-decreasing in power and in the number of subchannels**; that is what makes the
bisection power solver exact for a fixed assignment (``fedsim.optimize.power_rate``), whatever the rate's
shape. Below the contract: the finish time of a transfer at a rate (``finish_time_rate_s``) and the PSDs of
the 38.213 open-loop powers of a rate model that carries them (``open_loop_psd``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from fedsim.core.system import Drop, Link, SystemParams

LN2 = float(np.log(2.0))


@runtime_checkable
class LinkRate(Protocol):
    """Rate of a client on one FDMA uplink as a function of its total power and subchannel count.

    All methods broadcast over their array arguments.
    """

    name: str

    def rate_bps(self, power_w, n_sub, gain) -> np.ndarray:
        """Rate [bit/s] with total power ``power_w`` [W] spread uniformly over ``n_sub`` subchannels and
        end-to-end power gain ``gain`` (linear). Non-decreasing in ``power_w`` and ``n_sub``; 0 for n_sub 0."""
        ...

    def min_power_w(self, rate_bps, n_sub, gain) -> np.ndarray:
        """The least total power [W] whose rate reaches ``rate_bps`` on ``n_sub`` subchannels (the generalised
        inverse of ``rate_bps``); inf when no power does (rate above the model's ceiling, no subchannel)."""
        ...


@runtime_checkable
class RadioModel(Protocol):
    """A radio model: draws drops whose links carry its rate (see module docstring)."""

    name: str
    description: str

    def draw_drop(self, system: SystemParams, radio, rng: np.random.Generator) -> Drop:
        """One placement of ``system`` under the ``[radio]`` settings ``radio`` (a ``RadioSection``)."""
        ...


class ShannonRate:
    """The paper's rate, eq. (9), through the ``LinkRate`` interface: ``n B log2(1 + P g / (N0 n B))``.

    Attributes:
        subchannel_hz: bandwidth of one subchannel B [Hz]; noise_psd_w_hz: N0 [W/Hz].
    """

    name = "shannon"

    def __init__(self, subchannel_hz: float, noise_psd_w_hz: float):
        self.subchannel_hz, self.noise_psd_w_hz = float(subchannel_hz), float(noise_psd_w_hz)

    def rate_bps(self, power_w, n_sub, gain) -> np.ndarray:
        bw = np.asarray(n_sub, float) * self.subchannel_hz
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = bw * np.log1p(np.asarray(power_w, float) * gain / (self.noise_psd_w_hz * bw)) / LN2
        return np.where(bw > 0, rate, 0.0)

    def min_power_w(self, rate_bps, n_sub, gain) -> np.ndarray:
        bw = np.asarray(n_sub, float) * self.subchannel_hz
        rate_bps = np.asarray(rate_bps, float)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            p = self.noise_psd_w_hz * bw / gain * np.expm1(LN2 * rate_bps / bw)
        p = np.where(rate_bps > 0, p, 0.0)
        return np.where((rate_bps > 0) & ~((bw > 0) & (np.asarray(gain) > 0)), np.inf, p)


def link_rate(link: Link) -> LinkRate:
    """The rate model a link's clients see: its own (``Link.rate``), or the paper's eq. (9) when it has none.
    ``ShannonRate`` computes D_k(n) with the same float operations as ``fedsim.optimize.power.finish_time_s``."""
    return link.rate if link.rate is not None else ShannonRate(link.subchannel_hz, link.noise_psd_w_hz)


def client_power_and_counts(
    owner: np.ndarray, psd_w_hz: np.ndarray, subchannel_hz: float, *, num_clients: int
) -> tuple[np.ndarray, np.ndarray]:
    """(K,) total power [W] (sum of p_i B over a client's subchannels) and (K,) subchannel counts."""
    owner = np.asarray(owner, dtype=int)
    used = owner >= 0
    power = np.bincount(
        owner[used], weights=np.asarray(psd_w_hz, float)[used] * subchannel_hz, minlength=num_clients
    )
    return power.astype(float), np.bincount(owner[used], minlength=num_clients)


def link_client_rates_bps(
    link: Link, owner: np.ndarray, psd_w_hz: np.ndarray, *, num_clients: int, gain=None
) -> np.ndarray:
    """Each client's rate on a link with a ``LinkRate`` (its power spread over its subchannels), (K,) [bit/s].

    A rate model sees a client's total power and count only: the PSD is uniform over a client's
    subchannels (the optimum on a flat channel, and what 3GPP uplink power control does). ``gain`` replaces
    the link's own gains (K,) when given."""
    gain = np.asarray(link.gain if gain is None else gain, float)
    if gain.ndim != 1:
        raise ValueError(f"rate model {link.rate.name!r} needs a flat channel (gain of shape (K,))")
    power, counts = client_power_and_counts(owner, psd_w_hz, link.subchannel_hz, num_clients=num_clients)
    return np.asarray(link.rate.rate_bps(power, counts, gain), float)


def finish_time_rate_s(rate, power_w, n_sub, *, gain, offset_s, load_bits) -> np.ndarray:
    """offset + load / R(power, n, gain), broadcast [s]; load 0 finishes at its offset, rate 0 never (inf)."""
    load_bits = np.asarray(load_bits, float)
    r = rate.rate_bps(power_w, n_sub, gain)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(load_bits > 0, load_bits / r, 0.0)
    t = np.where((load_bits > 0) & ~(r > 0), np.inf, t)
    return offset_s + t


def open_loop_psd(link: Link, owner: np.ndarray, p_max_w: np.ndarray, *, offset_s, load_bits):
    """PSDs (S,) of the 38.213 open-loop powers on one link for assignment ``owner`` (within the link's p_th),
    and the link's worst finish time [s] with them."""
    owner = np.asarray(owner, dtype=int)
    k = np.asarray(p_max_w).shape[0]
    counts = np.bincount(owner[owner >= 0], minlength=k)
    power = link.rate.open_loop.power_w(link.gain, counts, np.asarray(p_max_w, float), p_th_w=link.p_th_w)
    psd = np.zeros(owner.shape[0])
    used = owner >= 0
    psd[used] = power[owner[used]] / (counts[owner[used]] * link.subchannel_hz)
    total, n = client_power_and_counts(owner, psd, link.subchannel_hz, num_clients=k)
    time_s = float(
        np.max(
            finish_time_rate_s(link.rate, total, n, gain=link.gain, offset_s=offset_s, load_bits=load_bits)
        )
    )
    return psd, time_s
