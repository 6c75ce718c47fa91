"""Clean interruption: SIGINT and SIGTERM become one exception that unwinds the run like Ctrl-C does.

Inside ``interruptible()``, either signal raises ``Interrupted`` in the main thread; the sweep then stops its
workers, every finished part stays on disk, temporary files are removed by the atomic writers, and the
command exits with the shell's code for the signal (130 for SIGINT, 143 for SIGTERM). Inside
``signals_held()`` (a write-then-rename) the signal is remembered and raised when the block ends. A second
signal while the first one unwinds the run is not raised again (the clean-up finishes); a third stops the
process at once with the same exit code.

``Interrupted`` can be re-created from its arguments (``type(exc)(*exc.args)``, as SimPy does to re-raise a
process's exception) and pickled (multiprocessing, Ray): its only argument is the signal's name.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _signal(signum: int | str) -> signal.Signals:
    """The signal ``signum`` names: a number, ``signal.Signals`` or a name such as "SIGINT" / "INT"."""
    if isinstance(signum, str) and not signum.strip().isdigit():
        name = signum.strip().upper()
        return signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
    return signal.Signals(int(signum))


class Interrupted(KeyboardInterrupt):
    """The run was stopped by ``signum``; ``exit_code`` is 128 + signum (130 SIGINT, 143 SIGTERM).

    ``signum`` may be the signal's number or its name, so ``Interrupted(*exc.args)`` gives the same exception.
    """

    def __init__(self, signum: int | str = signal.SIGINT):
        sig = _signal(signum)
        super().__init__(sig.name)
        self.signum = int(sig)
        self.name = sig.name
        self.exit_code = 128 + self.signum

    def __reduce__(self):
        return (type(self), (self.name,))


# main thread only: Python runs signal handlers there
_HELD = {"depth": 0, "pending": None}
_STATE = {"depth": 0, "raised": None, "extra": 0}


def _raise(signum, frame) -> None:
    if _STATE["raised"] is not None:  # already unwinding: let the clean-up finish; a third signal ends it
        _STATE["extra"] += 1
        if _STATE["extra"] >= 2:
            os.write(2, f"fedsim: stopped at once by a third {signal.Signals(signum).name}\n".encode())
            os._exit(128 + _STATE["raised"])
        return
    if _HELD["depth"]:
        _HELD["pending"] = _HELD["pending"] or signum
        return
    _STATE["raised"] = int(signum)
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
        _STATE["raised"] = int(signum)
        raise Interrupted(signum)


@contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into ``Interrupted`` for the ``with`` body (main thread only; else a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise) for s in SIGNALS}
    _STATE["depth"] += 1
    try:
        yield
    finally:
        _STATE["depth"] -= 1
        if _STATE["depth"] == 0:
            _STATE["raised"], _STATE["extra"] = None, 0
        for s, handler in previous.items():
            signal.signal(s, handler)


def worker_signals() -> None:
    """In a worker process: ignore SIGINT (the parent decides) and die quietly on SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _STATE["depth"], _STATE["raised"], _STATE["extra"] = 0, None, 0
