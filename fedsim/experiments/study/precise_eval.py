"""A precise, paired evaluation of a study's trained models on the whole validation split.

A study's curves are evaluated on a small fixed subset (cheap, but its two halves differ by a few per cent).
``evaluate_study`` takes each finished run's final checkpoint (``<results>/checkpoints/``), rebuilds the
model it deployed (split-fed: the layer-wise global model) and scores every validation example (or the
first N), keeping each example's summed token NLL and token count in ``<results>/precise/``. Runs are then
compared on the SAME examples: the split-fed - centralized gap per (rank, seed) and each rank against the
lowest (per scheme and seed) come with a 95 % CI from a bootstrap over the validation MRs (an MR's
references are correlated, so they are resampled together).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fedsim.errors import InputError

BOOTSTRAP_RESAMPLES = 4000


def checkpoint_digest(path: Path) -> str:
    """The sha256 a checkpoint carries in its header (of the whole file for an older one without it)."""
    import hashlib

    from fedsim.learn.checkpoint import MAGIC

    with open(path, "rb") as fh:
        head = fh.read(len(MAGIC) + 65)
        if head.startswith(MAGIC):
            return head[len(MAGIC) : len(MAGIC) + 64].decode("ascii")
        fh.seek(0)
        digest = hashlib.sha256()
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
        return digest.hexdigest()


def evaluate_checkpoint(
    path: Path,
    samples: int | None = None,
    progress: bool = True,
    *,
    device: str | None = None,
    payload: dict | None = None,
) -> pd.DataFrame:
    """One row per validation example (the first ``samples``, default all) for the model the checkpoint at
    ``path`` deploys (``payload``: its contents, when already read), on ``device`` (default: the run's own):
    run, scheme, rank, seed, step, steps, checkpoint (its sha256), example, mr (index of its distinct MR),
    nll, tokens."""
    from fedsim.learn.checkpoint import read_payload
    from fedsim.learn.config import TrainConfig
    from fedsim.learn.federated.systems import build_system
    from fedsim.learn.setup import load

    digest = checkpoint_digest(path)
    payload = read_payload(path) if payload is None else payload
    cfg = TrainConfig.parse({**payload["config"], **({} if device is None else {"device": device})})
    model, _, data = load(cfg, progress=False)
    system = build_system(model, cfg, data.train, partition=data.partition)
    system.load_state_dict(payload["system"])
    n = len(data.validation) if samples is None else min(int(samples), len(data.validation))
    indices = np.arange(n)
    nll, tokens = system.example_nll(data.validation, indices, cfg.batch_size * cfg.num_clients, progress=progress)
    mr_ids = {mr: i for i, mr in enumerate(dict.fromkeys(mr for mr, _ in data.validation.pairs))}
    return pd.DataFrame(
        {
            "run": path.stem,
            "scheme": cfg.scheme,
            "rank": int(cfg.rank),
            "seed": int(cfg.seed),
            "step": int(payload["step"]),
            "steps": int(cfg.steps),
            "checkpoint": digest,
            "example": indices,
            "mr": [mr_ids[data.validation.pairs[i][0]] for i in indices],
            "nll": nll,
            "tokens": tokens,
        }
    )


def _ppl(nll, tokens) -> float:
    """exp(token-weighted mean NLL): the perplexity of examples given their summed NLL and token counts."""
    return math.exp(float(np.sum(nll)) / float(np.sum(tokens)))


def run_summary(examples: pd.DataFrame) -> pd.DataFrame:
    """Per run: val PPL over all its examples, the PPL of the even and odd examples, and their difference
    relative to the PPL (the evaluation noise, as the study's ``eval_noise_pct``)."""
    rows = []
    for run, part in examples.groupby("run", sort=True):
        nll, tok = part["nll"].to_numpy(), part["tokens"].to_numpy()
        even, odd = part["example"].to_numpy() % 2 == 0, part["example"].to_numpy() % 2 == 1
        ppl, ppl_a, ppl_b = (_ppl(nll[m], tok[m]) for m in (slice(None), even, odd))
        first = part.iloc[0]
        rows.append({"run": run, "scheme": first["scheme"], "rank": int(first["rank"]), "seed": int(first["seed"]),
                     "step": int(first["step"]), "examples": len(part), "tokens": int(tok.sum()), "val_ppl": ppl,
                     "val_ppl_a": ppl_a, "val_ppl_b": ppl_b,
                     "eval_noise_pct": 100 * abs(ppl_a - ppl_b) / ppl})  # fmt: skip
    return pd.DataFrame(rows)


def paired_gap(a: pd.DataFrame, b: pd.DataFrame, rng: np.random.Generator,
               *,
               resamples: int = BOOTSTRAP_RESAMPLES) -> dict[str, float]:  # fmt: skip
    """PPL(a) - PPL(b) on the same examples (also in percent of PPL(b)) and its 95 % percentile-bootstrap CI
    over the MRs (each resample draws the distinct MRs with replacement and keeps all their references)."""
    a, b = a.sort_values("example"), b.sort_values("example")
    if not np.array_equal(a["example"].to_numpy(), b["example"].to_numpy()):
        raise InputError("paired gap: the two runs were evaluated on different examples")
    mr = a["mr"].to_numpy()
    _, mr = np.unique(mr, return_inverse=True)
    m = int(mr.max()) + 1
    per_mr = [np.bincount(mr, weights=frame[col].to_numpy(), minlength=m)
              for frame in (a, b) for col in ("nll", "tokens")]  # fmt: skip
    nll_a, tok_a, nll_b, tok_b = per_mr
    ppl_b = _ppl(nll_b, tok_b)
    gap = _ppl(nll_a, tok_a) - ppl_b
    weights = rng.multinomial(m, np.full(m, 1.0 / m), size=resamples).astype(float)  # (resamples, MRs)
    boot = np.exp(weights @ nll_a / (weights @ tok_a)) - np.exp(weights @ nll_b / (weights @ tok_b))
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"gap_ppl": gap, "gap_lo": float(lo), "gap_hi": float(hi), "mrs": m, "gap_pct": 100 * gap / ppl_b}


def gap_table(examples: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """split_fed - centralized per (rank, seed) with both runs, paired on the same examples."""
    rng = np.random.default_rng(seed)
    rows = []
    for (rank, run_seed), part in examples.groupby(["rank", "seed"], sort=True):
        schemes = dict(tuple(part.groupby("scheme")))
        if not {"split_fed", "centralized"} <= schemes.keys():
            continue
        sf, ce = schemes["split_fed"], schemes["centralized"]
        rows.append(
            {"rank": int(rank), "seed": int(run_seed), "examples": len(sf), **paired_gap(sf, ce, rng)}
        )
    return pd.DataFrame(rows)


def _kept(path: Path, digest: str) -> pd.DataFrame | None:
    """A run's kept per-example scores if they read back and belong to the checkpoint with ``digest``."""
    try:
        frame = pd.read_csv(path, dtype={"checkpoint": str})
    except (OSError, ValueError, pd.errors.ParserError):  # missing, truncated or garbled: score it again
        return None
    columns = {"step", "steps", "checkpoint", "example", "mr", "nll", "tokens"}
    if not columns <= set(frame.columns) or not len(frame) or set(frame["checkpoint"]) != {digest}:
        return None  # an older checkpoint's scores (the study was rerun or extended)
    return frame


def rank_table(examples: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per (scheme, seed): every rank against the lowest rank of that scheme and seed, paired on the same
    examples (what the LoRA rank does to the final model)."""
    rng = np.random.default_rng(seed)
    rows = []
    for (scheme, run_seed), part in examples.groupby(["scheme", "seed"], sort=True):
        runs = dict(tuple(part.groupby("rank")))
        low = min(runs)
        for rank in sorted(runs)[1:]:
            rows.append({"scheme": scheme, "seed": int(run_seed), "rank": int(rank), "vs_rank": int(low),
                         **paired_gap(runs[rank], runs[low], rng)})  # fmt: skip
    return pd.DataFrame(rows)


def evaluate_study(
    root: Path, samples: int | None = None, progress: bool = True, *, device: str | None = None
) -> list[str]:
    """Evaluate every finished run's final checkpoint under ``root`` (kept per run in ``precise/``, reused
    on a rerun), write ``tables/precise_eval.{csv,md}``, ``tables/precise_gap.csv`` (split-fed - centralized) and
    ``tables/precise_rank.csv`` (each rank - the lowest); the report lines."""
    from fedsim.atomic import atomic_write_csv, atomic_write_text
    from fedsim.experiments.harness.lock import folder_lock
    from fedsim.experiments.montecarlo.summary import to_markdown
    from fedsim.learn.checkpoint import read_payload

    root = Path(root)
    checkpoints = sorted((root / "checkpoints").glob("*.pt"))
    if not checkpoints:
        raise InputError(
            f"{root}: no checkpoints/*.pt (a study run with training.checkpoint_every keeps them)"
        )
    label = "all" if samples is None else str(int(samples))
    parts, skipped = [], []
    with folder_lock(root, "fedsim evaluate"):  # not while a study writes its checkpoints
        for path in tqdm(checkpoints, disable=not progress, desc="precise evaluation", unit="run"):
            kept = root / "precise" / f"{path.stem}_n{label}.csv"
            frame = _kept(kept, checkpoint_digest(path))
            if frame is None:
                payload = read_payload(path)
                step, steps = int(payload["step"]), int(payload["config"]["steps"])
                if step != steps:  # a run still training (or stopped): not scored
                    skipped.append(f"{path.stem} (step {step} of {steps})")
                    continue
                frame = evaluate_checkpoint(path, samples, progress, device=device, payload=payload)
                atomic_write_csv(kept, frame)
            parts.append(frame)
    if not parts:
        raise InputError(
            f"{root}: no run has finished (checkpoints not at their last step: {', '.join(skipped)})"
        )
    examples = pd.concat(parts, ignore_index=True)
    summary, gaps, ranks = run_summary(examples), gap_table(examples), rank_table(examples)
    atomic_write_csv(root / "tables" / "precise_eval.csv", summary)
    atomic_write_csv(root / "tables" / "precise_gap.csv", gaps)
    atomic_write_csv(root / "tables" / "precise_rank.csv", ranks)
    lines = [f"## Precise evaluation ({summary['examples'].iloc[0]} validation examples per run, paired)", "",
             to_markdown(summary.drop(columns=["run"])), ""]  # fmt: skip
    if len(gaps):
        lines += ["split_fed - centralized, same examples, 95 % bootstrap CI over the MRs:", "",
                  to_markdown(gaps), ""]  # fmt: skip
    if len(ranks):
        lines += ["each rank - the lowest rank (same scheme and seed), same examples, 95 % bootstrap CI over the MRs:",
                  "", to_markdown(ranks), ""]  # fmt: skip
    if skipped:
        lines.append(f"not finished, left out: {', '.join(skipped)}")
    atomic_write_text(root / "tables" / "precise_eval.md", "\n".join(lines) + "\n")
    return lines
