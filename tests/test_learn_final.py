"""End-of-run evaluation: test perplexity and generation (BLEU / ROUGE-L) of the deployed split model,
checked against the unsplit model carrying the same merged LoRA weights; records and Table IV carry them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fedsim.errors import InputError
from fedsim.learn.config import TrainConfig
from fedsim.learn.data.batches import collate
from fedsim.learn.data.e2e import E2EExamples, load_e2e
from fedsim.learn.evaluate import evaluate_generation, greedy_generate, perplexity
from fedsim.learn.federated.fedsplit import fedavg
from fedsim.learn.federated.systems import build_system
from fedsim.learn.live_trainer import LiveTrainer
from fedsim.learn.loading.models import tiny_model
from fedsim.learn.records import ConvergenceRecord
from fedsim.learn.split.lora import add_lora, lora_state
from fedsim.learn.split.parts import decoder_parts
from fedsim.learn.train import TrainData, final_metrics, train

ROOT = Path(__file__).resolve().parents[1]
SEQ_LEN = 48


@pytest.fixture(scope="module")
def e2e():
    """(TrainData, tokenizer): 30 train pairs over 3 unequal clients, 40 test pairs (several MRs)."""
    torch.set_num_threads(1)
    _, tok = tiny_model("gpt2")
    splits = load_e2e()
    train_set = E2EExamples(splits["train"][:30], tok, SEQ_LEN)
    parts = [np.arange(0, 6), np.arange(6, 16), np.arange(16, 30)]  # D_k = 6, 10, 14: FedAvg weights matter
    data = TrainData(
        train_set, E2EExamples(splits["validation"][:4], tok, SEQ_LEN), parts, np.arange(4),
        test=E2EExamples(splits["test"][:40], tok, SEQ_LEN), test_pairs=splits["test"][:40], tokenizer=tok,
    )  # fmt: skip
    return data, tok


def _cfg(**kw) -> TrainConfig:
    base = dict(model="tiny-llama", num_clients=3, batch_size=2, local_iterations=2, rank=2, lora_alpha=8.0,
                cut=2, lr=2e-2, steps=3, eval_every=3, seed=4, seq_len=SEQ_LEN, test_samples=10,
                generate_mrs=3, max_new_tokens=6)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def _drive(system, cfg: TrainConfig) -> None:
    """The training loop's state changes (evaluations do not change the state)."""
    for step in range(1, cfg.steps + 1):
        system.local_iteration()
        if step % cfg.local_iterations == 0:
            system.aggregate()


def _merged_unsplit(system, cfg: TrainConfig, family: str):
    """A fresh unsplit peft model with FedAvg(client LoRA, by D_k) in blocks 1..c and the server LoRA in the rest,
    each tensor placed by block index and name (independent of the split code's module sharing)."""
    clients = [lora_state(c.part) for c in system.clients]
    average = fedavg(clients, [len(c.stream.indices) for c in system.clients])
    server = lora_state(system.server.part)
    model, _ = tiny_model(family, seed=cfg.seed)  # the same frozen base weights
    model = add_lora(
        model, cfg.rank, cfg.lora_alpha, dropout=0.0, seed=123, targets=cfg.targets
    )  # other init
    blocks = decoder_parts(model).blocks
    placed = 0
    for offset, state in ((0, average), (cfg.cut, server)):
        for name, tensor in state.items():
            index, rest = re.fullmatch(r"blocks\.(\d+)\.(.+)", name).groups()
            target = dict(blocks[offset + int(index)].named_parameters())[rest]
            with torch.no_grad():
                target.copy_(tensor)
            placed += 1
    assert placed == len(lora_state(model)) and placed > 0
    return model.eval()


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_final_metrics_equal_the_unsplit_merged_model(e2e, family):
    # Prepare: a split-fed run that ends mid-round (step 3, I = 2), so the clients' LoRA differ
    data, tok = e2e
    cfg = _cfg(model=f"tiny-{family}")
    record = train(cfg, tiny_model(family, seed=cfg.seed)[0], data, progress=False)
    system = build_system(tiny_model(family, seed=cfg.seed)[0], cfg, data.train, partition=data.partition)
    _drive(system, cfg)
    keys = list(lora_state(system.clients[0].part))
    assert not torch.equal(
        lora_state(system.clients[0].part)[keys[-1]], lora_state(system.clients[2].part)[keys[-1]]
    )
    merged = _merged_unsplit(system, cfg, family)
    # Execute: the independent computations on the unsplit model
    batches = [collate(data.test, range(i, min(i + 4, 10))) for i in range(0, 10, 4)]
    expected_ppl = perplexity(merged, batches)
    with system.deployed() as forward:
        prompts = [tok("name[Blue Spice], eatType[coffee shop] |||")["input_ids"],
                   tok("name[The Wrestlers] |||")["input_ids"]]  # fmt: skip
        split_tokens = greedy_generate(forward, tok, prompts, max_new_tokens=8)
    expected_gen = evaluate_generation(
        merged, tok, data.test_pairs, max_new_tokens=6, limit=3, max_len=SEQ_LEN
    )
    # Assert: test PPL to 1e-5, the same generated tokens, and the record's scores from those tokens
    assert record.final["test_ppl"] == pytest.approx(expected_ppl, rel=1e-5)
    assert record.final["test_samples"] == 10 and record.final["n_mrs"] == expected_gen["num_mrs"] == 3
    assert split_tokens == greedy_generate(merged, tok, prompts, max_new_tokens=8)  # KV-cached HF generate
    assert all(len(t) == 8 for t in split_tokens)
    assert record.final["bleu"] == pytest.approx(expected_gen["bleu"], abs=1e-9)
    assert record.final["rouge_l"] == pytest.approx(expected_gen["rouge_l"], abs=1e-9)
    assert final_metrics(system, cfg, data) == record.final


def test_k1_split_and_centralized_agree_and_off_switches(e2e):
    data, _ = e2e
    one = TrainData(data.train, data.validation, [np.arange(30)], data.eval_indices, test=data.test,
                    test_pairs=data.test_pairs, tokenizer=data.tokenizer)  # fmt: skip
    cfg = _cfg(num_clients=1, local_iterations=1, steps=2, generate_mrs=0)
    split = train(cfg, tiny_model("llama", seed=1)[0], one, progress=False)
    central = train(cfg.model_copy(update={"scheme": "centralized"}), tiny_model("llama", seed=1)[0], one,
                    progress=False)  # fmt: skip
    assert split.final["test_ppl"] == pytest.approx(central.final["test_ppl"], rel=1e-5)
    assert set(split.final) == {"test_ppl", "test_samples"}  # generate_mrs = 0: no generation
    off = train(
        cfg.model_copy(update={"test_samples": 0}), tiny_model("llama", seed=1)[0], one, progress=False
    )
    assert off.final is None
    no_test = TrainData(data.train, data.validation, [np.arange(30)], data.eval_indices)
    assert train(_cfg(num_clients=1, steps=1), tiny_model("llama")[0], no_test, progress=False).final is None


def test_live_trainer_final_metrics_equal_plain_loop(e2e):
    data, _ = e2e
    cfg = _cfg(steps=4, eval_every=2)
    plain = train(cfg, tiny_model("gpt2", seed=2)[0], data, progress=False)
    live = LiveTrainer.from_config(cfg, model=tiny_model("gpt2", seed=2)[0], data=data, progress=False)
    for r in range(2):  # the engine's paper-mode call sequence
        for _ in range(cfg.local_iterations):
            for k in range(3):
                live.client_forward(k)
            live.server_step([0, 1, 2])
            for k in range(3):
                live.client_backward(k)
        live.aggregate([0, 1, 2])
        live.end_round(r, float(r + 1))
    assert live.record().final is None  # not evaluated until the runner asks
    final = live.final_metrics()
    assert final["test_ppl"] == pytest.approx(plain.final["test_ppl"], rel=1e-5)
    assert final["bleu"] == pytest.approx(plain.final["bleu"]) and final["n_mrs"] == 3
    assert live.record().final == final


def test_record_roundtrip_with_and_without_final(tmp_path):
    curve = [{"step": 0, "round": 0.0, "val_ppl": 9.0}]
    final = {
        "test_ppl": 7.5,
        "test_samples": 64,
        "bleu": 31.2,
        "rouge_l": 48.0,
        "n_mrs": 8,
        "max_new_tokens": 48,
    }
    for extra in ({}, {"final": final}):
        rec = ConvergenceRecord("m", "split_fed", 4, 3, 4, 2, 64, 10.0, 0.0, curve, "test", **extra)
        rec.save(tmp_path / "r.json")
        assert ConvergenceRecord.load(tmp_path / "r.json") == rec
    assert ConvergenceRecord.load(tmp_path / "r.json").final == final
    # records written before the field existed (no "final" key) still load
    for path in sorted((ROOT / "results" / "records").glob("*_r*.json")):
        assert ConvergenceRecord.load(path).rank in (1, 2, 4, 6, 8)
    old = {
        k: v for k, v in json.loads((tmp_path / "r.json").read_text()).items() if k not in ("final", "sha256")
    }  # old records: neither
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert ConvergenceRecord.load(tmp_path / "old.json").final is None
    (tmp_path / "bad.json").write_text(json.dumps({**old, "final": [1, 2]}))
    with pytest.raises(InputError, match="bad.json"):
        ConvergenceRecord.load(tmp_path / "bad.json")


@pytest.mark.parametrize(
    "field,value",
    [("test_samples", -1), ("generate_mrs", -2), ("max_new_tokens", 0), ("max_new_tokens", 5000)],
)
def test_bad_evaluation_settings_are_input_errors(field, value):
    with pytest.raises(InputError, match=field):
        TrainConfig.parse({field: value})


def test_cli_bad_max_new_tokens_exits_2_with_one_line(capsys, tmp_path):
    from fedsim.cli import main

    code = main(["train", "--model", "tiny-gpt2", "--max-new-tokens", "0", "--steps", "1", "--out", str(tmp_path),
                 "--records-dir", str(tmp_path), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "max_new_tokens" in err


def test_cli_table_iv_has_test_ppl_bleu_rouge_columns(tmp_path):
    from fedsim.cli import main

    out, rec = tmp_path / "out", tmp_path / "rec"
    code = main(["train", "--model", "tiny-gpt2", "--scheme", "both", "--ranks", "1", "--clients", "2",
                 "--batch-size", "2", "--seq-len", "32", "--steps", "1", "--eval-samples", "2",
                 "--train-samples", "8", "--test-samples", "4", "--generate-mrs", "2", "--max-new-tokens", "3",
                 "--out", str(out), "--records-dir", str(rec), "--table", "--threads", "1", "--no-progress"])  # fmt: skip
    assert code == 0
    table = pd.read_csv(out / "tiny-gpt2_table_iv.csv")
    assert list(table.columns) == ["rank"] + [
        f"{s}_{m}" for m in ("val_ppl", "test_ppl", "bleu", "rouge_l") for s in ("centralized", "split_fed")
    ]
    for scheme in ("centralized", "split_fed"):
        final = ConvergenceRecord.load(rec / f"tiny-gpt2_{scheme}_r1.json").final
        assert final["n_mrs"] == 2 and final["test_samples"] == 4 and final["max_new_tokens"] == 3
        for metric in ("test_ppl", "bleu", "rouge_l"):
            assert table[f"{scheme}_{metric}"].item() == pytest.approx(final[metric])
    assert "split_fed ROUGE-L" in (out / "tiny-gpt2_table_iv.md").read_text()
    # a table from records without final values keeps only the val PPL columns
    code = main(["train", "--model", "tiny-gpt2", "--ranks", "1", "--clients", "2", "--batch-size", "2",
                 "--seq-len", "32", "--steps", "1", "--eval-samples", "2", "--train-samples", "8",
                 "--test-samples", "0", "--generate-mrs", "0", "--out", str(out), "--records-dir",
                 str(tmp_path / "rec2"), "--table", "--threads", "1", "--no-progress"])  # fmt: skip
    assert code == 0 and list(pd.read_csv(out / "tiny-gpt2_table_iv.csv").columns) == [
        "rank",
        "split_fed_val_ppl",
    ]


def test_plots_table4_keeps_test_columns():
    from fedsim.plots.convergence import table4

    summary = pd.DataFrame([
        {"model": "m", "rank": 8, "final_val_ppl": 5.0, "test_ppl": 5.5, "bleu": 30.0, "rouge_l": 45.0, "n_mrs": 8},
        {"model": "m", "rank": 1, "final_val_ppl": 6.0, "test_ppl": 6.5, "bleu": 20.0, "rouge_l": 40.0, "n_mrs": 8},
    ])  # fmt: skip
    table = table4(summary)
    assert list(table.columns) == ["model", "rank", "final_val_ppl", "test_ppl", "bleu", "rouge_l", "n_mrs"]
    assert table["rank"].tolist() == [1, 8] and table["bleu"].tolist() == [20.0, 30.0]
    assert "test_ppl" not in table4(summary.drop(columns=["test_ppl", "bleu", "rouge_l", "n_mrs"])).columns
