"""Checkpoint/resume continues the same curve as an uninterrupted run."""

from __future__ import annotations

import numpy as np
import pytest
from learn_tiny import SyntheticLM, tiny_lm

from fedsim.errors import InputError
from fedsim.learn.config import TrainConfig
from fedsim.learn.train import TrainData, train


def _cfg(**kw) -> TrainConfig:
    base = dict(model="tiny", num_clients=2, batch_size=2, local_iterations=2, rank=2, lora_alpha=4.0, cut=1,
                lr=5e-3, steps=4, eval_every=1, seed=3, lora_dropout=0.1)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def _data() -> TrainData:
    # 3 samples per client with b = 2: the data order wraps into a new epoch mid-run
    return TrainData(SyntheticLM(6), SyntheticLM(4, seed=9), [np.arange(3), np.arange(3, 6)], np.arange(4))


@pytest.mark.parametrize("scheme", ["split_fed", "centralized"])
def test_resume_gives_the_uninterrupted_curve(tmp_path, scheme):
    # Prepare: one uninterrupted run; one run stopped after 2 steps (checkpoint every step) and resumed
    full = train(_cfg(scheme=scheme), tiny_lm("gpt2", dropout=0.1), _data(), progress=False)
    ckpt = tmp_path / "run.pt"
    first = train(_cfg(scheme=scheme, steps=2, checkpoint_every=1, checkpoint_path=str(ckpt)),
                  tiny_lm("gpt2", dropout=0.1), _data(), progress=False)  # fmt: skip
    # Execute: a fresh process would build the same model and find the checkpoint
    resumed = train(_cfg(scheme=scheme, checkpoint_every=1, checkpoint_path=str(ckpt)),
                    tiny_lm("gpt2", dropout=0.1), _data(), progress=False)  # fmt: skip
    # Assert
    assert len(first.curve) == 3 and len(resumed.curve) == len(full.curve) == 5
    for a, b in zip(resumed.curve, full.curve, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-6), (a, b)


def test_resume_with_other_config_is_input_error(tmp_path):
    ckpt = tmp_path / "run.pt"
    train(
        _cfg(steps=1, checkpoint_every=1, checkpoint_path=str(ckpt)), tiny_lm("gpt2"), _data(), progress=False
    )
    with pytest.raises(InputError, match="rank"):
        train(_cfg(rank=3, checkpoint_path=str(ckpt)), tiny_lm("gpt2"), _data(), progress=False)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_damaged_checkpoint_is_set_aside_and_training_starts_over(tmp_path, capsys, damage):
    from fedsim.learn.checkpoint import MAGIC

    full = train(_cfg(), tiny_lm("gpt2", dropout=0.1), _data(), progress=False)
    ckpt = tmp_path / "run.pt"
    train(_cfg(steps=2, checkpoint_every=1, checkpoint_path=str(ckpt)), tiny_lm("gpt2", dropout=0.1), _data(),
          progress=False)  # fmt: skip
    raw = ckpt.read_bytes()
    assert raw.startswith(MAGIC)
    if damage == "truncate":
        ckpt.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":
        ckpt.write_bytes(raw[:-100] + bytes([raw[-100] ^ 1]) + raw[-99:])
    else:
        ckpt.write_bytes(b"\x00" * 64)
    resumed = train(_cfg(checkpoint_every=1, checkpoint_path=str(ckpt)), tiny_lm("gpt2", dropout=0.1), _data(),
                    progress=False)  # fmt: skip
    err = capsys.readouterr().err
    assert "set aside as" in err and "training starts over" in err and err.count("\n") == 1
    assert (tmp_path / "set-aside" / "run.pt.1").stat().st_size == (len(raw) if damage == "flip" else
                                                               len(raw) // 2 if damage == "truncate" else 64)  # fmt: skip
    assert [r.get("val_ppl") for r in resumed.curve] == pytest.approx([r.get("val_ppl") for r in full.curve])


def test_checkpoint_of_an_older_fedsim_without_checksum_still_loads(tmp_path):
    import torch

    from fedsim.learn.checkpoint import MAGIC, load_checkpoint

    ckpt = tmp_path / "run.pt"
    train(_cfg(steps=1, checkpoint_every=1, checkpoint_path=str(ckpt)), tiny_lm("gpt2"), _data(), progress=False)
    body = ckpt.read_bytes().partition(b"\n")[2]
    assert ckpt.read_bytes().startswith(MAGIC)
    ckpt.write_bytes(body)  # the plain torch.save file older versions wrote
    payload = load_checkpoint(ckpt, _cfg(steps=1, checkpoint_every=1, checkpoint_path=str(ckpt)).model_dump())
    assert payload["step"] == 1 and isinstance(payload["torch_rng"], torch.Tensor)


def test_convergence_record_checksum(tmp_path):
    import json

    from fedsim.learn.records import ConvergenceRecord

    rec = ConvergenceRecord("m", "split_fed", 4, 3, 4, 2, 64, 10.0, 2.0, [{"step": 0, "round": 0.0, "val_ppl": 9.0}])
    rec.save(tmp_path / "r.json")
    assert ConvergenceRecord.load(tmp_path / "r.json") == rec
    data = json.loads((tmp_path / "r.json").read_text())
    data["curve"][0]["val_ppl"] = 8.0
    (tmp_path / "r.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="r.json: checksum does not match"):
        ConvergenceRecord.load(tmp_path / "r.json")
    del data["sha256"]  # an intended edit: drop the checksum line
    (tmp_path / "r.json").write_text(json.dumps(data))
    assert ConvergenceRecord.load(tmp_path / "r.json").curve[0]["val_ppl"] == 8.0
    (tmp_path / "r.json").write_text(json.dumps(data)[:40])
    with pytest.raises(InputError, match="not a valid record"):
        ConvergenceRecord.load(tmp_path / "r.json")
