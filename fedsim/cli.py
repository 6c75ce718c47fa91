"""The ``fedsim`` command line. Each subcommand lives in ``fedsim/commands/<name>.py`` and exposes
``add_parser(subparsers)`` and ``run(args) -> int``."""

from __future__ import annotations

import argparse
import importlib
import sys

from fedsim import __version__
from fedsim.errors import InputError

COMMANDS = ["run", "validate", "optimize", "simulate", "train", "evaluate", "plot", "workload", "models"]


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"fedsim {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print("fedsim: interrupted", file=sys.stderr)
        return getattr(exc, "exit_code", 130)
    except BrokenPipeError:
        # output piped into e.g. `head`: stop quietly, and keep Python from complaining at exit
        sys.stderr.close()
        return 0
    except OSError as exc:  # a write that no atomic writer wrapped: still one line naming the path
        from fedsim.atomic import write_error

        err = write_error(exc)
        if err is None:
            raise
        print(f"fedsim {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
