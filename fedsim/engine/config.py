"""``EngineConfig``: the switches of the discrete-event engine (the ``[engine]`` section of a scenario).

The defaults are *paper mode*: a static channel per drop, the main server waits for every client's
activations, gradient downloads, aggregation and broadcast take no time, clients start each local
iteration together, nobody fails. In paper mode the engine's total equals eq. (17) of the spec.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class EngineConfig(BaseModel):
    """Switches and constants of one engine run; defaults reproduce the paper's delay model."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # --- channel dynamics ---
    fading_every_round: bool = Field(
        False,
        description="redraw Rayleigh block fading (|g|^2 ~ Exp(1) per client and subchannel) at the start of "
        "every global round; rates follow the gains at the instant a transfer starts",
    )
    fading_every_iteration: bool = Field(
        False,
        description="redraw the fading block at the start of every local iteration and of the LoRA-upload "
        "phase (implies per-round redraws)",
    )
    # --- downlink ---
    download: bool = Field(
        False, description="charge the gradient download (same size as the activation) on the downlink"
    )
    broadcast: bool = Field(
        False,
        description="charge the federated server's broadcast of the aggregated LoRA (largest client LoRA, "
        "multicast at the weakest participant's downlink rate)",
    )
    downlink_power_w: float = Field(1.0, gt=0, description="server downlink transmit power [W]")
    downlink_bandwidth_hz: float = Field(10e6, gt=0, description="server downlink bandwidth [Hz]")
    downlink_slots: int = Field(
        1,
        ge=1,
        description="parallel downlink transmissions; each gets bandwidth/slots and power/slots (1 = one "
        "client at a time on the full band)",
    )
    # --- main server ---
    pipelined_server: bool = Field(
        False,
        description="the main server runs FP+BP on each client's activations as they arrive (queueing on its "
        "GPU) instead of waiting for all of them (eq. 16 barrier)",
    )
    server_gpu_capacity: int = Field(
        1, ge=1, description="jobs the main server runs at once, each at the full server FLOP/s"
    )
    iteration_barrier: bool = Field(
        True,
        description="clients start each local iteration together after the slowest backward pass (eq. 16); "
        "false lets a client start its next forward pass as soon as its own backward pass ends",
    )
    lora_upload_every_iteration: bool = Field(
        False, description="reading D2 of eq. (17): the LoRA upload (T3) is part of every local iteration"
    )
    aggregation_s: float = Field(0.0, ge=0, description="federated-server aggregation time per round [s]")
    # --- failures ---
    failure_prob: float = Field(
        0.0, ge=0, le=1, description="probability that a client drops out of a global round (drawn per round)"
    )
    straggler_prob: float = Field(
        0.0, ge=0, le=1, description="probability that a client is a straggler in a global round"
    )
    straggler_slowdown: float = Field(
        1.0, ge=1, description="factor by which a straggler's compute (FP, BP) is slower"
    )
    round_deadline_s: float | None = Field(
        None,
        gt=0,
        description="time after a round's start by which a client must have uploaded its LoRA; a late client "
        "is excluded at the deadline (the main server proceeds without it) and misses aggregation",
    )
    activation_deadline_s: float | None = Field(
        None,
        gt=0,
        description="barrier server only: time after a local iteration's start that the main server waits for "
        "activations; a client whose activations are later is excluded for the rest of the round (the server "
        "proceeds without it) and misses aggregation",
    )
    # --- energy ---
    energy_flops_per_cycle: float | None = Field(
        None,
        gt=0,
        description="client FLOPs per GPU cycle for the energy model; default: the drop's own "
        "(client_flops_per_s / client_cycles_per_s)",
    )
    effective_capacitance: float = Field(
        1e-28,
        ge=0,
        description="effective switched capacitance k of the client chip: energy = k f^2 per cycle [J s^2]",
    )
    # --- output ---
    trace: bool = Field(True, description="record one trace row per event (off for fast Monte Carlo sweeps)")

    @model_validator(mode="after")
    def _check(self) -> EngineConfig:
        if self.pipelined_server and self.activation_deadline_s is not None:
            raise ValueError("activation_deadline_s needs the barrier server (pipelined_server = false)")
        return self

    @property
    def fading(self) -> bool:
        """True when the engine redraws fading at all."""
        return self.fading_every_round or self.fading_every_iteration
