"""Clean interruption: SIGINT and SIGTERM become one exception that unwinds the run like Ctrl-C does.

Inside ``interruptible()``, either signal raises ``Interrupted`` in the main thread; the sweep then stops its
workers, every finished part stays on disk, temporary files are removed by the atomic writers, and the
command exits with the shell's code for the signal (130 for SIGINT, 143 for SIGTERM). Inside
``signals_held()`` (a write-then-rename) the signal is remembered and raised when the block ends.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by ``signum``; ``exit_code`` is 128 + signum (130 SIGINT, 143 SIGTERM)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + self.signum


_HELD = {"depth": 0, "pending": None}  # main thread only: Python runs signal handlers there


def _raise(signum, frame) -> None:
    if _HELD["depth"]:
        _HELD["pending"] = _HELD["pending"] or signum
        return
    raise Interrupted(signum)


@contextmanager
def signals_held() -> Iterator[None]:
    """Defer ``Interrupted`` for the ``with`` body (a short critical section such as write-then-rename); a
    signal that arrives meanwhile is raised when the body ends, so no temporary file is left behind."""
    _HELD["depth"] += 1
    try:
        yield
    except BaseException:
        if _HELD["depth"] == 1:
            _HELD["pending"] = None  # the body's own error wins; it unwinds the run anyway
        raise
    finally:
        _HELD["depth"] -= 1
    if _HELD["depth"] == 0 and _HELD["pending"] is not None:
        signum, _HELD["pending"] = _HELD["pending"], None
        raise Interrupted(signum)


@contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into ``Interrupted`` for the ``with`` body (main thread only; else a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def worker_signals() -> None:
    """In a worker process: ignore SIGINT (the parent decides) and die quietly on SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
