"""The typed scenario: every section of a ``scenarios/*.toml`` file, with help text on every field.

Sections compose the typed configs the other packages own: ``[system]`` is ``SystemParams``,
``[engine]`` is the engine's ``EngineConfig`` and ``[live.training]`` the learning code's ``TrainConfig``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from fedsim.core.system import SystemParams
from fedsim.core.workload import BITS
from fedsim.engine.config import EngineConfig
from fedsim.optimize.scheme_spec import SCHEMES
from fedsim.radio.config import RadioSection
from fedsim.scenario.section import Section, known_scheme
from fedsim.scenario.training_sections import LiveSection, StudySection

SCHEME_NAMES = SCHEMES  # the built-in schemes, in display order (fedsim.optimize.scheme_spec)


# E(r) of spec §7 (PROPOSED: global rounds at I = 10 to reach the target PPL). A measured convergence
# record (results/records/*.json) replaces it through ``training.records``.
SPEC_PROPOSED_ROUNDS: dict[int, float] = {1: 240.0, 2: 204.0, 4: 180.0, 6: 174.0, 8: 170.0}


# Engine switches that make rounds differ from each other (so one timed round does not stand for all).
_RANDOM_ENGINE_SWITCHES = ("fading_every_round", "fading_every_iteration", "failure_prob", "straggler_prob")


def engine_with_upload_reading(
    engine: EngineConfig, upload_every_local_iteration: bool, **update
) -> EngineConfig:
    """The one place the D1/D2 reading of eq. (17) is reconciled: the engine uploads LoRA every local iteration
    exactly when the optimiser assumes it (``training.upload_every_local_iteration``)."""
    return engine.model_copy(
        update={"lora_upload_every_iteration": bool(upload_every_local_iteration), **update}
    )


class ModelSection(Section):
    """Which LLM is split, and how its workload is counted (spec §8)."""

    id: str = Field(
        "gpt2",
        min_length=1,
        description="model name (gpt2, gpt2-medium, smollm2-135m, opt-125m) or config path",
    )
    seq_len: int = Field(512, ge=1, le=1_048_576, description="tokens per sample L")
    bits: int = Field(32, description=f"bits per activation / LoRA parameter on the wire, one of {BITS}")
    workload_mode: Literal["analytic", "table3"] = Field(
        "analytic", description="FLOP counting: analytic (spec §8.3) or the paper's Table III per sample"
    )
    lora_targets: tuple[str, ...] = Field(("q", "v"), min_length=1, description="LoRA-adapted projections")
    bwd_factor: float = Field(2.0, gt=0, le=100, description="backward FLOPs / forward FLOPs")

    @field_validator("bits")
    @classmethod
    def _bits_the_workload_counts(cls, value: int) -> int:
        if value not in BITS:  # the workload model's own list: validate and fedsim run agree
            raise ValueError(f"must be one of {', '.join(map(str, BITS))}")
        return value


class TrainingSection(Section):
    """Training hyper-parameters the delay depends on, and where E(r) (rounds to target) comes from."""

    batch_size: int = Field(16, ge=1, le=1_000_000, description="b, samples per client per local iteration")
    local_iterations: int = Field(10, ge=1, le=1_000_000, description="I, local iterations per global round")
    ranks: tuple[int, ...] | None = Field(
        None, description="candidate LoRA ranks R; default: every rank E(r) is known for"
    )
    rounds_by_rank: dict[int, float] | None = Field(
        None, description="E(r) inline: rank -> global rounds to reach the target; default spec §7 values"
    )
    rounds_source: str = Field(
        "spec_proposed",
        min_length=1,
        description="label of where inline E(r) came from (written to every row)",
    )
    records: tuple[str, ...] = Field(
        (), description="convergence record JSON files (relative to the scenario file) supplying E(r) instead"
    )
    upload_every_local_iteration: bool = Field(
        False,
        description="reading D2 of eq. (17): LoRA uploaded every local iteration instead of every round",
    )
    per_client_cuts: bool = Field(
        False, description="optimise one cut per client (spec §10) instead of one cut"
    )
    target_ppl: float | None = Field(
        None,
        gt=1,
        allow_inf_nan=False,
        description="with records: E(r) = rounds until validation PPL first falls to this value, recomputed "
        "from each record's curve (default: each record's own target)",
    )
    target_within_pct: float | None = Field(
        None,
        gt=0,
        le=100,
        allow_inf_nan=False,
        description="with records, instead of target_ppl: the target is this many percent above the best "
        "plateau PPL any rank reaches in the records (a rank's plateau: the mean over its records of the mean "
        "of their last 3 evaluations), the rule of the rank-study page's relative targets",
    )
    records_interpolate: bool = Field(
        False,
        description="with records and target_ppl: E(r) is the crossing of the target interpolated in log PPL "
        "between the evaluations around it, instead of the first evaluated round at or below it (its upper "
        "bound, a multiple of the evaluation interval)",
    )
    records_aggregate: Literal["mean", "median", "max"] = Field(
        "mean",
        description="with several records of one rank (seeds): how their E(r) combine; a rank is kept only "
        "if every one of its records reached the target",
    )
    e_draws: int = Field(
        0,
        ge=0,
        le=1000,
        description="with records of several seeds per rank: re-optimise every task this many times with E(r) "
        "drawn from the seeds (one seed's E(r) per rank, independently) and report how often the chosen rank "
        "differs (rank_flip_share) and the 5-95 % range of the predicted delay; 0 = off",
    )

    @field_validator("rounds_by_rank")
    @classmethod
    def _positive_rounds(cls, value: dict[int, float] | None) -> dict[int, float] | None:
        if value is not None:
            if not value:
                raise ValueError("needs at least one rank")
            for rank, rounds in value.items():
                if rank < 1 or not (0 < rounds < float("inf")):
                    raise ValueError(f"ranks must be >= 1 and rounds finite > 0, got {rank} = {rounds}")
        return value

    @field_validator("ranks")
    @classmethod
    def _positive_ranks(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and (not value or min(value) < 1 or len(set(value)) != len(value)):
            raise ValueError("must be a non-empty list of distinct ranks >= 1")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> TrainingSection:
        if self.rounds_by_rank is not None and self.records:
            raise ValueError("give either rounds_by_rank or records, not both")
        if self.e_draws and not self.records:
            raise ValueError("e_draws needs records (E(r) measured with several seeds per rank)")
        if self.target_within_pct is not None and (not self.records or self.target_ppl is not None):
            raise ValueError("target_within_pct needs records and no target_ppl (it sets the target from them)")
        if self.records_interpolate and (
            not self.records or (self.target_ppl is None and self.target_within_pct is None)
        ):
            raise ValueError(
                "records_interpolate needs records and target_ppl or target_within_pct (the target to "
                "interpolate to)"
            )
        if self.ranks is not None and not self.records:
            missing = set(self.ranks) - set(self.inline_rounds())
            if missing:
                raise ValueError(f"ranks {sorted(missing)} have no E(r) in rounds_by_rank")
        return self

    def inline_rounds(self) -> dict[int, float]:
        """E(r) given inline (or the spec §7 PROPOSED default), restricted to ``ranks``."""
        table = dict(self.rounds_by_rank) if self.rounds_by_rank is not None else dict(SPEC_PROPOSED_ROUNDS)
        return {r: table[r] for r in (self.ranks or sorted(table)) if r in table}


class SchemesSection(Section):
    """Which resource-allocation schemes to compare (spec §6)."""

    names: tuple[str, ...] = Field(
        SCHEME_NAMES,
        min_length=1,
        description="schemes to run: built-in proposed and baselines a-d, any registered name, an import "
        "path 'package.module:Class', or an entry point of the group fedsim.schemes",
    )
    power_solver: Literal["exact", "cvxpy"] = Field(
        "exact",
        description="power control: exact (Newton with a bisection fallback, flat channels) or cvxpy (also "
        "handles fading)",
    )
    per_client_cuts: bool = Field(
        False,
        description="the optimising schemes choose one cut per client (spec §10; or training.per_client_cuts)",
    )
    rank_cut: int | None = Field(
        None,
        ge=1,
        description="SplitFT cut-layer rank (spec §10c): this rank on each client's blocks c_k and c_k+1 of "
        "every scheme's allocation, the scheme's rank elsewhere (unset: one rank; the splitft scheme then uses "
        "half its rank at the cut)",
    )

    @field_validator("names")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from fedsim.optimize.schemes import scheme_name

        names = [scheme_name(known_scheme(ref)) for ref in value]
        if len(set(names)) != len(names):
            raise ValueError(f"scheme names must be distinct, got {names}")
        return value


class SweepSection(Section):
    """Swept axes: any dotted scenario field -> list of values (all points validated on load)."""

    axes: dict[str, list[Any]] = Field(default_factory=dict, description="dotted field -> values")
    mode: Literal["product", "zip"] = Field("product", description="cartesian product or zip of the axes")

    @field_validator("axes")
    @classmethod
    def _check_axes(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in value.items():
            head = key.split(".")[0]
            if head in ("sweep", "montecarlo", "name", "outputs") or "." not in key:
                raise ValueError(f"cannot sweep {key!r}: give a dotted field such as system.p_max_w")
            if not values:
                raise ValueError(f"axis {key!r} has no values")
        return value

    @model_validator(mode="after")
    def _zip_lengths(self) -> SweepSection:
        if self.mode == "zip" and len({len(v) for v in self.axes.values()}) > 1:
            raise ValueError("zip mode needs axes of equal length")
        return self


class MonteCarloSection(Section):
    """Independent random drops per sweep point (positions, shadowing, client compute, random choices)."""

    drops: int = Field(100, ge=0, le=1_000_000, description="drops per sweep point (0: no Monte Carlo sweep)")
    base_seed: int = Field(0, ge=0, le=2**63 - 1, description="root of every seed (numpy SeedSequence)")
    same_drops_across_points: bool = Field(
        False,
        description="draw drop d of every sweep point from the same seed (common random numbers along the "
        "swept axis: smoother curves); default: a seed per (point, drop)",
    )
    timing: Literal["engine", "engine_round", "analytic"] = Field(
        "engine",
        description="engine: time every round of each task in the event engine (replay); engine_round: time "
        "one round in the engine and charge E(r) of them (needs a deterministic engine: every round is then "
        "identical); analytic: eq. (17) only (equal to the engine in paper mode)",
    )


class OutputsSection(Section):
    """Figures and tables drawn from the saved rows."""

    figures: tuple[
        Literal["delay", "convergence", "table4", "placement_cdf", "decisions", "breakdown"], ...
    ] = Field(
        ("delay", "decisions", "breakdown"),
        description="figures to draw after the run: delay (vs the swept axis, with the paired reduction vs "
        "proposed), placement_cdf, decisions (cut, rank, subchannels, power), breakdown (delay terms), "
        "convergence, table4",
    )
    formats: tuple[Literal["png", "pdf", "svg"], ...] = Field(
        ("png", "pdf"), min_length=1, description="file types"
    )
    x_axis: str | None = Field(
        None, description="sweep axis on the x axis of the delay figure (default: first)"
    )
    x_label: str | None = Field(None, description="x-axis label of the delay figure")
    x_scale: float = Field(
        1.0, gt=0, description="multiply x values by this before plotting (e.g. 1e-6 for MHz)"
    )
    x_dbm: bool = Field(False, description="plot x values given in W as dBm")
    title: str | None = Field(None, description="figure title")
    stat: Literal["mean", "median"] = Field(
        "mean", description="delay curves: mean with 95 % t-CI bands, or median with interquartile bands"
    )
    y_log: bool = Field(True, description="logarithmic delay axis (keeps close schemes apart)")
    x2_column: Literal["client_flops_per_s_mean", "server_flops_per_s"] | None = Field(
        None, description="row column shown as a second (top) x axis in physical units, e.g. server FLOP/s"
    )
    x2_label: str | None = Field(None, description="label of the second x axis (default: from the column)")
    note: str = Field("", description="sentence added to every figure's caption line (e.g. assumed values)")


class Scenario(Section):
    """One study: system, model, training, schemes, engine switches, sweep, Monte Carlo, outputs."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]{1,100}$", description="results go to results/<name>/")
    description: str = Field("", description="free text shown by fedsim validate")
    system: SystemParams = Field(
        default_factory=SystemParams, description="radio and compute system (spec §7)"
    )
    model: ModelSection = Field(default_factory=ModelSection, description="the split LLM")
    training: TrainingSection = Field(default_factory=TrainingSection, description="b, I, ranks and E(r)")
    schemes: SchemesSection = Field(default_factory=SchemesSection, description="schemes compared")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="event-engine switches")
    radio: RadioSection | None = Field(
        None, description="radio model (absent: the paper's Shannon FDMA radio; see fedsim.radio)"
    )
    sweep: SweepSection = Field(default_factory=SweepSection, description="swept axes")
    montecarlo: MonteCarloSection = Field(default_factory=MonteCarloSection, description="drops and seed")
    live: LiveSection | None = Field(None, description="optional live split-LoRA co-simulation")
    study: StudySection | None = Field(
        None, description="optional convergence study: one real training run per sweep point"
    )
    outputs: OutputsSection = Field(default_factory=OutputsSection, description="figures and formats")

    @model_validator(mode="after")
    def _rounds_identical(self) -> Scenario:
        if self.montecarlo.timing == "engine_round":
            random = [k for k in _RANDOM_ENGINE_SWITCHES if getattr(self.engine, k)]
            if random:
                raise ValueError(
                    f"montecarlo.timing: 'engine_round' needs identical rounds, but engine.{random[0]} makes "
                    "them random; use timing = 'engine'"
                )
        return self

    @model_validator(mode="after")
    def _radio_fits(self) -> Scenario:
        radio = self.radio
        if radio is None or radio.model == "paper":
            return self
        if self.schemes.power_solver == "cvxpy":
            raise ValueError(
                f"schemes.power_solver: 'cvxpy' solves the Shannon rate only; radio.model {radio.model!r} needs "
                "'exact' (bisection, exact for any monotone rate)"
            )
        fading = [k for k in ("fading_every_round", "fading_every_iteration") if getattr(self.engine, k)]
        if self.system.fading or fading:
            where = "system.fading" if self.system.fading else f"engine.{fading[0]}"
            raise ValueError(f"{where}: radio.model {radio.model!r} models flat links only (no fading)")
        if radio.model == "nr" and radio.harq == "sampled" and self.montecarlo.timing == "engine_round":
            raise ValueError(
                "montecarlo.timing: 'engine_round' needs identical rounds, but radio.harq = 'sampled' draws TB "
                "errors per transfer; use radio.harq = 'expected' or timing = 'engine'"
            )
        return self

    @model_validator(mode="after")
    def _one_upload_reading(self) -> Scenario:
        if self.engine.lora_upload_every_iteration and not self.training.upload_every_local_iteration:
            raise ValueError(
                "engine.lora_upload_every_iteration: set training.upload_every_local_iteration instead "
                "(one switch for optimiser and engine)"
            )
        return self
