"""From a TrainConfig to a model and tokenised, partitioned E2E data (through the data helpers)."""

from __future__ import annotations

import numpy as np

from fedsim.learn.config import TrainConfig
from fedsim.learn.train import TrainData


def prepare_data(cfg: TrainConfig, tokenizer) -> TrainData:
    """Load E2E (``cfg.data_path`` or the shipped copy), tokenise to ``cfg.seq_len``, partition over K; the test
    split (tokenised lazily) and its pairs and the tokenizer ride along for the final evaluation."""
    from fedsim.learn.data import e2e, partition
    from fedsim.learn.limits import check_run

    check_run(cfg)  # sequence length and memory, one line each, before any data or tensor work
    splits = e2e.load_e2e(cfg.data_path)
    pairs = splits["train"][: cfg.train_samples] if cfg.train_samples else splits["train"]
    train = e2e.E2EExamples(pairs, tokenizer, cfg.seq_len)
    validation = e2e.E2EExamples(splits["validation"], tokenizer, cfg.seq_len)
    rng = np.random.default_rng([cfg.seed, 7])  # partition stream, separate from data order and LoRA init
    k = cfg.num_clients
    if cfg.partition == "iid":
        parts = partition.iid(len(train), k, rng)
    elif cfg.partition == "dirichlet":
        parts = partition.dirichlet_by_attribute([mr for mr, _ in pairs], cfg.partition_attribute, k,
                                                 alpha=cfg.dirichlet_alpha, rng=rng)  # fmt: skip
    else:
        lengths = [len(train.encoded(i)[0]) for i in range(len(train))]
        parts = partition.length_dirichlet(lengths, k, cfg.dirichlet_alpha, rng=rng)
    n_eval = len(validation) if cfg.eval_samples is None else min(cfg.eval_samples, len(validation))
    order = e2e.mr_spread_order(splits["validation"]) if cfg.eval_order == "mr_spread" else range(n_eval)
    test = e2e.E2EExamples(splits["test"], tokenizer, cfg.seq_len)
    return TrainData(train, validation, [np.asarray(p) for p in parts], np.asarray(order[:n_eval]), test=test,
                     test_pairs=list(splits["test"]), tokenizer=tokenizer)  # fmt: skip


def load(cfg: TrainConfig, progress: bool = True):
    """(model, tokenizer, data) for ``cfg``: the model through ``fedsim.learn.loading.models.load_model``."""
    from fedsim.learn.loading.models import load_model

    model, tokenizer = load_model(cfg.model, progress=progress, seed=cfg.seed)
    return model, tokenizer, prepare_data(cfg, tokenizer)
