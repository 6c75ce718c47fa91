"""Faults while drawing: ``fedsim plot`` holds the results folder's one-writer lock, and every figure is
written atomically (a failing or killed ``savefig`` leaves the previous figure or none, never half of one)."""

from __future__ import annotations

import errno

import pytest
from fault_helpers import (
    FaultTable,
    fork_lock_holder,
    kill,
    run_args,
    temp_files,
    tracebacks,
    wait_for,
    write_scenario,
)

from fedsim.cli import main


@pytest.fixture(scope="module", autouse=True)
def _print_table():
    yield
    print("\n" + FaultTable.text())


@pytest.fixture
def results(tmp_path):
    """A small sweep's results folder (rows, no figures yet)."""
    scenario = write_scenario(tmp_path, drops=3)
    out = tmp_path / "out"
    assert main(run_args(scenario, out, "--executor", "serial")) == 0
    assert not (out / "figures").exists()
    return out


def test_plot_is_refused_while_another_process_holds_the_folder(results, tmp_path, capsys):
    holder = fork_lock_holder(results, tmp_path / "ready")
    try:
        assert wait_for(lambda: (tmp_path / "ready").exists())
        capsys.readouterr()
        code = main(["plot", str(results), "--format", "png"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.count("\n") == 0, err
        assert f"PID {holder.pid}" in err and "in use by another fedsim run" in err
        assert not (results / "figures").exists()  # the refused plot drew nothing
    finally:
        kill(holder)
    assert main(["plot", str(results), "--format", "png"]) == 0  # the holder is gone: the lock is free
    assert (results / "figures" / "delay_vs_axis.png").stat().st_size > 0
    FaultTable.add("second writer during fedsim plot", tracebacks=tracebacks(err))


def test_plot_of_a_missing_folder_is_one_line_and_creates_nothing(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nothing")]) == 2
    assert "nothing: not a results folder (no scenario.json)" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists()


@pytest.mark.parametrize("before", ["no figure yet", "an older figure"])
def test_a_failing_savefig_leaves_no_partial_figure(results, capsys, monkeypatch, before):
    from matplotlib.figure import Figure

    figure = results / "figures" / "delay_vs_axis.png"
    if before == "an older figure":
        assert main(["plot", str(results), "--format", "png"]) == 0
    old = figure.read_bytes() if figure.exists() else None
    real = Figure.savefig

    def half_then_disk_full(self, fname, **kwargs):  # writes half the figure, then the disk is full
        real(self, fname, **kwargs)
        data = open(fname, "rb").read()
        open(fname, "wb").write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(fname))

    monkeypatch.setattr(Figure, "savefig", half_then_disk_full)
    capsys.readouterr()
    code = main(["plot", str(results), "--format", "png"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0, err
    assert err.endswith("delay_vs_axis.png: cannot write: no space left on the device; free space or choose "
                        "another folder, then rerun")  # fmt: skip
    assert (figure.read_bytes() if figure.exists() else None) == old  # the old figure, or none at all
    assert temp_files(results) == []
    FaultTable.add("disk full during savefig", tracebacks=tracebacks(err))
