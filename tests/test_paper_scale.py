"""The paper-scale scenario is what it says (b = 16, L = 512, >= 1,000 steps, ranks 1-8, bf16 on CUDA), and
a CPU smoke version of it (tiny model, a few steps, bf16 autocast) trains and records throughput and memory."""

from __future__ import annotations

import math
from pathlib import Path

from fedsim import api

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "paper_scale_gpu.toml"


def test_the_paper_scale_scenario_has_the_papers_settings():
    s = api.load_scenario(SCENARIO)
    t = s.study.training
    assert (t.batch_size, t.seq_len, t.num_clients, t.local_iterations) == (16, 512, 5, 10)
    assert t.steps >= 1000 and t.precision == "bf16" and t.device == "auto"
    assert s.sweep.axes["study.training.rank"] == [1, 2, 4, 6, 8]
    assert len(s.sweep.axes["study.training.seed"]) >= 5


def test_a_cpu_smoke_version_trains_in_bf16_and_records_throughput_and_memory(tmp_path):
    smoke = [
        "study.training.model='tiny-gpt2'", "study.training.device='cpu'", "study.training.num_clients=2",
        "study.training.batch_size=2", "study.training.seq_len=64", "study.training.local_iterations=2",
        "study.training.steps=4", "study.training.warmup_steps=1", "study.training.eval_every=2",
        "study.training.eval_samples=8", "study.training.test_samples=4", "study.training.generate_mrs=0",
        "study.training.train_samples=40", "study.training.checkpoint_every=2", "study.threads=1",
        # fp32: torch's bf16 attention on a CPU needs AVX-512 kernels, so bf16 is no portable CPU test; the
        # autocast itself is checked below on a layer every kernel path has
        "study.training.precision='fp32'",
        "sweep.axes={'study.training.rank' = [1, 2], 'study.training.scheme' = ['split_fed', 'centralized']}",
    ]  # fmt: skip
    scenario = api.load_scenario(SCENARIO, smoke)
    rows, folder = api.run(scenario, executor="serial", out=tmp_path / "out", figures=False, progress=False)
    assert len(rows) == 4 and rows["final_val_ppl"].map(math.isfinite).all()
    from fedsim.learn.records import ConvergenceRecord

    for path in (folder / "records").iterdir():
        measured = ConvergenceRecord.load(path).measured
        assert measured["train_tokens_per_s"] > 0 and measured["peak_memory_bytes"] > 1e6
        assert measured["precision"] == "fp32" and measured["device"] == "cpu"


def test_bf16_precision_autocasts_the_forward_pass_and_fp32_does_not():
    import torch

    from fedsim.learn.precision import autocast

    layer = torch.nn.Linear(8, 4)
    x = torch.randn(2, 8)
    with autocast("cpu", "bf16"):
        assert layer(x).dtype == torch.bfloat16
    with autocast("cpu", "fp32"):
        assert layer(x).dtype == torch.float32
    assert layer.weight.dtype == torch.float32  # the weights stay fp32
