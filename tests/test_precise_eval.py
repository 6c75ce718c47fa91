"""``fedsim evaluate``: a study's final checkpoints scored per example on the validation split, paired."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from study_helpers import tiny_study

from fedsim.experiments.study.precise_eval import paired_gap
from fedsim.learn.split.parts import token_nll, token_nll_per_example

ROOT = Path(__file__).resolve().parents[1]


def test_per_example_nll_sums_to_the_training_nll():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=gen)
    labels = torch.randint(0, 11, (3, 7), generator=gen)
    labels[0, :3] = -100  # a prompt
    labels[2, 5:] = -100  # padding
    nll, count = token_nll_per_example(logits, labels)
    total, n = token_nll(logits, labels)
    assert nll.shape == (3,) and count.tolist() == [
        4,
        6,
        4,
    ]  # labels shift by one: position 0 is never predicted
    assert int(count.sum()) == n and float(nll.sum()) == pytest.approx(float(total), rel=1e-6)
    one, _ = token_nll(logits[1:2], labels[1:2])
    assert float(nll[1]) == pytest.approx(float(one), rel=1e-6)


def _frame(nll, tokens, mr) -> pd.DataFrame:
    return pd.DataFrame({"example": np.arange(len(nll)), "mr": mr, "nll": nll, "tokens": tokens})


def test_paired_gap_known_answer_and_ci():
    rng = np.random.default_rng(1)
    tokens = rng.integers(5, 40, 60).astype(float)
    mr = np.repeat(np.arange(12), 5)
    # the same NLL per token in every MR: every resample has the same PPLs, so the CI is the point
    gap = paired_gap(_frame(2.0 * tokens, tokens, mr), _frame(1.5 * tokens, tokens, mr), rng)
    assert gap["gap_ppl"] == pytest.approx(math.exp(2.0) - math.exp(1.5), rel=1e-12)
    assert gap["gap_lo"] == pytest.approx(gap["gap_ppl"], rel=1e-9) and gap["mrs"] == 12
    assert gap["gap_hi"] == pytest.approx(gap["gap_ppl"], rel=1e-9)
    # noisy per-MR NLL: the CI brackets the point estimate and identical runs give exactly 0
    nll = tokens * rng.uniform(1.0, 3.0, 60)
    noisy = paired_gap(_frame(nll * 1.01, tokens, mr), _frame(nll, tokens, mr), rng)
    assert noisy["gap_lo"] < noisy["gap_ppl"] < noisy["gap_hi"] and noisy["gap_lo"] > 0
    same = paired_gap(_frame(nll, tokens, mr), _frame(nll, tokens, mr), rng)
    assert same["gap_ppl"] == same["gap_lo"] == same["gap_hi"] == 0.0


def _fedsim(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "fedsim", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip


def test_evaluate_equals_the_training_evaluation_on_its_subset_and_pairs_the_schemes(tmp_path, monkeypatch):
    scenario = tmp_path / "study.toml"
    scenario.write_text(tiny_study(4, schemes=("split_fed", "centralized"), seeds=(0,)))
    out = tmp_path / "out"
    done = _fedsim("run", str(scenario), "--executor", "serial", "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    done = _fedsim("evaluate", str(out), "--samples", "8", "--no-progress", "--threads", "1")
    assert done.returncode == 0, done.stderr
    summary = pd.read_csv(out / "tables" / "precise_eval.csv")
    assert len(summary) == 4 and set(summary["examples"]) == {8}
    for row in summary.itertuples():
        # an independent path: the training loop's own evaluation of the same 8 examples at its last step
        curve = json.loads((out / "records" / f"{row.run}.json").read_text())["curve"]
        last = [r for r in curve if "val_ppl" in r][-1]
        assert row.step == 4 and last["step"] == 4
        for col in ("val_ppl", "val_ppl_a", "val_ppl_b"):
            assert getattr(row, col) == pytest.approx(last[col], rel=1e-5)
    gaps = pd.read_csv(out / "tables" / "precise_gap.csv")
    assert sorted(gaps["rank"]) == [1, 4]
    for gap in gaps.itertuples():
        ppl = summary.set_index(["scheme", "rank"])["val_ppl"]
        assert gap.gap_ppl == pytest.approx(
            ppl["split_fed", gap.rank] - ppl["centralized", gap.rank], rel=1e-9
        )
        assert gap.gap_lo <= gap.gap_ppl <= gap.gap_hi
    ranks = pd.read_csv(out / "tables" / "precise_rank.csv")
    assert sorted(zip(ranks["scheme"], ranks["rank"], ranks["vs_rank"], strict=True)) == [
        ("centralized", 4, 1),
        ("split_fed", 4, 1),
    ]
    for row in ranks.itertuples():
        ppl = summary.set_index(["scheme", "rank"])["val_ppl"]
        assert row.gap_ppl == pytest.approx(ppl[row.scheme, 4] - ppl[row.scheme, 1], rel=1e-9)
    assert "Precise evaluation" in (out / "tables" / "precise_eval.md").read_text()
    # kept per run: a rerun scores only the run whose kept scores belong to another checkpoint
    from fedsim.experiments.study import precise_eval

    kept = sorted((out / "precise").glob("*_n8.csv"))
    assert len(kept) == 4
    stale = pd.read_csv(kept[0], dtype={"checkpoint": str})
    kept[0].write_text(stale.assign(checkpoint="0" * 64).to_csv(index=False))
    calls = []

    def score(path, samples, progress, device, payload=None):
        calls.append(path.stem)
        return stale

    monkeypatch.setattr(precise_eval, "evaluate_checkpoint", score)
    precise_eval.evaluate_study(out, samples=8, progress=False)
    assert calls == [kept[0].name.removesuffix("_n8.csv")]
    assert pd.read_csv(out / "tables" / "precise_eval.csv").equals(summary)
    # a run whose checkpoint is not at its last step (still training) is left out, never scored
    from fedsim.learn.checkpoint import read_payload, save_checkpoint

    payload = read_payload(out / "checkpoints" / f"{kept[1].name.removesuffix('_n8.csv')}.pt")
    save_checkpoint(out / "checkpoints" / "unfinished.pt", payload["config"], 2, curve=payload["curve"][:2],
                    system_state=payload["system"])  # fmt: skip
    calls.clear()
    lines = precise_eval.evaluate_study(out, samples=8, progress=False)
    assert calls == [] and lines[-1] == "not finished, left out: unfinished (step 2 of 4)"


@pytest.mark.parametrize(
    "args,message",
    [
        ((), "no checkpoints"),
        (("--samples", "1"), "samples"),
        (("--threads", "0"), "threads"),
        (("--device", "tpu"), "device"),
    ],  # fmt: skip
)
def test_bad_evaluate_input_is_one_line_exit_2_nothing_written(tmp_path, args, message):
    done = _fedsim("evaluate", str(tmp_path), *args)
    err = done.stderr.strip()
    assert done.returncode == 2 and len(err.splitlines()) == 1 and message in err
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_digest_is_the_header_sha256_or_the_files(tmp_path):
    import hashlib

    from fedsim.experiments.study.precise_eval import checkpoint_digest
    from fedsim.learn.checkpoint import save_checkpoint

    path = tmp_path / "c.pt"
    save_checkpoint(path, {"a": 1}, 2, curve=[], system_state={"w": torch.zeros(3)})
    body = path.read_bytes().partition(b"\n")[2]
    assert checkpoint_digest(path) == hashlib.sha256(body).hexdigest()
    old = tmp_path / "old.pt"
    torch.save({"config": {}}, old)  # an older checkpoint without the header
    assert checkpoint_digest(old) == hashlib.sha256(old.read_bytes()).hexdigest()
