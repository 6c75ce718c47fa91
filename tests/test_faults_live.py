"""Fault injection on the live co-simulation: a live run (real tiny split-LoRA training inside the SimPy
engine, SplitFT adaptive cuts so that the engine re-times moved blocks) is SIGKILLed at seeded moments (any
trainer call of the engine, or inside a checkpoint write between fsync and rename), resumed each time, and
must end with the curve, the engine's round rows and the simulated times of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pandas as pd
import pytest
from fault_helpers import FaultTable, _child, temp_files, tracebacks

from fedsim.cli import main

TOML = """name = "livefaults"
[montecarlo]
drops = 0
[live]
ranks = [2]
[live.training]
model = "tiny-gpt2"
num_clients = 2
steps = 12
local_iterations = 2
eval_every = 4
seq_len = 32
batch_size = 2
train_samples = 32
eval_samples = 8
test_samples = 0
generate_mrs = 0
cut = 1
{checkpoint}
[live.training.adaptive_cuts]
every = 1
epsilon = 0.0
cut_max = 3
"""
_HOOKED = ("client_forward", "server_step", "client_backward", "aggregate", "take_cut_moves", "end_round")


@pytest.fixture(scope="module", autouse=True)
def _print_table():
    yield
    print("\n" + FaultTable.text())


def _child_killed_at(argv: list[str], log: str, nth: int, threads: int) -> None:
    """``fedsim ARGV`` that SIGKILLs itself at its ``nth`` moment: a call of the engine into the trainer, or
    an fsync of a file being written (after the temporary file is whole, before its rename); ``nth`` = 0:
    never (the number of trainer calls goes to the log)."""
    import torch

    import fedsim.atomic
    from fedsim.learn.live_trainer import LiveTrainer

    torch.set_num_threads(threads)  # the parent's: its reference run's floats depend on the thread count

    count = {"n": 0, "calls": 0}

    def tick() -> None:
        count["n"] += 1
        if count["n"] == nth:
            os.kill(os.getpid(), signal.SIGKILL)

    def hooked(method):
        def call(self, *args):
            count["calls"] += 1
            tick()
            return method(self, *args)

        return call

    for name in _HOOKED:
        setattr(LiveTrainer, name, hooked(getattr(LiveTrainer, name)))
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        tick()

    fedsim.atomic.os.fsync = fsync
    from fedsim import cli

    real_main = cli.main

    def main_then_count(argv_):
        code = real_main(argv_)
        with open(log, "a") as out:
            out.write(f"\ncalls={count['calls']}\n")
        return code

    cli.main = main_then_count
    _child(argv, log)


def _fork(argv: list[str], log, nth: int):
    """Run ``_child_killed_at`` in a fresh (spawned) process: this process has run torch, and a forked child
    of a process whose OpenMP threads ran can hang in its first parallel region (seen once under xdist).
    The child trains on as many threads as this process (an earlier test may have changed it)."""
    import multiprocessing

    import torch

    log.touch()
    proc = multiprocessing.get_context("spawn").Process(
        target=_child_killed_at, args=(argv, str(log), nth, torch.get_num_threads())
    )
    proc.start()
    proc.join()
    return proc.exitcode


def _outputs(out) -> dict:
    live = out / "live"
    summary = pd.read_csv(live / "summary.csv").drop(columns=["wall_s"])
    record = json.loads(next((live / "rank2").glob("*_r2.json")).read_text())
    return {
        "curve": pd.read_csv(live / "curve.csv"),  # val PPL, train loss and simulated time per round
        "rounds": pd.read_csv(live / "rank2" / "rounds.csv"),  # the engine's start_s / end_s per round
        "summary": summary,
        "record_curve": record["curve"],
    }


def _equal(got: dict, want: dict) -> None:
    pd.testing.assert_frame_equal(got["curve"], want["curve"], check_exact=True)
    pd.testing.assert_frame_equal(got["rounds"], want["rounds"], check_exact=True)
    pd.testing.assert_frame_equal(got["summary"], want["summary"], check_exact=True)
    assert got["record_curve"] == want["record_curve"]


def _scenario(folder, checkpoint_every: int | None):
    path = folder / "livefaults.toml"
    line = f"checkpoint_every = {checkpoint_every}" if checkpoint_every else ""
    path.write_text(TOML.format(checkpoint=line))
    return path


def _args(scenario, out) -> list[str]:
    return ["run", str(scenario), "--out", str(out), "--no-figures", "--no-progress"]


def test_live_run_killed_at_seeded_moments_resumes_to_the_uninterrupted_run(tmp_path):
    # Prepare: the uninterrupted run without checkpoints, and one with a checkpoint every round (2 steps)
    plain = _scenario(tmp_path, None)
    assert main(_args(plain, tmp_path / "plain")) == 0
    want = _outputs(tmp_path / "plain")
    assert want["curve"]["val_ppl"].notna().sum() >= 3 and len(want["rounds"]) == 6
    scenario = _scenario(tmp_path, 2)
    log = tmp_path / "whole.log"
    assert _fork(_args(scenario, tmp_path / "whole"), log, 0) == 0
    calls = int(log.read_text().rsplit("calls=", 1)[1].split()[0])
    _equal(_outputs(tmp_path / "whole"), want)  # checkpointing itself changes nothing
    cuts = json.loads((tmp_path / "whole" / "live" / "rank2" / "summary.json").read_text())
    assert cuts["rounds_completed"] == 6
    # Execute: kill the run at seeded moments, resuming after each kill, then let it finish. A resumed run
    # replays every round through the trainer, so each of the first ``calls`` moments is reached
    out, logs = tmp_path / "killed", []
    rng = np.random.default_rng(12)
    kills = sorted(int(n) for n in rng.choice(np.arange(1, calls + 1), size=6, replace=False))
    for i, nth in enumerate(kills):
        log = tmp_path / f"kill{i}.log"
        assert _fork(_args(scenario, out), log, nth) == -signal.SIGKILL
        logs.append(log.read_text())
        ckpt = out / "live" / "rank2" / "checkpoint.pt"
        if ckpt.exists():  # whatever the moment, the checkpoint on disk is a whole one
            from fedsim.learn.checkpoint import read_payload

            assert read_payload(ckpt)["live"]["rounds"] >= 1
    log = tmp_path / "final.log"
    assert _fork(_args(scenario, out), log, 0) == 0
    logs.append(log.read_text())
    # Assert: the same curve, engine rows and simulated times; no traceback, no temporary file left
    got = _outputs(out)
    _equal(got, want)
    assert temp_files(out) == []
    steps = list(got["curve"]["step"])
    lost, duplicated = len(set(want["curve"]["step"]) - set(steps)), len(steps) - len(set(steps))
    for i, text in enumerate(logs[:-1]):
        FaultTable.add("SIGKILL during a live run (checkpoints + engine replay)", lost if i == 0 else 0,
                       duplicated if i == 0 else 0, tracebacks(text, logs[-1] if i == 0 else ""))  # fmt: skip
    assert tracebacks(*logs) == 0


def test_a_live_checkpoint_the_replayed_engine_does_not_reach_is_refused_in_one_line(tmp_path, capsys):
    from fedsim.learn.checkpoint import read_payload, save_checkpoint

    # Prepare: a finished live run with checkpoints; its last checkpoint claims another simulated time
    scenario, out = _scenario(tmp_path, 4), tmp_path / "out"
    assert main(_args(scenario, out)) == 0
    rank = out / "live" / "rank2"
    payload = read_payload(rank / "checkpoint.pt")
    assert payload["live"]["rounds"] == 6 and payload["step"] == 12
    payload["live"]["sim_time_s"] *= 1.5
    save_checkpoint(rank / "checkpoint.pt", payload["config"], payload["step"], curve=payload["curve"],
                    system_state=payload["system"], extra={"live": payload["live"]})  # fmt: skip
    (rank / "summary.json").unlink()  # the rank is trained again, from its checkpoint
    capsys.readouterr()
    # Execute
    code = main(_args(scenario, out))
    # Assert: exit 2, one line naming the checkpoint, both clocks and what to do
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "checkpoint.pt: the replayed engine ended round 6 at t = " in err[0] and "delete it" in err[0]
