"""Row columns that show WHY a scheme's delay is what it is: its decisions (subchannels, powers) and the
split of the total delay into its terms. Additive to a task's row; every value is a plain scalar or JSON."""

from __future__ import annotations

import json

import numpy as np

from fedsim.core.allocation import Allocation
from fedsim.core.delay import Delays
from fedsim.core.system import Drop, Link

# Terms of eq. (17) charged over the whole run, in the order of one local iteration; they sum to T.
BREAKDOWN_COLUMNS = ("delay_T1_s", "delay_server_s", "delay_T2_s", "delay_T3_s")


def _per_client(owner: np.ndarray, values: np.ndarray, num_clients: int) -> np.ndarray:
    """Sum of ``values`` over each client's subchannels, (K,)."""
    used = owner >= 0
    return np.bincount(owner[used], weights=values[used], minlength=num_clients)


def _link_columns(prefix: str, link: Link, owner: np.ndarray, psd_w_hz: np.ndarray, k: int) -> dict:
    counts = np.bincount(owner[owner >= 0], minlength=k)
    power_w = _per_client(owner, np.asarray(psd_w_hz, float) * link.subchannel_hz, k)
    return {
        f"subchannels_{prefix}": json.dumps(counts.tolist()),
        f"power_{prefix}_w": json.dumps(power_w.tolist()),
        f"power_{prefix}_total_w": float(power_w.sum()),
        f"p_th_{prefix}_w": float(link.p_th_w),
    }


def breakdown(d: Delays) -> dict[str, float]:
    """The total delay T of eq. (17) split into E(r)·I·T1, E(r)·I·(server fwd + bwd), E(r)·I·T2 and the
    LoRA upload E(r)·T3 (reading D1) or E(r)·I·T3 (reading D2) [s]; the four sum to T."""
    per_iteration = d.rounds * d.local_iterations
    uploads = per_iteration if d.upload_every_local_iteration else d.rounds
    return {
        "delay_T1_s": float(per_iteration * d.T1_s),
        "delay_server_s": float(per_iteration * (d.t_server_fwd_s + d.t_server_bwd_s)),
        "delay_T2_s": float(per_iteration * d.T2_s),
        "delay_T3_s": float(uploads * d.T3_s),
    }


def decision_columns(drop: Drop, alloc: Allocation, d: Delays, *, rounds_from: str) -> dict:
    """Subchannel counts and transmit powers per client on both links (JSON lists, [W]), their totals
    beside the thresholds p_th, the drop's compute (client mean and server [FLOP/s]) and p_max [W], the
    delay breakdown [s], and whether E(r) came from an inline table or measured records."""
    k = drop.num_clients
    return {
        **_link_columns("main", drop.main, alloc.owner_main, alloc.psd_main_w_hz, k),
        **_link_columns("fed", drop.fed, alloc.owner_fed, alloc.psd_fed_w_hz, k),
        "p_max_w": float(np.asarray(drop.p_max_w).max()),
        "client_flops_per_s_mean": float(np.asarray(drop.client_flops_per_s).mean()),
        "server_flops_per_s": float(drop.server_flops_per_s),
        **breakdown(d),
        "rounds_from": rounds_from,
    }
