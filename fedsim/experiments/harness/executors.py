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
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context

from pydantic import ValidationError

from fedsim.errors import InputError
from fedsim.interrupt import worker_signals
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


def _worker_unit(point: int, drop: int) -> Done:
    if _WORKER_ERROR is not None:
        raise _WORKER_ERROR
    return point, drop, _WORKER_RUN_UNIT(_WORKER_SCENARIO, point, drop)


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
            scenario.model_dump_json(), kind.run_unit, kind.seed_worker, kind.prime(scenario), export_all()
        ),
    ) as pool:
        queue = iter(units)
        pending = set()
        try:
            for unit in queue:  # keep a bounded number in flight, so the queue holds no stale work on a kill
                pending.add(pool.submit(_worker_unit, *unit))
                if len(pending) >= 4 * workers:
                    break
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield future.result()
                    nxt = next(queue, None)
                    if nxt is not None:
                        pending.add(pool.submit(_worker_unit, *nxt))
        except BaseException:  # interrupted (or a unit failed): stop at once, not after the queued units
            _stop_workers(pool)
            raise


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel queued units and terminate the running ones (their results would be thrown away)."""
    workers = list((getattr(pool, "_processes", None) or {}).values())  # no public API before Python 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in workers:
        if proc.is_alive():
            proc.terminate()
    for proc in workers:
        proc.join(timeout=10)


def _ray_unit(scenario_json: str, run_unit, seed_worker, state, exports: list, point: int, drop: int) -> Done:
    return point, drop, run_unit(_worker_scenario(scenario_json, seed_worker, state, exports), point, drop)


def run_ray(
    scenario: Scenario,
    units: Iterable[Unit],
    address: str | None = None,
    workers: int | None = None,
    *,
    kind,
) -> Iterator[Done]:
    """Run units as Ray tasks: on the cluster at ``address``, or a local Ray instance when None.

    The cluster's workers need fedsim installed (same version), like any Ray job's code.
    """
    try:
        import ray
    except ImportError:
        raise InputError("--executor ray: Ray is not installed (pip install 'fedsim[ray]')") from None
    if not ray.is_initialized():
        kwargs = {"address": address} if address else {"num_cpus": workers or len(os.sched_getaffinity(0))}
        try:
            ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise InputError(
                f"--ray-address {address!r}: cannot connect to Ray: {exc}".replace("\n", " ")
            ) from None
    remote = ray.remote(_ray_unit)
    ref, state = ray.put(scenario.model_dump_json()), ray.put(kind.prime(scenario))
    exports = ray.put(export_all())
    pending = [
        remote.remote(ref, kind.run_unit, kind.seed_worker, state, exports, point, drop) for point, drop in units
    ]
    while pending:
        finished, pending = ray.wait(pending, num_returns=1)
        yield ray.get(finished[0])


def run_units(
    scenario: Scenario,
    units: Iterable[Unit],
    executor: str = "process",
    workers: int | None = None,
    ray_address: str | None = None,
    *,
    kind,
) -> Iterator[Done]:
    """Dispatch to one executor by name; ``kind`` (``fedsim.experiments.kinds``) says what a unit runs."""
    if executor == "serial":
        return run_serial(scenario, units, kind=kind)
    if executor == "process":
        return run_process(scenario, units, workers, kind=kind)
    if executor == "ray":
        return run_ray(scenario, units, ray_address, workers, kind=kind)
    raise InputError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
