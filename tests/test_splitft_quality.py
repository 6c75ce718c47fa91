"""The score rule's quality signal above noise (issue 23): a fixed, seeded probe set per client, an exponential
moving average over rounds, the noise of each signal measured; by hand and in training."""

from __future__ import annotations

import math

import numpy as np
import pytest
from learn_tiny import SyntheticLM, tiny_lm
from test_splitft_adaptive import _adaptive_cfg, _trained_system

from fedsim.core.cut_rule import ema, relative_quality, step_std
from fedsim.errors import InputError
from fedsim.learn.config import TrainConfig
from fedsim.learn.federated.adaptive_cut import PROBE_STREAM, probe_sets
from fedsim.learn.federated.systems import build_system


def test_ema_by_hand():
    nan = math.nan
    got = ema([[2.0, nan], [3.0, 4.0], [1.0, nan], [1.0, 2.0]], 0.25)
    # client 0: 2; 0.25*3 + 0.75*2 = 2.25; 0.25*1 + 0.75*2.25 = 1.9375; 0.25*1 + 0.75*1.9375 = 1.703125
    # client 1: no value yet; first value 4 taken as is; a missing round keeps 4; 0.25*2 + 0.75*4 = 3.5
    np.testing.assert_allclose(got[:, 0], [2.0, 2.25, 1.9375, 1.703125], rtol=0, atol=1e-15)
    assert math.isnan(got[0, 1])
    np.testing.assert_allclose(got[1:, 1], [4.0, 4.0, 3.5], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(ema([[1.0, 5.0], [3.0, 2.0]], 1.0), [[1.0, 5.0], [3.0, 2.0]])  # beta 1: none


def test_step_std_and_relative_quality_by_hand():
    # changes 1, 2, 3 (std 1) and -1, 1, -1 (mean -1/3, std sqrt(4/3))
    got = step_std([[1.0, 0.0], [2.0, -1.0], [4.0, 0.0], [7.0, -1.0]])
    np.testing.assert_allclose(got, [1.0, math.sqrt(4.0 / 3.0)], rtol=1e-12)
    assert np.isnan(step_std([[1.0], [2.0]])).all()  # one change has no spread
    rel = relative_quality([[0.0, math.log(3.0)]])  # q = 1, 1/3; mean 2/3
    np.testing.assert_allclose(rel, [[1.5, 0.5]], rtol=1e-12)


def test_probe_sets_are_fixed_seeded_and_inside_each_partition():
    parts = [np.arange(0, 10), np.arange(10, 30), np.arange(30, 36)]
    a = probe_sets(parts, 5, np.random.default_rng((7, PROBE_STREAM)))
    b = probe_sets(parts, 5, np.random.default_rng((7, PROBE_STREAM)))
    c = probe_sets(parts, 5, np.random.default_rng((8, PROBE_STREAM)))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert any(not np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    for probe, part in zip(a, parts, strict=True):
        assert len(set(probe.tolist())) == 5 and set(probe.tolist()) <= set(part.tolist())
    small = probe_sets(parts, 7, np.random.default_rng(0))  # client 2 has 6 examples: its probe is all of them
    assert [len(p) for p in small] == [7, 7, 6] and np.array_equal(small[2], parts[2])


def _probe_cfg(steps: int = 4, checkpoint_every=None, checkpoint_path=None, **kw):
    cfg = _adaptive_cfg(steps=steps, checkpoint_every=checkpoint_every, checkpoint_path=checkpoint_path)
    update = {"probe_size": 4, "ema_weight": 0.5, "gamma": 1.0, "epsilon": 0.0, **kw}
    return cfg.model_copy(update={"adaptive_cuts": cfg.adaptive_cuts.model_copy(update=update)})


def test_the_score_rule_reads_the_ema_of_each_clients_loss_on_its_fixed_probe_set():
    cfg = _probe_cfg()
    system = _trained_system(cfg)["system"]
    adapter, k = system.adapter, 3
    parts = np.array_split(np.random.default_rng(0).permutation(24), 3)  # _trained_system's partition
    want = probe_sets(parts, 4, np.random.default_rng((cfg.seed, PROBE_STREAM)))
    assert all(np.array_equal(p, w) for p, w in zip(adapter.probes, want, strict=True))
    rows = adapter.quality_rows
    assert [r["round"] for r in rows] == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    probe = np.array([r["probe_loss"] for r in rows]).reshape(-1, k)
    batch = np.array([r["batch_loss"] for r in rows]).reshape(-1, k)
    assert np.isfinite(probe).all() and np.isfinite(batch).all()
    # the last round's probe loss is the deployed model's loss on the probe set, measured again here
    data = SyntheticLM(24)
    for c in range(k):
        nll, n = system.eval_nll(data, want[c], 6)
        assert probe[-1, c] == pytest.approx(nll / n, rel=1e-6)
    # the EMA (beta 0.5) over rounds of the probe loss, and each move logs the EMA loss it read
    np.testing.assert_allclose([r["ema_loss"] for r in rows], ema(probe, 0.5).ravel(), rtol=1e-12)
    for move in adapter.rows:
        assert move["loss"] == pytest.approx(rows[(move["round"] - 1) * k + move["client"]]["ema_loss"])
    assert adapter.rows  # gamma = 1, epsilon 0: quality alone moves cuts
    # the measured noise: each signal's round-to-round std, of the loss and of q_k / mean q
    noise = adapter.quality_noise()
    assert [n["client"] for n in noise] == [0, 1, 2]
    assert all(n["rounds"] == 4 and n["probe_examples"] == 4 for n in noise)
    for c in range(k):
        assert noise[c]["probe_loss_step_std"] == pytest.approx(step_std(probe)[c])
        assert noise[c]["batch_rel_step_std"] == pytest.approx(step_std(relative_quality(batch))[c])
        assert noise[c]["ema_rel_mean"] == pytest.approx(relative_quality(ema(probe, 0.5))[:, c].mean())
        assert noise[c]["ema_rel_step_std"] == pytest.approx(
            step_std(relative_quality(ema(probe, 0.5)))[c]
        )


def test_without_a_probe_or_smoothing_the_rule_reads_the_batches_as_before():
    system = _trained_system(_probe_cfg(probe_size=0, ema_weight=1.0, steps=2))["system"]
    rows = system.adapter.quality_rows
    assert all(math.isnan(r["probe_loss"]) for r in rows)
    assert [r["ema_loss"] for r in rows] == [r["batch_loss"] for r in rows]  # beta 1: the round's batches
    for move in system.adapter.rows:
        assert move["loss"] == pytest.approx(rows[(move["round"] - 1) * 3 + move["client"]]["batch_loss"])


@pytest.mark.parametrize(
    "update,field",
    [
        ({"ema_weight": 0.0}, "ema_weight"),
        ({"ema_weight": 1.5}, "ema_weight"),
        ({"probe_size": -1}, "probe_size"),
        ({"rule": "optimiser"}, "rule"),  # plain training has no drop for the delay model
    ],
)
def test_bad_quality_settings_are_one_input_error_naming_the_field(update, field):
    base = {"num_clients": 3, "cuts": [2, 2, 2], "steps": 2, "batch_size": 2, "rank": 2, "lora_alpha": 4.0,
            "adaptive_cuts": {"cut_min": 1, "cut_max": 3, **update}}  # fmt: skip
    with pytest.raises(InputError, match=rf"adaptive_cuts\.{field}") as err:
        cfg = TrainConfig.parse(base)
        system = build_system(
            tiny_lm("gpt2"), cfg, SyntheticLM(6), partition=np.array_split(np.arange(6), 3)
        )
        system.local_iteration()
        system.aggregate()
    assert "\n" not in str(err.value)


def test_a_resumed_run_continues_the_probe_ema_and_its_moves(tmp_path):
    from fedsim.learn.federated.systems import SplitFedSystem
    from fedsim.learn.train import TrainData, train

    parts = np.array_split(np.random.default_rng(0).permutation(24), 3)
    data = TrainData(SyntheticLM(24), SyntheticLM(8, seed=5), parts, np.arange(8))
    seen = {}
    original = SplitFedSystem.aggregate

    def spy(self, clients=None):
        original(self, clients)
        seen["system"] = self

    def run(**kw):
        SplitFedSystem.aggregate = spy
        try:
            train(_probe_cfg(**kw), tiny_lm("llama"), data, progress=False)
        finally:
            SplitFedSystem.aggregate = original
        return seen["system"].adapter

    full = run(steps=4)
    ckpt = str(tmp_path / "run.pt")
    run(steps=2, checkpoint_every=1, checkpoint_path=ckpt)
    resumed = run(steps=4, checkpoint_every=1, checkpoint_path=ckpt)
    assert len(resumed.quality_rows) == len(full.quality_rows) == 12
    for a, b in zip(resumed.quality_rows, full.quality_rows, strict=True):
        assert a == pytest.approx(b, rel=1e-6)
    assert full.rows and [(r["round"], r["client"], r["new"]) for r in resumed.rows] == [
        (r["round"], r["client"], r["new"]) for r in full.rows
    ]
