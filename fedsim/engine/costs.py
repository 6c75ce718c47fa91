"""What every engine event moves and computes, and how long it takes on the current channel block.

Sizes come from the workload helpers of ``fedsim.core.delay`` (FLOPs and bits per sample); durations are
``flops / flops_per_s`` and ``bits / rate_bps``. Nothing here calls ``fedsim.core.delay.delays``: that is
the reference the engine is tested against.
"""

from __future__ import annotations

import math

import numpy as np

from fedsim.core.allocation import Allocation
from fedsim.core.delay import SampleSizes, sample_sizes
from fedsim.core.system import Drop
from fedsim.core.workload import Workload
from fedsim.engine.channel_state import ChannelState
from fedsim.engine.config import EngineConfig
from fedsim.engine.energy import compute_energy_j
from fedsim.errors import InputError


def transfer_s(bits: np.ndarray, rate_bps: np.ndarray) -> np.ndarray:
    """bits / rate [s]; nothing to send takes 0 s, something on a zero rate takes inf (never NaN)."""
    bits, rate_bps = np.asarray(bits, float), np.asarray(rate_bps, float)
    if bits.shape != rate_bps.shape:
        bits, rate_bps = np.broadcast_arrays(bits, rate_bps)
    out = np.where(bits > 0, np.inf, 0.0)
    np.divide(bits, rate_bps, out=out, where=rate_bps > 0)
    return out


class HarqDurations:
    """Upload durations with HARQ retransmissions: reading entry k IS one transfer of client k, drawn from the
    link's sampler (``fedsim.radio.nr_harq``: TB errors in aggregate, inner- or outer-loop link adaptation)
    with ``rng``; with the inner loop the mean is bits / rate.

    It stands in for the list of durations that the actors index once per transfer."""

    def __init__(self, bits, transfers, rng: np.random.Generator):
        self._bits = [float(b) for b in bits]
        self._transfers, self._rng = transfers, rng

    def __len__(self) -> int:
        return len(self._bits)

    def __getitem__(self, k: int) -> float:
        return self._transfers.duration_s(k, self._bits[k], self._rng)


def _flops_per_cycle(drop: Drop, config: EngineConfig) -> np.ndarray | float:
    """Client FLOPs per cycle: the config's value, else the drop's (K,) ratio of FLOP/s to cycles/s."""
    if config.energy_flops_per_cycle is not None:
        return config.energy_flops_per_cycle
    if drop.client_cycles_per_s is None:
        raise InputError(
            "engine.energy_flops_per_cycle: needed for the energy model when the drop has no "
            "client_cycles_per_s"
        )
    return drop.client_flops_per_s / drop.client_cycles_per_s


def event_sizes(workload: Workload, alloc: Allocation, batch_size: int) -> SampleSizes:
    """Sizes of every event of one client per local iteration (batch of ``batch_size`` samples)."""
    return sample_sizes(workload, alloc.cuts, alloc.ranks).per_batch(batch_size)


class Costs:
    """Durations and energies of every event, cached per channel block and per round.

    Durations are Python lists indexed by client so the SimPy processes read them without numpy
    overhead. ``new_block()`` refreshes the transfer times after a channel redraw; ``new_round(slowdown)``
    sets this round's compute times (stragglers run slower).
    """

    def __init__(self, drop: Drop, sizes: SampleSizes, chan: ChannelState, config: EngineConfig):
        self.chan, self._drop, self._config = chan, drop, config
        self._slowdown = np.ones(drop.num_clients)
        self.set_sizes(sizes)

    def set_sizes(self, sizes: SampleSizes) -> None:
        """(Re)derive every duration and energy from ``sizes`` (live mode: the cuts or ranks changed)."""
        drop, chan, config = self._drop, self.chan, self._config
        self.sizes = sizes
        self._fwd_s = sizes.client_fwd_flops / drop.client_flops_per_s
        self._bwd_s = sizes.client_bwd_flops / drop.client_flops_per_s
        per_cycle = _flops_per_cycle(drop, config)
        energy = lambda flops: compute_energy_j(  # noqa: E731
            flops, drop.client_flops_per_s, per_cycle, capacitance=config.effective_capacitance
        )
        self.fwd_j = energy(sizes.client_fwd_flops).tolist()
        self.bwd_j = energy(sizes.client_bwd_flops).tolist()
        self.power_main_w = chan.power_main_w.tolist()
        self.power_fed_w = chan.power_fed_w.tolist()
        f_s = drop.server_flops_per_s
        self.server_fwd_each_s = (sizes.server_fwd_flops / f_s).tolist()
        self.server_bwd_each_s = (sizes.server_bwd_flops / f_s).tolist()
        self._server_all = (
            float(sizes.server_fwd_flops.sum() / f_s),
            float(sizes.server_bwd_flops.sum() / f_s),
        )
        self.new_round(self._slowdown)
        self.new_block()

    def new_block(self) -> None:
        """Recompute transfer times from the channel's current rates."""
        chan, sizes = self.chan, self.sizes
        self.act_up_s = transfer_s(sizes.act_bits, chan.rate_main_bps).tolist()
        self.lora_up_s = transfer_s(sizes.lora_bits, chan.rate_fed_bps).tolist()
        self.grad_down_s = transfer_s(sizes.act_bits, chan.rate_down_bps).tolist()
        if chan.harq_main is not None:
            self.act_up_s = HarqDurations(sizes.act_bits, chan.harq_main, chan.harq_rng)
        if chan.harq_fed is not None:
            self.lora_up_s = HarqDurations(sizes.lora_bits, chan.harq_fed, chan.harq_rng)

    def new_round(self, slowdown: np.ndarray) -> None:
        """Set this round's client compute times; ``slowdown`` (K,) >= 1 multiplies them."""
        self._slowdown = slowdown
        self.fwd_s = (self._fwd_s * slowdown).tolist()
        self.bwd_s = (self._bwd_s * slowdown).tolist()

    def server_s(self, clients: list[int], num_clients: int) -> tuple[float, float]:
        """Server FP and BP times on the concatenated batches of ``clients`` [s] (eqs. 11, 12)."""
        if len(clients) == num_clients:
            return self._server_all
        idx = np.asarray(clients, dtype=int)
        f_s = self._drop.server_flops_per_s
        return (
            float(self.sizes.server_fwd_flops[idx].sum() / f_s),
            float(self.sizes.server_bwd_flops[idx].sum() / f_s),
        )

    def block_move_s(self, client: int, bits: float, to_client: bool) -> float:
        """A moved block's LoRA state to client k (downlink) or from it to the main server (main link) [s]."""
        rate = self.chan.rate_down_bps if to_client else self.chan.rate_main_bps
        return float(transfer_s(bits, rate[client]))

    def reallocate_bits(self) -> float:
        """Size of the broadcast of a new radio allocation: (M + N) (ceil(log2 K) + 32) bits, each subchannel's
        owner index and its PSD as a 32-bit float."""
        d = self._drop
        owner_bits = math.ceil(math.log2(d.num_clients)) if d.num_clients > 1 else 0
        return float((d.main.num_subchannels + d.fed.num_subchannels) * (owner_bits + 32))

    def reallocate_s(self) -> float:
        """The new allocation's broadcast to all clients at the weakest downlink rate [s]:
        (M + N) (ceil(log2 K) + 32) / min_k R_down,k."""
        return float(transfer_s(self.reallocate_bits(), self.chan.rate_down_bps.min()))

    def broadcast_s(self, clients: list[int]) -> float:
        """Multicast of the aggregated LoRA to ``clients``: largest LoRA at the weakest downlink rate [s]."""
        if not clients:
            return 0.0
        idx = np.asarray(clients, dtype=int)
        return float(transfer_s(self.sizes.lora_bits[idx].max(), self.chan.rate_down_bps[idx].min()))
