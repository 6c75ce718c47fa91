"""The ``fedsim`` command line. Each subcommand lives in ``fedsim/commands/<name>.py`` and exposes
``add_parser(subparsers)`` and ``run(args) -> int``."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import shlex
import sys

from fedsim import __version__
from fedsim.errors import InputError, StuckConnectionError
from fedsim.interrupt import Interrupted, interruptible

COMMANDS = ["run", "validate", "optimize", "simulate", "train", "evaluate", "plot", "workload", "models", "report"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedsim",
        description="Co-simulate split federated LoRA fine-tuning of LLMs over wireless networks.",
    )
    parser.add_argument("--version", action="version", version=f"fedsim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"fedsim.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"fedsim.commands.{name}":
                continue  # subcommand not built yet
            raise
        module.add_parser(sub)
    return parser


# what an interrupted command leaves, and what rerunning it does (run and train say more themselves)
_RERUN = {
    "run": "resume",
    "train": "resume",
    "evaluate": "resume (finished runs are reused)",
    "models": "resume the download",
    "plot": "draw again (every figure is either its old or its new version)",
    "optimize": "start again (it writes nothing)",
    "simulate": "start again (nothing half-written)",
}
# OSErrors about the shape of a path the user gave (a file where a folder is needed, or the reverse)
_PATH_ERRORS = {
    errno.EEXIST: "a file is in the way: a folder is needed here",
    errno.ENOTDIR: "part of this path is a file, not a folder",
    errno.EISDIR: "is a folder: a file name is needed here",
    errno.ENAMETOOLONG: "the name is too long",
    errno.ELOOP: "too many symbolic links",
}


def interrupted_line(command: str, stop, argv: list[str]) -> str:
    """The one line an interrupted command prints: the signal, and the command that resumes it."""
    again = shlex.join(["fedsim", *argv])
    return f"fedsim {command}: interrupted by {stop.name}; rerun `{again}` to {_RERUN.get(command, 'resume')}"


def main(argv: list[str] | None = None) -> int:
    # SIGINT / SIGTERM from the very start (the parser imports every command, seconds with torch): one line
    # and exit 130 / 143, never a traceback
    argv = list(sys.argv[1:] if argv is None else argv)
    with interruptible():
        try:
            parser = build_parser()
            args = parser.parse_args(argv)
        except Interrupted as stop:
            print(f"fedsim: interrupted by {stop.name} before starting; nothing was done", file=sys.stderr)
            return stop.exit_code
        return _dispatch(args, argv)


def _dispatch(args: argparse.Namespace, argv: list[str]) -> int:
    args._argv = argv  # the command line, for the commands' resume hints
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"fedsim {args.command}: error: {exc}", file=sys.stderr)
        if isinstance(exc, StuckConnectionError):  # leave before Ray's exit handler meets the stuck thread
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        return 2
    except KeyboardInterrupt as exc:
        if isinstance(exc, Interrupted):
            print(interrupted_line(args.command, exc, argv), file=sys.stderr)
        else:
            print(f"fedsim {args.command}: interrupted", file=sys.stderr)
        return getattr(exc, "exit_code", 130)
    except BrokenPipeError:
        # output piped into e.g. `head`: stop quietly, and keep Python from complaining at exit
        sys.stderr.close()
        return 0
    except OSError as exc:  # a write that no atomic writer wrapped: still one line naming the path
        from fedsim.atomic import write_error

        err = write_error(exc)
        if err is None and exc.errno in _PATH_ERRORS and exc.filename is not None:
            err = f"{exc.filename}: {_PATH_ERRORS[exc.errno]}; choose another path"
        if err is None:
            raise
        print(f"fedsim {args.command}: error: {err}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"fedsim {args.command}: error: out of memory; lower the batch size or sequence length, or "
              "free memory, then rerun", file=sys.stderr)  # fmt: skip
        return 2
    except RuntimeError as exc:  # torch's allocators fail with a RuntimeError (torch.OutOfMemoryError too)
        text = str(exc)
        if "out of memory" not in text.lower() and "can't allocate memory" not in text:
            raise
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        print(f"fedsim {args.command}: error: out of memory ({first[:200]}); lower the batch size or sequence "
              "length, or free memory, then rerun", file=sys.stderr)  # fmt: skip
        return 2


if __name__ == "__main__":
    sys.exit(main())
