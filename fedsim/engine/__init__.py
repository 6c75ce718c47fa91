"""Discrete-event co-simulation engine (SimPy): the total training delay comes from event timing.

``simulate(drop, workload, alloc, batch_size, local_iterations, rounds, config, rng, trainer=None)``
runs one drop under one allocation and returns a ``SimResult``. ``EngineConfig`` holds the switches
(defaults: the paper's delay model); ``fedsim.engine.trainer`` documents the live-training contract.
"""

from fedsim.engine.builder import SimResult, simulate
from fedsim.engine.config import EngineConfig
from fedsim.engine.trace import (
    TRACE_COLUMNS,
    TraceRow,
    iteration_terms,
    lora_upload_s,
    phase_summary,
    trace_frame,
)
from fedsim.engine.trainer import StubTrainer, Trainer

__all__ = [
    "TRACE_COLUMNS",
    "EngineConfig",
    "SimResult",
    "StubTrainer",
    "TraceRow",
    "Trainer",
    "iteration_terms",
    "lora_upload_s",
    "phase_summary",
    "simulate",
    "trace_frame",
]
