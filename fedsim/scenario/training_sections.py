"""The scenario sections that run real training: ``[study]`` (a convergence study, one training run per
sweep point) and ``[live]`` (a live co-simulation: training driven by the event engine, with named arms)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from fedsim.learn.config import TrainConfig
from fedsim.scenario.section import Section, known_scheme


class StudySection(Section):
    """A convergence study: one real training run (``fedsim train``) per sweep point, e.g. axes
    ``study.training.rank``, ``study.training.scheme``, ``study.training.seed``. Each run writes its
    convergence record to ``<results>/records/`` (checkpoints in ``<results>/checkpoints/``), so a killed
    study resumes at the run, and with ``training.checkpoint_every`` at the step, where it stopped."""

    training: TrainConfig = Field(default_factory=TrainConfig, description="the runs' common TrainConfig")
    targets: tuple[float, ...] = Field(
        (), description="target validation PPLs: E(r), the rounds to reach each, is a column of every row"
    )
    relative_targets_pct: tuple[float, ...] = Field(
        (),
        description="targets relative to the plateau: E(r) to within each p % of the best plateau PPL any rank "
        "reaches (per training scheme), interpolated, with a 95 % CI over seeds, e.g. [2, 5, 10]",
    )
    lr_by_rank: dict[int, float] | None = Field(
        None,
        description="the learning rate of each run by its LoRA rank (e.g. the tables/chosen_lr.csv of a "
        "learning-rate sweep such as scenarios/rank_lr_sweep.toml); None = training.lr for every rank",
    )
    threads: int = Field(1, ge=1, le=1024, description="torch CPU threads per run (per worker process)")
    existing_only: bool = Field(
        False,
        description="train nothing: rows, tables and figures of the runs whose records already exist (the "
        "interim results of a study still running or stopped)",
    )
    reuse_records: tuple[str, ...] = Field(
        (),
        description="records folders of other studies (relative to the scenario file): a run whose record is "
        "missing takes a finished record from them whose TrainConfig equals its own (checked as the study's "
        "own records are) instead of training again; the copy names where it came from",
    )
    out_dir: str | None = Field(
        None, description="set by fedsim run: the results folder whose records/ and checkpoints/ runs use"
    )

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        for t in value:
            if not (1 < t < float("inf")):
                raise ValueError(f"target perplexities must be finite and > 1, got {t}")
        return tuple(sorted(set(value), reverse=True))


class LiveSection(Section):
    """A live co-simulation: real split-LoRA training driven by the event engine, before the sweep.

    The live run uses ``[system]`` with K = ``live.training.num_clients``; the workload is derived from the
    trained model's own config; subchannels and power come from ``scheme``, the cut and rank from training.
    """

    enabled: bool = Field(True, description="run the live co-simulation")
    training: TrainConfig = Field(default_factory=TrainConfig, description="the learning code's TrainConfig")
    ranks: tuple[int, ...] | None = Field(
        None, description="run once per LoRA rank (Table IV / convergence per rank); default: training.rank"
    )
    max_rounds: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="most global rounds (default steps / I); stops early at the target",
    )
    drop: int = Field(0, ge=0, description="Monte Carlo drop index whose placement the live run uses")
    scheme: str = Field(
        "proposed",
        description="allocation scheme whose subchannels and power time the live run (any name [schemes] "
        "names accepts)",
    )

    arms: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="named training variants (TrainConfig fields over live.training), e.g. SplitFT's same cut "
        "vs adaptive cuts; each arm runs once per combination of `vary` (fedsim.experiments.live.arms)",
    )
    vary: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="TrainConfig field -> values every arm is run with (product), e.g. dirichlet_alpha",
    )

    @field_validator("scheme")
    @classmethod
    def _scheme_known(cls, value: str) -> str:
        return known_scheme(value)

    @model_validator(mode="after")
    def _arms_valid(self) -> LiveSection:
        from fedsim.scenario.arms import arm_configs

        arm_configs(self)  # every (arm, vary) combination is a valid config (ValueError names it)
        return self
