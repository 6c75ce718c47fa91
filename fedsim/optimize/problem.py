"""The optimisation problem (18) of one drop, and the result every solver returns.

``Problem`` bundles what is fixed (the drop, the workload, the training schedule and E(r)); ``Result``
carries the decisions, the delays evaluated by ``fedsim.core.delay.delays``, and how the solver got there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fedsim.core.allocation import Allocation
from fedsim.core.delay import Delays
from fedsim.core.system import Drop, Link
from fedsim.core.workload import Workload
from fedsim.errors import InputError

STATUSES = ("optimal", "converged", "max_iterations", "infeasible", "solver_failed")


@dataclass(frozen=True)
class Problem:
    """Problem (18) for one drop.

    Attributes:
        drop: the placement (gains, power caps, compute).
        workload: per-block FLOPs and bits per sample.
        batch_size: b, samples per client per local iteration.
        local_iterations: I, local iterations per global round.
        rounds_by_rank: E(r), global rounds to the target per candidate rank; its keys are the rank set R.
        upload_every_local_iteration: reading D2 of eq. (17) instead of D1.
        per_client_cuts: optimise one cut c_k per client (spec §10) instead of one common cut.
        rank_cut: SplitFT's cut-layer rank (spec §10c): this rank on each client's blocks c_k and c_k + 1,
            the chosen rank r on the others; the optimiser's delay terms and E(r) (read at r) account for it.
    """

    drop: Drop
    workload: Workload
    batch_size: int
    local_iterations: int
    rounds_by_rank: dict[int, float]
    upload_every_local_iteration: bool = False
    per_client_cuts: bool = False
    rank_cut: int | None = None

    def rank_layout(self, cuts: np.ndarray, rank: int) -> np.ndarray:
        """(K, J) ranks of an allocation with ``cuts`` and rank r: uniform, or the cut-layer ranks."""
        from fedsim.core.allocation import cut_layer_ranks, uniform_ranks

        j = self.workload.num_layers
        if self.rank_cut is None:
            return uniform_ranks(len(cuts), j, int(rank))
        return cut_layer_ranks(np.asarray(cuts, dtype=int), j, int(self.rank_cut), rank_others=int(rank))

    @property
    def ranks(self) -> tuple[int, ...]:
        """The candidate rank set R, ascending."""
        return tuple(sorted(int(r) for r in self.rounds_by_rank))

    @property
    def fading(self) -> bool:
        """True when either link has per-subchannel gains (K, S)."""
        return self.drop.main.gain.ndim == 2 or self.drop.fed.gain.ndim == 2


def _check_link(name: str, link: Link, k: int) -> None:
    if link.num_subchannels < k:
        raise InputError(
            f"{name}: {k} clients but only {link.num_subchannels} subchannels; every client needs at least one "
            f"(num_subchannels_{name} must be >= num_clients)"
        )
    if not (math.isfinite(link.p_th_w) and link.p_th_w > 0):
        raise InputError(f"p_th_{name}_w must be a finite power > 0 W, got {link.p_th_w}")
    if not (math.isfinite(link.subchannel_hz) and link.subchannel_hz > 0):
        raise InputError(f"{name} subchannel bandwidth must be > 0 Hz, got {link.subchannel_hz}")
    if not (math.isfinite(link.noise_psd_w_hz) and link.noise_psd_w_hz > 0):
        raise InputError(f"{name} noise PSD must be > 0 W/Hz, got {link.noise_psd_w_hz}")
    gain = np.asarray(link.gain, dtype=float)
    if link.rate is not None and gain.ndim != 1:
        raise InputError(
            f"{name}: the rate model {link.rate.name!r} needs flat gains of shape (K,), no fading"
        )
    if (
        gain.shape not in ((k,), (k, link.num_subchannels))
        or not np.all(np.isfinite(gain))
        or np.any(gain < 0)
    ):
        raise InputError(
            f"{name} gains must be finite, >= 0 and of shape (K,) or (K, S); got shape {gain.shape}"
        )


def validate_problem(problem: Problem) -> None:
    """Raise InputError naming the field when the problem is malformed (not merely infeasible)."""
    drop = problem.drop
    k = drop.num_clients
    if k < 1:
        raise InputError("num_clients must be >= 1")
    _check_link("main", drop.main, k)
    _check_link("fed", drop.fed, k)
    p_max = np.asarray(drop.p_max_w, dtype=float)
    if not np.all(np.isfinite(p_max)) or np.any(p_max <= 0):
        raise InputError(f"p_max_w must be finite and > 0 W for every client, got {p_max.tolist()}")
    f_k = np.asarray(drop.client_flops_per_s, dtype=float)
    if f_k.shape != (k,) or not np.all(np.isfinite(f_k)) or np.any(f_k <= 0):
        raise InputError("client_flops_per_s must be (K,) finite and > 0")
    if not (math.isfinite(drop.server_flops_per_s) and drop.server_flops_per_s > 0):
        raise InputError(f"server_flops_per_s must be > 0, got {drop.server_flops_per_s}")
    if int(problem.batch_size) != problem.batch_size or problem.batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1, got {problem.batch_size}")
    if int(problem.local_iterations) != problem.local_iterations or problem.local_iterations < 1:
        raise InputError(f"local_iterations must be an integer >= 1, got {problem.local_iterations}")
    if not problem.rounds_by_rank:
        raise InputError("rounds_by_rank must name at least one rank, e.g. {4: 180}")
    for r, e in problem.rounds_by_rank.items():
        if int(r) != r or r < 1:
            raise InputError(f"rounds_by_rank: ranks must be integers >= 1, got {r}")
        if not (math.isfinite(e) and e > 0):
            raise InputError(f"rounds_by_rank: E({r}) must be a finite number of rounds > 0, got {e}")
    if problem.workload.num_layers < 1:
        raise InputError("workload must have at least one block")
    if problem.rank_cut is not None and (int(problem.rank_cut) != problem.rank_cut or problem.rank_cut < 1):
        raise InputError(f"rank_cut must be an integer >= 1, got {problem.rank_cut}")


def _json_float(x: float) -> float | None:
    """JSON has no inf/nan: a non-finite number becomes null (the status says why)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _json_array(a: np.ndarray) -> list:
    a = np.asarray(a)
    if a.dtype.kind in "iub":
        return a.tolist()
    return [_json_array(row) for row in a] if a.ndim > 1 else [_json_float(v) for v in a]


def delays_to_dict(d: Delays) -> dict:
    """Every term of a ``Delays`` as JSON-able values."""
    out = {}
    for name in d.__dataclass_fields__:
        v = getattr(d, name)
        out[name] = (
            _json_array(v) if isinstance(v, np.ndarray) else (_json_float(v) if isinstance(v, float) else v)
        )
    return out


def link_to_dict(link: Link) -> dict:
    return {
        "num_subchannels": int(link.num_subchannels),
        "subchannel_hz": float(link.subchannel_hz),
        "noise_psd_w_hz": float(link.noise_psd_w_hz),
        "p_th_w": float(link.p_th_w),
        "gain": _json_array(link.gain),
        **({"rate": link.rate.name} if link.rate is not None else {}),
    }


def problem_to_dict(problem: Problem) -> dict:
    """The fixed inputs: drop, workload arrays and schedule, enough to recompute every delay."""
    drop, w = problem.drop, problem.workload
    return {
        "drop": {
            "positions_m": _json_array(drop.positions_m),
            "main_xy_m": [float(v) for v in drop.main_xy_m],
            "distance_main_m": _json_array(drop.distance_main_m),
            "distance_fed_m": _json_array(drop.distance_fed_m),
            "shadow_main_db": _json_array(drop.shadow_main_db),
            "shadow_fed_db": _json_array(drop.shadow_fed_db),
            "main": link_to_dict(drop.main),
            "fed": link_to_dict(drop.fed),
            "p_max_w": _json_array(drop.p_max_w),
            "client_flops_per_s": _json_array(drop.client_flops_per_s),
            "server_flops_per_s": float(drop.server_flops_per_s),
        },
        "workload": w.to_dict(),  # always finite, so plain JSON
        "batch_size": int(problem.batch_size),
        "local_iterations": int(problem.local_iterations),
        "rounds_by_rank": {str(r): float(e) for r, e in sorted(problem.rounds_by_rank.items())},
        "upload_every_local_iteration": bool(problem.upload_every_local_iteration),
        "per_client_cuts": bool(problem.per_client_cuts),
        **({} if problem.rank_cut is None else {"rank_cut": int(problem.rank_cut)}),
    }


@dataclass
class Result:
    """Decisions, delays and solver bookkeeping of one optimisation.

    Attributes:
        scheme: "proposed", "a".."d" or "brute_force".
        allocation: subchannel owners, PSDs, cuts and ranks.
        delays: every delay term, evaluated by ``fedsim.core.delay.delays``.
        status: one of STATUSES.
        solver_status: per sub-solver status strings (e.g. {"power_main": "optimal"}).
        iterations: outer (BCD) iterations run.
        history: total delay T [s] after each iteration.
        problem: the problem solved (kept so ``to_dict`` is self-contained).
    """

    scheme: str
    allocation: Allocation
    delays: Delays
    status: str
    solver_status: dict[str, str]
    iterations: int
    history: list[float]
    problem: Problem | None = field(default=None, repr=False)

    @property
    def rank(self) -> int:
        """The common LoRA rank chosen (with a cut-layer rank: the rank of the blocks away from the cuts)."""
        ranks = np.asarray(self.allocation.ranks)
        rank_cut = None if self.problem is None else self.problem.rank_cut
        others = ranks[ranks != rank_cut] if rank_cut is not None else ranks
        return int(others.flat[0]) if others.size else int(rank_cut)

    def to_dict(self) -> dict:
        """JSON-able record of inputs, decisions, delays and statuses (inf is written as null)."""
        a = self.allocation
        out = {
            "scheme": self.scheme,
            "status": self.status,
            "solver_status": dict(self.solver_status),
            "iterations": int(self.iterations),
            "history": [_json_float(t) for t in self.history],
            "allocation": {
                "owner_main": _json_array(a.owner_main),
                "owner_fed": _json_array(a.owner_fed),
                "psd_main_w_hz": _json_array(a.psd_main_w_hz),
                "psd_fed_w_hz": _json_array(a.psd_fed_w_hz),
                "cuts": _json_array(a.cuts),
                "ranks": _json_array(a.ranks),
            },
            "delays": delays_to_dict(self.delays),
        }
        if self.problem is not None:
            out["problem"] = problem_to_dict(self.problem)
        return out
