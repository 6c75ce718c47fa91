"""OPT in the workload model: the shipped OPT-125m config, FLOPs and parameters against hand counts and
transformers' own model, the analytical delay model against the engine, and ``fedsim run`` on it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from engine_helpers import random_allocation, random_drop

from fedsim.cli import main
from fedsim.core.delay import delays
from fedsim.core.model_configs import architecture, load_model_config
from fedsim.core.workload import parameter_counts, workload_from_config
from fedsim.engine import EngineConfig, simulate
from fedsim.errors import InputError

L = 512


@pytest.fixture(scope="module")
def opt():
    return load_model_config("facebook/opt-125m")


def test_shipped_config_is_opt_125m(opt):
    # facebook/opt-125m's published config.json
    assert opt.model_type == "opt" and load_model_config("opt-125m").to_dict() == opt.to_dict()
    assert (opt.num_hidden_layers, opt.hidden_size, opt.ffn_dim, opt.num_attention_heads) == (
        12,
        768,
        3072,
        12,
    )
    assert (opt.vocab_size, opt.max_position_embeddings, opt.word_embed_proj_dim) == (50272, 2048, 768)
    assert opt.do_layer_norm_before and opt.tie_word_embeddings and opt.activation_function == "relu"


def test_block_and_head_flops_are_the_hand_count(opt):
    # Prepare: an independent hand count for one OPT-125m block at L = 512 (2 FLOPs per MAC):
    # q, k, v, out_proj: 4 x 2 L d^2; QK^T and AV: 2 x 2 L^2 d; fc1 + fc2: 2 x 2 L d 3072;
    # two LayerNorms at 5 FLOPs per element: 2 x 5 L d
    d, ff, vocab = 768, 3072, 50272
    block = 4 * 2 * L * d * d + 2 * 2 * L * L * d + 2 * 2 * L * d * ff + 2 * 5 * L * d
    head = 5 * L * d + 2 * L * d * vocab  # final LayerNorm + tied LM head
    # Execute
    w = workload_from_config(opt, seq_len=L, bits=16, lora_targets=("q_proj", "v_proj"))
    # Assert
    assert block == 8_056_995_840 and head == 39_537_475_584
    np.testing.assert_array_equal(w.fwd_flops, np.full(12, float(block)))
    np.testing.assert_array_equal(w.bwd_flops, np.full(12, 2.0 * block))
    assert w.head_fwd_flops == head
    np.testing.assert_array_equal(w.act_bits, np.full(12, L * d * 16.0))  # the cut uploads L x d values
    np.testing.assert_array_equal(w.lora_bits_per_rank, np.full(12, 2 * (d + d) * 16.0))  # A, B of q, v
    np.testing.assert_array_equal(w.lora_fwd_flops_per_rank, np.full(12, 2.0 * L * 2 * (d + d)))
    fc = workload_from_config(opt, seq_len=L, lora_targets=("fc1", "fc2"))
    np.testing.assert_array_equal(fc.lora_bits_per_rank, np.full(12, 2 * (d + ff) * 32.0))


def test_parameters_equal_transformers_opt(opt):
    torch = pytest.importorskip("torch")
    from transformers import OPTForCausalLM

    with torch.device("meta"):  # shapes only, no memory
        model = OPTForCausalLM(opt)
    counted = sum(p.numel() for p in model.parameters())  # the tied head is counted once
    p = parameter_counts(opt)
    assert p["total"] == counted == 125_239_296  # OPT-125m's published size
    assert p["position_encoding"] == model.model.decoder.embed_positions.weight.numel() == 2050 * 768
    block = model.model.decoder.layers[0]
    assert p["mha"] == sum(x.numel() for x in block.self_attn.parameters())
    assert p["ffn"] == sum(x.numel() for x in (*block.fc1.parameters(), *block.fc2.parameters()))


def test_post_norm_and_projected_opt(opt):
    post = opt.__class__(**{**opt.to_dict(), "do_layer_norm_before": False})
    assert not architecture(post).final_norm
    gap = (
        workload_from_config(opt, seq_len=L).head_fwd_flops
        - workload_from_config(post, seq_len=L).head_fwd_flops
    )
    assert gap == 5 * L * 768  # no final LayerNorm after the last block
    narrow = opt.__class__(**{**opt.to_dict(), "word_embed_proj_dim": 512})
    with pytest.raises(InputError, match="word_embed_proj_dim 512 != hidden_size 768"):
        workload_from_config(narrow)


def test_engine_equals_the_delay_model_on_opt(opt):
    work = workload_from_config(opt, seq_len=L)
    rng = np.random.default_rng(125)
    for rank in (1, 8):
        drop = random_drop(rng, k=4)
        for cut in range(1, work.num_layers + 1):
            alloc = random_allocation(rng, drop, work.num_layers, cut=cut, rank=rank)
            ref = delays(drop, work, alloc, batch_size=16, local_iterations=10, rounds=1.5).total_s
            got = simulate(
                drop,
                work,
                alloc,
                batch_size=16,
                local_iterations=10,
                rounds=1.5,
                config=EngineConfig(trace=False),
                rng=rng,
            ).total_s
            assert abs(got - ref) / ref < 1e-9


def test_fedsim_run_and_workload_on_opt(tmp_path, capsys):
    assert main(["workload", "--model", "opt-125m", "--seq-len", "512", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["workload"]["fwd_flops"] == [8_056_995_840.0] * 12
    assert info["parameters"]["total"] == 125_239_296
    scenario = tmp_path / "opt.toml"
    scenario.write_text(
        'name = "opt"\n[model]\nid = "facebook/opt-125m"\n[schemes]\nnames = ["proposed", "a"]\n'
        "[montecarlo]\ndrops = 2\n[outputs]\nfigures = []\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    argv = ["run", str(scenario), "--executor", "serial", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    import pandas as pd

    rows = pd.read_parquet(out / "rows.parquet")
    assert len(rows) == 4 and set(rows["scheme"]) == {"proposed", "a"}
    assert np.isfinite(rows["total_s"]).all() and rows["cut_mean"].between(1, 12).all()
