"""Stopping a sweep's process pool (Ctrl-C, SIGTERM, a failed unit) leaves nothing for interpreter exit to
race with: CPython's exit hook wakes the pool's manager thread through a pipe without a lock, so a manager
thread still closing that pipe made an interrupted run print an ``OSError: [Errno 9]`` traceback."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import pytest
from fault_helpers import wait_for

from fedsim.experiments.harness.executors import _stop_workers
from fedsim.interrupt import worker_signals


def test_stopped_pool_has_no_live_manager_thread_and_a_closed_wakeup_pipe():
    for _ in range(5):
        # workers as the sweep starts them: SIGTERM ends them (not a handler inherited from this process)
        pool = ProcessPoolExecutor(2, mp_context=get_context("fork"), initializer=worker_signals)
        futures = [pool.submit(time.sleep, 60) for _ in range(6)]
        assert wait_for(lambda f=futures: sum(x.running() for x in f) >= 2, 30)
        manager, wakeup = pool._executor_manager_thread, pool._executor_manager_thread_wakeup
        workers = list(pool._processes.values())
        started = time.monotonic()
        _stop_workers(pool)
        assert time.monotonic() - started < 30  # the workers were terminated, not waited for
        assert not any(proc.is_alive() for proc in workers)
        assert not manager.is_alive() and wakeup._closed
        assert all(f.done() for f in futures)  # cancelled, or failed with the broken pool


def test_a_signal_while_waiting_for_units_is_raised_after_the_wait_not_inside_it(tmp_path, monkeypatch):
    """Raised inside ``concurrent.futures.wait`` (which holds every pending future's lock while it sets up),
    the interrupt could leave a lock held, and the pool's manager thread then hung the exit (seen in CI):
    the sweep waits under ``signals_held`` and raises once the wait has returned."""
    from fault_helpers import write_scenario

    from fedsim import api
    from fedsim.experiments.harness import executors
    from fedsim.interrupt import Interrupted, interruptible

    returned = []
    real_wait = executors.wait

    def wait_hit_by_a_signal(*args, **kwargs):
        if not returned:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # the handler runs in the main thread during this sleep
        returned.append(True)
        return real_wait(*args, **kwargs)

    monkeypatch.setattr(executors, "wait", wait_hit_by_a_signal)
    scenario = api.load_scenario(write_scenario(tmp_path, 20))
    with pytest.raises(Interrupted), interruptible():
        api.run(scenario, executor="process", workers=2, out=tmp_path / "out", figures=False)
    assert returned  # the first wait ran to its end; the interrupt came after it
