"""The Ray executor's ways out, on a real local two-node cluster (``ray.cluster_utils.Cluster``, no mock):

* a worker process SIGKILLed while it runs a unit: the unit runs again, no row is lost or duplicated, and
  the rows equal a serial run's;
* an address where nothing listens, or where something listens that is not Ray: one line naming the
  address, exit 2, within the connect timeout (Ray's own client retries for minutes).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pandas as pd
import pytest
from fault_helpers import row_faults, run_args, spawn_fedsim, tracebacks, write_scenario

from fedsim.cli import main

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")  # a dependency of ray

DROPS = 8  # x 2 points; each unit ~0.2 s with engine timing


def _scenario(folder):
    path = write_scenario(folder, DROPS)
    path.write_text(path.read_text().replace('timing = "analytic"', 'timing = "engine"'))
    return path


def _running_unit_workers() -> list[psutil.Process]:
    """Ray worker processes that are running a unit now (Ray titles them ``ray::_ray_unit``)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if cmd.startswith("ray::_ray_unit"):
            found.append(proc)
    return found


def test_a_ray_worker_killed_mid_sweep_loses_no_rows_on_a_two_node_cluster(tmp_path, capsys):
    from ray.cluster_utils import Cluster

    scenario = _scenario(tmp_path)
    assert main(run_args(scenario, tmp_path / "serial", "--executor", "serial")) == 0
    expected = pd.read_parquet(tmp_path / "serial" / "rows.parquet")
    capsys.readouterr()

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        killed: list[int] = []
        stop = threading.Event()

        def killer() -> None:  # SIGKILL the first two workers seen running a unit
            while not stop.is_set() and len(killed) < 2:
                for proc in _running_unit_workers():
                    if proc.pid not in killed:
                        time.sleep(0.05)  # well inside the unit
                        try:
                            os.kill(proc.pid, signal.SIGKILL)
                            killed.append(proc.pid)
                        except ProcessLookupError:
                            pass
                        break
                time.sleep(0.01)

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        out = tmp_path / "ray"
        try:
            status = main(run_args(scenario, out, "--executor", "ray", "--ray-address", cluster.address))
        finally:
            stop.set()
            thread.join(10)
        err = capsys.readouterr().err
        assert status == 0, err
        assert len(killed) >= 1, "no worker was caught running a unit"
        rows = pd.read_parquet(out / "rows.parquet")
        assert row_faults(rows, expected) == {"lost": 0, "duplicated": 0}
        pd.testing.assert_frame_equal(rows, expected)
        assert tracebacks(err) == 0
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_an_unreachable_ray_address_is_one_line_within_the_timeout(tmp_path):
    scenario = write_scenario(tmp_path, 2)
    with socket.socket() as free:  # a port where nothing listens
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    started = time.monotonic()
    proc = spawn_fedsim(
        run_args(scenario, tmp_path / "o", "--executor", "ray", "--ray-address", f"127.0.0.1:{port}")
    )
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert time.monotonic() - started < 30
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == [lines[-1]] and f"127.0.0.1:{port}" in lines[-1] and "cannot connect" in lines[-1]
    assert not (tmp_path / "o").exists()  # nothing written


def test_a_listening_port_that_is_not_ray_gives_up_after_ray_timeout(tmp_path):
    scenario = write_scenario(tmp_path, 2)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        address = f"127.0.0.1:{server.getsockname()[1]}"
        started = time.monotonic()
        argv = run_args(
            scenario, tmp_path / "o", "--executor", "ray", "--ray-address", address, "--ray-timeout", "4"
        )
        proc = spawn_fedsim(argv)
        _, err = proc.communicate(timeout=90)
    assert proc.returncode == 2, err
    assert time.monotonic() - started < 45
    assert tracebacks(err) == 0
    last = err.strip().splitlines()[-1]
    assert last.startswith("fedsim run: error: --ray-address") and address in last and "within 4 s" in last
    assert not (tmp_path / "o").exists()
