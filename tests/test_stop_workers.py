"""Stopping a sweep's process pool (Ctrl-C, SIGTERM, a failed unit) leaves nothing for interpreter exit to
race with: CPython's exit hook wakes the pool's manager thread through a pipe without a lock, so a manager
thread still closing that pipe made an interrupted run print an ``OSError: [Errno 9]`` traceback."""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from fault_helpers import wait_for

from fedsim.experiments.harness.executors import _stop_workers


def test_stopped_pool_has_no_live_manager_thread_and_a_closed_wakeup_pipe():
    for _ in range(5):
        pool = ProcessPoolExecutor(2, mp_context=get_context("fork"))
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
