"""Where the units of a sweep run: in this process, on local cores, or on a Ray cluster.

Every executor runs ``kind.run_unit(scenario, point, drop)`` (``fedsim.experiments.kinds``) for the units it
is given and yields ``(point, drop, rows)`` as units finish, in any order; ``kind.prime`` computes state
once here that ``kind.seed_worker`` installs in each worker. The scenario travels once per worker (as JSON),
so results are identical whatever the executor and worker count: each unit seeds itself. Schemes, radio
models and model families registered at run time travel with it (``fedsim.registry.export_all``), so a
spawned or Ray worker knows them as a forked one does.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context

from pydantic import ValidationError

from fedsim.errors import InputError, StuckConnectionError
from fedsim.interrupt import signals_held, worker_signals
from fedsim.registry import export_all, install_all
from fedsim.scenario.load import _one_line
from fedsim.scenario.model import Scenario

EXECUTORS = ("serial", "process", "ray")
Unit = tuple[int, int]
Done = tuple[int, int, list[dict]]

_WORKER_SCENARIO: Scenario | None = None
_WORKER_RUN_UNIT = None  # the kind's unit function, set once by the initializer
_WORKER_ERROR: InputError | None = None  # why this worker could not start; its units raise it


def _die_with_parent() -> None:
    """Linux: have the kernel stop this worker when the sweep process dies (even by SIGKILL), so a killed
    run leaves no orphans still computing."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _worker_scenario(scenario_json: str, seed_worker, state: dict, exports: list) -> Scenario:
    """The parent's scenario in a worker, after the parent's run-time registrations are installed."""
    install_all(exports)
    seed_worker(state)
    try:
        return Scenario.model_validate_json(scenario_json)
    except ValidationError as exc:  # e.g. a scheme registered in the parent's __main__
        raise InputError(_one_line(exc, "scenario (in a worker process)")) from None


def _init_worker(scenario_json: str, run_unit, seed_worker, state: dict, exports: list) -> None:
    _die_with_parent()
    worker_signals()  # Ctrl-C reaches the whole process group: only the parent acts on it
    global _WORKER_SCENARIO, _WORKER_ERROR, _WORKER_RUN_UNIT  # one per worker process, set once here
    _WORKER_RUN_UNIT = run_unit
    try:
        _WORKER_SCENARIO = _worker_scenario(scenario_json, seed_worker, state, exports)
    except InputError as exc:  # raised by the units, so the parent reports it (a failed initializer
        _WORKER_ERROR = exc  # only breaks the pool)


def _worker_units(units: list[Unit]) -> list[Done]:
    """A batch of units, run one after another in this worker."""
    if _WORKER_ERROR is not None:
        raise _WORKER_ERROR
    return [(point, drop, _WORKER_RUN_UNIT(_WORKER_SCENARIO, point, drop)) for point, drop in units]


POLL_S = 0.25  # the longest a Ctrl-C / SIGTERM waits while the sweep waits for a unit to finish
MAX_BATCH = 8  # units per task sent to a worker: fewer round trips for short units (a Monte Carlo drop)
BATCHES_PER_WORKER = 16  # ...while keeping this many batches per worker, so the last ones end together


def batch_size(units: int, workers: int) -> int:
    """Units per worker task: 1 for a few (long) units, up to ``MAX_BATCH`` for thousands of short ones."""
    return max(1, min(MAX_BATCH, units // (workers * BATCHES_PER_WORKER)))


def run_serial(scenario: Scenario, units: Iterable[Unit], *, kind) -> Iterator[Done]:
    """Run units one after the other in this process."""
    for point, drop in units:
        yield point, drop, kind.run_unit(scenario, point, drop)


def run_process(
    scenario: Scenario,
    units: Iterable[Unit],
    workers: int | None = None,
    *,
    kind,
    start_method: str | None = None,
) -> Iterator[Done]:
    """Run units on local worker processes (default: every core this process may use).

    ``start_method``: "fork" or "spawn" (default: fork, or spawn once training code ran here).
    """
    units = list(units)
    workers = max(1, min(workers or len(os.sched_getaffinity(0)), len(units) or 1))
    # fork is fast, but not safe once torch has run tensor code (its thread pools): a live run in this
    # process loads the training modules, and then workers are spawned instead
    method = start_method or ("spawn" if "fedsim.learn.federated.systems" in sys.modules else "fork")
    with ProcessPoolExecutor(
        workers,
        mp_context=get_context(method),
        initializer=_init_worker,
        initargs=(
            scenario.model_dump_json(),
            kind.run_unit,
            kind.seed_worker,
            kind.prime(scenario),
            export_all(),
        ),
    ) as pool:
        size = batch_size(len(units), workers)
        queue = iter([units[i : i + size] for i in range(0, len(units), size)])
        pending = set()
        # Every call into the pool is under signals_held: a Ctrl-C / SIGTERM raised inside wait() could leave
        # a future's lock held, and the pool's manager thread then waits on it forever (a hang at exit)
        try:
            for batch in queue:  # keep a bounded number in flight, so the queue holds no stale work on a kill
                with signals_held():
                    pending.add(pool.submit(_worker_units, batch))
                if len(pending) >= 4 * workers:
                    break
            while pending:
                with signals_held():  # a signal is raised when the block ends, within POLL_S
                    finished, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
                for future in finished:
                    with signals_held():
                        done = future.result()
                    yield from done
                    nxt = next(queue, None)
                    if nxt is not None:
                        with signals_held():
                            pending.add(pool.submit(_worker_units, nxt))
        except BaseException:  # interrupted (or a unit failed): stop at once, not after the queued units
            _stop_workers(pool)
            raise


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel queued units and terminate the running ones (their results would be thrown away), then wait
    for the pool's manager thread to close its pipes: interpreter exit wakes that thread up through a pipe
    without a lock (CPython's ``_python_exit``), and a close racing with it printed an ``OSError: [Errno 9]
    Bad file descriptor`` traceback after a clean "interrupted" message (about 1 run in 80)."""
    workers = list((getattr(pool, "_processes", None) or {}).values())  # no public API before Python 3.14
    manager = getattr(pool, "_executor_manager_thread", None)  # shutdown(wait=False) forgets it
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in workers:
        if proc.is_alive():
            proc.terminate()
    for proc in workers:
        proc.join(timeout=10)
    if manager is not None and manager is not threading.current_thread():
        manager.join(timeout=10)  # it exits once it sees the workers gone


def _ray_unit(scenario_json: str, run_unit, seed_worker, state, exports: list, point: int, drop: int) -> Done:
    return point, drop, run_unit(_worker_scenario(scenario_json, seed_worker, state, exports), point, drop)


RAY_CONNECT_TIMEOUT_S = 30.0  # connecting to an existing cluster; Ray's own client retries for minutes
RAY_TASK_RETRIES = 3  # a unit whose worker process dies (killed, OOM) runs again, up to this many times


def _import_ray():
    try:
        import ray
    except ImportError:
        raise InputError("--executor ray: Ray is not installed (pip install 'fedsim[ray]')") from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of ``host:port`` or ``ray://host:port``; None for ``auto``/``local`` and other forms."""
    rest = address.split("://", 1)[-1].strip().rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def _probe(address: str, timeout_s: float) -> None:
    """Refuse at once an address where nothing listens (Ray's client would retry it for minutes)."""
    import socket

    where = _host_port(address)
    if where is None:
        return
    try:
        with socket.create_connection(where, timeout=min(timeout_s, 10.0)):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise InputError(
            f"--ray-address {address}: cannot connect to a Ray cluster there ({reason}); start one with "
            "`ray start --head` or check the address"
        ) from None


def connect_ray(
    address: str | None = None, workers: int | None = None, *, timeout_s: float = RAY_CONNECT_TIMEOUT_S
):
    """Connect to the Ray cluster at ``address`` (or start a local Ray when None), within ``timeout_s``
    seconds for an existing cluster; InputError naming the address if it does not answer. Returns ``ray``."""
    ray = _import_ray()
    if ray.is_initialized():
        return ray
    if not address:
        ray.init(
            include_dashboard=False, log_to_driver=False, num_cpus=workers or len(os.sched_getaffinity(0))
        )
        return ray
    _probe(address, timeout_s)
    outcome: dict = {}

    def init() -> None:
        try:
            # in this thread Ray cannot set its SIGTERM handler (it says so at WARNING): fedsim's handles it
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            outcome["ok"] = True
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=init, name="fedsim-ray-connect", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive() or "error" in outcome:
        exc = outcome.get("error")
        why = f"no answer within {timeout_s:g} s" if exc is None else f"{type(exc).__name__}: {exc}"
        error = StuckConnectionError if thread.is_alive() else InputError
        raise error(
            f"--ray-address {address}: cannot connect to Ray ({' '.join(why.split())[:300]}); check the "
            "address, or raise --ray-timeout"
        ) from None
    return ray


def run_ray(
    scenario: Scenario,
    units: Iterable[Unit],
    address: str | None = None,
    *,
    workers: int | None = None,
    kind,
) -> Iterator[Done]:
    """Run units as Ray tasks: on the cluster at ``address``, or a local Ray instance when None.

    The cluster's workers need fedsim installed (same version), like any Ray job's code. A unit whose worker
    process dies is run again (``RAY_TASK_RETRIES``); a unit's own error is raised here as it was raised
    there; on an interruption the units still running are cancelled.
    """
    ray = connect_ray(address, workers)
    remote = ray.remote(_ray_unit).options(max_retries=RAY_TASK_RETRIES, retry_exceptions=False)
    ref, state = ray.put(scenario.model_dump_json()), ray.put(kind.prime(scenario))
    exports = ray.put(export_all())
    pending = [
        remote.remote(ref, kind.run_unit, kind.seed_worker, state, exports, point, drop)
        for point, drop in units
    ]
    try:
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            yield _ray_result(ray, finished[0])
    finally:
        for left in pending:  # interrupted, or a unit failed: stop the rest (their rows would be dropped)
            try:
                ray.cancel(left, force=True)
            except Exception:  # noqa: BLE001 - already finished or gone
                pass


def _ray_result(ray, ref) -> Done:
    """The unit's result; a unit's own exception as it was raised in the worker (not Ray's wrapper)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from None
        raise
    except (
        ray.exceptions.WorkerCrashedError,
        ray.exceptions.NodeDiedError,
        ray.exceptions.ObjectLostError,
    ) as exc:
        raise InputError(
            f"a Ray worker died {RAY_TASK_RETRIES + 1} times running one unit ({type(exc).__name__}); the "
            "finished units are kept: rerun the same command to resume"
        ) from None


def run_units(
    scenario: Scenario,
    units: Iterable[Unit],
    executor: str = "process",
    *,
    workers: int | None = None,
    ray_address: str | None = None,
    kind,
) -> Iterator[Done]:
    """Dispatch to one executor by name; ``kind`` (``fedsim.experiments.kinds``) says what a unit runs."""
    if executor == "serial":
        return run_serial(scenario, units, kind=kind)
    if executor == "process":
        return run_process(scenario, units, workers, kind=kind)
    if executor == "ray":
        return run_ray(scenario, units, ray_address, workers=workers, kind=kind)
    raise InputError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
