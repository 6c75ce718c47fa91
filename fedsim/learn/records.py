"""``ConvergenceRecord``: the measured learning curve and E(r) that replay-mode co-simulation reads."""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fedsim.atomic import atomic_write_text
from fedsim.errors import InputError

CHECKSUM = "sha256"  # key of the content checksum in a saved record (not a field of the record)
SCHEMES = ("split_fed", "centralized", "spec_proposed")


@dataclass
class ConvergenceRecord:
    """One (model, scheme, rank) training run.

    ``rounds_to_target`` is E(r): global rounds (steps / I) until validation perplexity first fell to
    ``target_ppl`` or below; None if it never did. ``curve`` rows hold step, round, train_loss, val_ppl and
    omit a key rather than store NaN. ``final`` (optional; absent in older records) holds the end-of-run
    evaluation: ``test_ppl`` (over ``test_samples`` test examples), ``bleu`` and ``rouge_l`` (0-100, over
    ``n_mrs`` distinct test MRs, at most ``max_new_tokens`` generated tokens each). ``config`` (optional) is
    the run's whole ``TrainConfig`` (seed, lr, ...). ``measured`` (optional) is how the run ran on its machine:
    training throughput in real tokens per second and peak memory in bytes.
    """

    model: str
    scheme: str
    rank: int
    num_clients: int
    batch_size: int
    local_iterations: int
    seq_len: int
    target_ppl: float | None
    rounds_to_target: float | None
    curve: list[dict] = field(default_factory=list)
    source: str = ""
    final: dict | None = None
    config: dict | None = None  # the full TrainConfig of the run (absent in older records)
    measured: dict | None = None  # how the run ran: train_tokens_per_s, peak_memory_bytes (absent in older)

    def save(self, path: str | Path) -> None:
        """Write JSON atomically (temp file, fsync, rename) with the sha256 of its content."""
        data = json.loads(json.dumps(asdict(self), allow_nan=False))  # what load() will see
        data[CHECKSUM] = record_checksum(data)  # load() verifies it: a damaged record is refused
        atomic_write_text(path, json.dumps(data, indent=1, allow_nan=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ConvergenceRecord:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"convergence record {path}: file not found")
        try:
            data = json.loads(path.read_text())
            saved = data.pop(CHECKSUM, None)  # absent in records of older fedsim versions
            if saved is not None and saved != record_checksum(data):
                raise InputError(
                    f"convergence record {path}: checksum does not match (damaged, or edited after it was "
                    f"written; to keep an intended edit, delete its {CHECKSUM!r} line)"
                )
            if not isinstance(data.get("final") or {}, dict):
                raise TypeError("'final' must be an object")
            return cls(**data)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, AttributeError) as exc:
            raise InputError(f"convergence record {path}: not a valid record ({exc})") from None

    def file_name(self) -> str:
        """Conventional file name under results/records/: ``<model>_<scheme>_r<rank>.json``."""
        return f"{self.model}_{self.scheme}_r{self.rank}.json"


def record_checksum(data: dict) -> str:
    """sha256 of a record's fields in canonical JSON (sorted keys; floats in their round-trip form)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def rounds_to_target(curve: list[dict], target_ppl: float | None) -> float | None:
    """Round of the first curve row whose val_ppl <= target (None if none, or no target)."""
    if target_ppl is None:
        return None
    for row in curve:
        if "val_ppl" in row and row["val_ppl"] <= target_ppl:
            return float(row["round"])
    return None


def rounds_to_target_interpolated(curve: list[dict], target_ppl: float) -> float | None:
    """The round at which the curve crosses the target, interpolated linearly in log PPL between the last
    evaluation above the target and the first at or below it (None if never reached). Finer than
    :func:`rounds_to_target`, whose answer is always a round on the evaluation grid (its upper bound)."""
    evals = [row for row in curve if "val_ppl" in row]
    for i, row in enumerate(evals):
        if row["val_ppl"] <= target_ppl:
            if i == 0:
                return float(row["round"])
            before = evals[i - 1]
            log_hi, log_lo = math.log(before["val_ppl"]), math.log(row["val_ppl"])
            share = (log_hi - math.log(target_ppl)) / (log_hi - log_lo)
            return float(before["round"] + share * (row["round"] - before["round"]))
    return None


PLATEAU_EVALS = 3  # the plateau of a run: the mean val PPL of its last this many evaluations


def plateau_ppl(curve: list[dict], evals: int = PLATEAU_EVALS) -> float:
    """Mean validation PPL of the last ``evals`` evaluations: a run's level, less noisy than its final one."""
    values = [row["val_ppl"] for row in curve if "val_ppl" in row][-evals:]
    return float(np.mean(values)) if values else math.nan


def plateau_target(records: list[ConvergenceRecord], within_pct: float) -> tuple[float, float]:
    """``(target, best)``: the PPL within ``within_pct`` % of the best plateau any rank reaches, where best is
    the lowest over ranks of the mean over a rank's records (its seeds) of :func:`plateau_ppl`, and
    target = best x (1 + within_pct / 100). The rank-study page's relative targets use the same rule."""
    per_rank: dict[int, list[float]] = {}
    for rec in records:
        per_rank.setdefault(rec.rank, []).append(plateau_ppl(rec.curve))
    means = [float(np.mean(v)) for v in per_rank.values() if all(math.isfinite(x) for x in v)]
    if not means:
        raise InputError("records: no record has a validation PPL, so there is no plateau to set a target by")
    best = min(means)
    return best * (1 + within_pct / 100), best


def _rounds_of(rec: ConvergenceRecord, target_ppl: float | None, interpolate: bool) -> float | None:
    """A record's E(r): at ``target_ppl`` from its curve (on the evaluation grid, or ``interpolate``d in log
    PPL between the evaluations around the crossing), else its own ``rounds_to_target``."""
    if target_ppl is None:
        return rec.rounds_to_target
    if interpolate:
        return rounds_to_target_interpolated(rec.curve, target_ppl)
    return rounds_to_target(rec.curve, target_ppl)


def rounds_by_rank_per_seed(
    records: list[ConvergenceRecord], target_ppl: float | None = None, *, interpolate: bool = False
) -> dict[int, list[float]]:
    """E(r) of every seed per rank (the ranks ``rounds_by_rank`` keeps: every record reached the target)."""
    out: dict[int, list[float]] = {}
    for rec in sorted(records, key=lambda r: (r.rank, (r.config or {}).get("seed", 0))):
        rounds = _rounds_of(rec, target_ppl, interpolate)
        out.setdefault(rec.rank, []).append(math.nan if rounds is None else float(rounds))
    return {rank: values for rank, values in out.items() if all(math.isfinite(v) for v in values)}


def rounds_by_rank(
    records: list[ConvergenceRecord],
    target_ppl: float | None = None,
    aggregate: str = "mean",
    *,
    interpolate: bool = False,
) -> dict[int, float]:
    """E(r) per rank from records of one model and scheme.

    With ``target_ppl`` E(r) is recomputed from each record's curve at that target (the first evaluated round
    at or below it, or with ``interpolate`` the crossing interpolated in log PPL between evaluations),
    otherwise each record's own ``rounds_to_target`` is used. Several records of one rank (seeds) combine by ``aggregate`` (mean,
    median or max); a rank is kept only if every one of its records reached the target (one that never
    did cannot promise the target, so no optimiser may pick it).
    """
    if len({(r.model, r.scheme) for r in records}) > 1:
        raise InputError("records: rounds_by_rank needs records of one model and scheme")
    if aggregate not in _AGGREGATES:
        raise InputError(f"records: aggregate must be one of {', '.join(_AGGREGATES)}, got {aggregate!r}")
    per_rank: dict[int, list[float | None]] = {}
    seen: set[tuple[int, object]] = set()
    for rec in records:
        seed = (rec.config or {}).get("seed")
        if (rec.rank, seed) in seen:
            raise InputError(
                f"records: two records for rank {rec.rank}"
                + (f" and seed {seed}" if seed is not None else "")
            )
        seen.add((rec.rank, seed))
        per_rank.setdefault(rec.rank, []).append(_rounds_of(rec, target_ppl, interpolate))
    out = {
        rank: float(_AGGREGATES[aggregate]([float(v) for v in values]))
        for rank, values in per_rank.items()
        if all(v is not None and math.isfinite(v) for v in values)
    }
    if not out:
        raise InputError(
            "records: no record reached its target perplexity, so E(r) is unknown for every rank"
        )
    return dict(sorted(out.items()))


_AGGREGATES = {"mean": statistics.fmean, "median": statistics.median, "max": max}
