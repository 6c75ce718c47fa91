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
