"""The event trace as a table, and the summaries read from it.

One row per charged event: ``round, iteration, actor, phase, start_s, end_s, bits, flops, resource``.
``iteration`` is empty (<NA>) for round-level events (the LoRA upload in reading D1, aggregation,
broadcast). Phases: forward, upload_activation, server_forward, server_backward, download_gradient,
backward, upload_lora, aggregate, broadcast, excluded (a deadline removed the client from the round).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # pandas is imported where a frame is built: an optimiser-only run never pays for it
    import pandas as pd


class TraceRow(NamedTuple):
    """One charged event: who (actor) did what (phase) when, on which resource, moving bits or FLOPs."""

    round: int
    iteration: int | None  # None for round-level events
    actor: str
    phase: str
    start_s: float
    end_s: float
    bits: float
    flops: float
    resource: str


TRACE_COLUMNS = TraceRow._fields


def trace_frame(rows: list[TraceRow]) -> pd.DataFrame:
    """Trace rows -> DataFrame (columns ``TRACE_COLUMNS``) sorted by start time."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(TRACE_COLUMNS))
    df["iteration"] = df["iteration"].astype("Int64")
    df["round"] = df["round"].astype(int)
    for col in ("start_s", "end_s", "bits", "flops"):
        df[col] = df[col].astype(float)
    return df.sort_values(["start_s", "end_s"], kind="stable").reset_index(drop=True)


def iteration_terms(trace: pd.DataFrame) -> pd.DataFrame:
    """The terms of eq. (16) per (round, iteration), read from event times (paper-mode structure).

    Columns: start_s (first client FP), T1_s (last activation arrival - start), t_server_fwd_s,
    t_server_bwd_s (summed over server jobs), T2_s (last client BP end - last server BP end; includes
    any gradient download), end_s (last client BP end).
    """
    import pandas as pd

    ev = trace[trace["iteration"].notna()]
    dur = ev["end_s"] - ev["start_s"]
    g = ev.assign(dur=dur).groupby(["round", "iteration"])

    def one(frame: pd.DataFrame) -> pd.Series:
        by = frame.groupby("phase")
        start = by.get_group("forward")["start_s"].min()
        server_end = by.get_group("server_backward")["end_s"].max()
        end = by.get_group("backward")["end_s"].max()
        return pd.Series(
            {
                "start_s": start,
                "T1_s": by.get_group("upload_activation")["end_s"].max() - start,
                "t_server_fwd_s": by.get_group("server_forward")["dur"].sum(),
                "t_server_bwd_s": by.get_group("server_backward")["dur"].sum(),
                "T2_s": end - server_end,
                "end_s": end,
            }
        )

    return g.apply(one, include_groups=False).reset_index()


def lora_upload_s(trace: pd.DataFrame) -> pd.Series:
    """T3 per round: last LoRA arrival minus the end of the last local iteration (reading D1), by round."""
    ups = trace[(trace["phase"] == "upload_lora") & trace["iteration"].isna()].groupby("round")["end_s"].max()
    last_bwd = trace[trace["phase"] == "backward"].groupby("round")["end_s"].max()
    return (ups - last_bwd).rename("T3_s")


def phase_summary(trace: pd.DataFrame) -> pd.DataFrame:
    """Per (round, phase): number of events, total busy time [s], bits and FLOPs."""
    busy = trace["end_s"] - trace["start_s"]
    return (
        trace.assign(busy_s=busy)
        .groupby(["round", "phase"], sort=True)
        .agg(events=("phase", "size"), busy_s=("busy_s", "sum"), bits=("bits", "sum"), flops=("flops", "sum"))
        .reset_index()
    )
