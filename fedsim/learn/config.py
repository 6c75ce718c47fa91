"""``TrainConfig``: every hyper-parameter of a split-federated (or centralized) LoRA fine-tuning run."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fedsim.errors import InputError


class AdaptiveCuts(BaseModel):
    """Adaptive per-client cuts (spec §10b) by one of fedsim's rules: score, balance or the delay model's
    optimiser (SplitFT publishes no formula: ``fedsim.core.cut_rule``, ``fedsim.learn.federated.adaptive_cut``,
    ``fedsim.experiments.live.cut_planner``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    rule: Literal["score", "balance", "optimiser"] = Field(
        "score",
        description="score: fedsim's score (1-gamma) F_k/mean F + gamma q_k/mean q with a dead band; balance: "
        "one block per decision toward the cuts that equalise the clients' iteration times (the slowest "
        "client at cut_min sets the budget; fedsim.core.cut_rule.balanced_cuts); optimiser: at each decision "
        "the delay model's per-client-cut optimiser picks the cuts for the drop and the clients' compute, "
        "within each client's cap (live runs only: fedsim.experiments.live). SplitFT publishes no formula.",
    )
    every: int = Field(1, ge=1, description="tau: apply the rule after every this many global rounds.")
    probe_size: int = Field(
        0,
        ge=0,
        description="Quality signal of the score rule: examples in each client's fixed probe set (drawn once, "
        "seeded by the run's seed, from the client's own partition; all of it if smaller), on which the "
        "deployed model's loss is measured after every aggregation. 0 = the loss on the client's own training "
        "batches since the last decision (no extra forward passes, but as noisy as a few batches).",
    )
    ema_weight: float = Field(
        1.0,
        gt=0,
        le=1,
        description="beta in (0, 1]: each round's per-client loss enters an exponential moving average "
        "ema_t = beta * loss_t + (1 - beta) * ema_(t-1) (ema_1 = loss_1), and q_k = exp(-ema_k). 1 = no smoothing.",
    )
    gamma: float = Field(0.5, ge=0, le=1, description="Weight of model quality vs compute in the score.")
    epsilon: float = Field(0.1, ge=0, description="Dead band: move only when |score - 1| > epsilon.")
    cut_min: int = Field(1, ge=1, description="Fewest blocks a client runs.")
    cut_max: int | None = Field(
        None, ge=1, description="Most blocks a client runs (None = J - 1; memory/time budgets lower it)."
    )
    client_flops_per_s: list[float] | None = Field(
        None,
        description="Client compute F_k [FLOP/s] (one per client); live runs take the drop's. None = equal.",
    )
    memory_bytes: list[float] | None = Field(
        None, description="Per-client memory budget [bytes] for weights, LoRA state and activations."
    )
    iteration_time_s: float | None = Field(
        None, gt=0, description="Per-iteration client compute budget [s] (FP + BP of its blocks)."
    )
    reoptimise_allocation: bool = Field(
        False,
        description="Live runs: after every aggregation that moved cuts, re-choose the subchannels and power "
        "for the new cuts (the optimiser's link step, fedsim.optimize.allocate_links); the engine charges the "
        "new allocation's broadcast, (M + N)(ceil(log2 K) + 32) bits at the weakest downlink rate, and times "
        "the following rounds with it; the run writes allocations.csv. False = the allocation chosen before "
        "training is kept throughout.",
    )


class TrainConfig(BaseModel):
    """Split-federated LoRA fine-tuning on E2E (spec §2, Algorithm 1). Defaults: a short CPU run on
    SmolLM2-135M; the paper's GPT-2 setting is model="gpt2", seq_len=512, batch_size=16, lr=4e-4."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str = Field("smollm2-135m", description="Model id: shipped name, hub id, or local folder.")
    scheme: Literal["split_fed", "centralized"] = Field(
        "split_fed",
        description="split_fed = FedsLLM (K clients + main server + fed server); "
        "centralized = one LoRA model on the same data, batch K*b per step.",
    )
    seq_len: int = Field(64, ge=8, description="Max tokens per sample L (prompt + reference, padded).")
    batch_size: int = Field(4, ge=1, description="Mini-batch size b per client per local iteration.")
    num_clients: int = Field(3, ge=1, description="Number of clients K.")
    local_iterations: int = Field(1, ge=1, description="Local iterations I between FedAvg aggregations.")
    rank: int = Field(8, ge=1, description="LoRA rank r (client and server).")
    lora_alpha: float = Field(
        32.0, gt=0, description="LoRA alpha; how it scales the update depends on lora_alpha_policy."
    )
    lora_alpha_policy: Literal["fixed", "proportional", "rslora"] = Field(
        "fixed",
        description="LoRA scale per layer of rank r: fixed = alpha / r (the same alpha at every rank); "
        "proportional = alpha (peft alpha = lora_alpha * r: the same scale at every rank, e.g. lora_alpha 2 "
        "for the common alpha = 2r); rslora = alpha / sqrt(r) (peft use_rslora).",
    )
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input (SplitLoRA: 0.1).")
    targets: list[str] | None = Field(
        None, description="Module names to adapt; None = attention Q and V (GPT-2: fused c_attn)."
    )
    cut: int = Field(2, ge=1, description="Split layer c: the client runs embeddings + blocks 1..c.")
    cuts: list[int] | None = Field(
        None, description="Per-client cuts c_k (SplitFT, spec §10), one per client in 1..J-1; None = cut."
    )
    adaptive_cuts: AdaptiveCuts | None = Field(
        None, description="Move each client's cut by an adaptive rule (adaptive_cuts.rule; SplitFT publishes no formula); "
        "None = fixed cuts."
    )
    rank_cut: int | None = Field(
        None, ge=1, description="LoRA rank r_cut on the blocks at each client's cut (spec §10c); None = rank."
    )
    rank_cut_side: Literal["client", "server", "both"] = Field(
        "both",
        description="Where r_cut applies: the client's last block c_k, the server's first c_k+1, both.",
    )
    rank_aggregation: Literal["zero_pad", "svd"] = Field(
        "zero_pad",
        description="Aggregating a block held at different ranks: zero_pad (HetLoRA) or svd (average B·A, "
        "truncate).",
    )
    lr: float = Field(4e-4, gt=0, description="AdamW learning rate (clients and main server).")
    lr_schedule: Literal["constant", "cosine", "linear"] = Field(
        "constant", description="Learning rate after the warm-up: constant, or cosine / linear decay to 0 at steps."
    )
    warmup_steps: int = Field(
        0, ge=0, description="Linear warm-up from lr / warmup_steps to lr over this many steps (0 = none)."
    )
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    steps: int = Field(30, ge=1, description="Local iterations to run in total (rounds = steps / I).")
    eval_every: int = Field(12, ge=1, description="Evaluate validation perplexity every this many steps.")
    eval_samples: int | None = Field(
        64, ge=1, description="Validation examples used for perplexity (None = the whole split)."
    )
    eval_order: Literal["first", "mr_spread"] = Field(
        "first",
        description="Which validation examples eval_samples takes: first = the first of the file (about 8 "
        "references of each of eval_samples / 8 MRs); mr_spread = one reference of every MR before any MR's "
        "second, so the subset spans min(eval_samples, 547) MRs (benchmarks/eval_noise.py measures both).",
    )
    eval_halves: bool = Field(
        False,
        description="Also report val PPL on the two interleaved halves of the validation subset (even and odd "
        "indices), val_ppl_a and val_ppl_b: their gap estimates the evaluation noise.",
    )
    test_samples: int = Field(
        64,
        ge=0,
        description="Test examples (the first of the E2E test split) for the final test perplexity; 0 = off.",
    )
    generate_mrs: int = Field(
        8,
        ge=0,
        description="Distinct test MRs the final model generates for (greedy, through the split model), scored "
        "with BLEU and ROUGE-L against all their references; 0 = off.",
    )
    max_new_tokens: int = Field(
        48, ge=1, le=1024, description="Most tokens generated per test MR (generation stops at EOS)."
    )
    train_samples: int | None = Field(
        None, ge=1, description="Use only the first this many training pairs (None = all)."
    )
    target_ppl: float | None = Field(
        None, gt=1, description="Target validation perplexity; E(r) = rounds until it is reached."
    )
    partition: Literal["iid", "dirichlet", "length_dirichlet"] = Field(
        "iid", description="How training samples are split over clients (spec §10a for length_dirichlet)."
    )
    partition_attribute: str = Field("eatType", description="MR attribute for partition='dirichlet'.")
    dirichlet_alpha: float = Field(0.5, gt=0, description="Dirichlet concentration for non-IID partitions.")
    data_path: str | None = Field(None, description="E2E zip or folder; None = the copy shipped with fedsim.")
    device: str = Field("cpu", description="torch device: cpu, cuda, cuda:N, or auto (cuda when available).")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="Training forward passes in fp32, or under bfloat16 autocast (bf16: LoRA weights, optimiser "
        "and gradients stay fp32; the paper-scale GPU setting; on a CPU, torch's bf16 attention needs AVX-512).",
    )
    seed: int = Field(0, description="Seed for LoRA init, partition, data order and dropout.")
    checkpoint_every: int | None = Field(
        None, ge=1, description="Save a full checkpoint every this many steps (None = never)."
    )
    checkpoint_path: str | None = Field(None, description="Checkpoint file (written atomically).")

    @model_validator(mode="after")
    def _per_client(self) -> TrainConfig:
        if self.cuts is not None:
            if len(self.cuts) != self.num_clients:
                raise ValueError(f"cuts: needs one cut per client ({self.num_clients}), got {len(self.cuts)}")
            if min(self.cuts) < 1:
                raise ValueError(f"cuts: every cut must be >= 1, got {self.cuts}")
        a = self.adaptive_cuts
        if a is not None:
            for name in ("client_flops_per_s", "memory_bytes"):
                values = getattr(a, name)
                if values is not None and (len(values) != self.num_clients or min(values) <= 0):
                    raise ValueError(
                        f"adaptive_cuts.{name}: needs {self.num_clients} values > 0, got {values}"
                    )
            if a.cut_max is not None and a.cut_max < a.cut_min:
                raise ValueError(f"adaptive_cuts.cut_max: {a.cut_max} is below cut_min {a.cut_min}")
            if a.rule == "optimiser" and self.rank_cut is not None and self.rank_cut_side != "both":
                raise ValueError(
                    "adaptive_cuts.rule: 'optimiser' times r_cut on both sides of each cut, as the delay model "
                    f"does; rank_cut_side = {self.rank_cut_side!r} is not modelled"
                )
        if self.warmup_steps >= self.steps:
            raise ValueError(f"warmup_steps: {self.warmup_steps} must be below steps ({self.steps})")
        if self.scheme == "centralized" and (self.cuts or a or self.rank_cut):
            raise ValueError("cuts, adaptive_cuts and rank_cut need scheme = 'split_fed'")
        return self

    def client_cuts(self) -> list[int]:
        """c_k per client (``cuts``, else ``cut`` for everyone)."""
        return list(self.cuts) if self.cuts is not None else [self.cut] * self.num_clients

    @classmethod
    def parse(cls, values: dict) -> TrainConfig:
        """Validate ``values``; a bad field raises one InputError naming it."""
        try:
            return cls(**values)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "training"
            raise InputError(f"training.{where}: {err['msg']}") from None


def config_diff(saved: dict, wanted: dict, ignore: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """The ``TrainConfig`` fields (sorted) in which ``saved`` (a config stored with a record or checkpoint,
    perhaps by an older fedsim) and ``wanted`` make different runs, ``ignore``'s fields left out.

    The one rule of "same run?": a field missing from either side (added to TrainConfig after it was stored)
    counts as its default, nested sections (``adaptive_cuts``) included."""
    old, new = _filled(saved), _filled(wanted)
    return sorted(k for k in (set(old) | set(new)) - set(ignore) if old.get(k) != new.get(k))


def _filled(config: dict) -> dict:
    """``config`` with every missing TrainConfig field (and nested field) at its default."""
    known = {k: v for k, v in config.items() if k in TrainConfig.model_fields}
    try:
        full = TrainConfig.model_validate(known).model_dump()
    except ValidationError:  # stored under older validation rules: fill the top level only
        full = {k: f.get_default(call_default_factory=True) for k, f in TrainConfig.model_fields.items()}
        full.update(known)
    return {**config, **full}
