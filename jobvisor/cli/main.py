"""`jobvisor` entry point: one argparse parser built from a registry of command modules.

Each module in `COMMAND_MODULES` defines `add_parser(subparsers)`, adds its subcommands and
sets `func` on each (`parser.set_defaults(func=...)`). `func(args)` returns the exit status
(None means 0); it may also be a coroutine function, which is run with `asyncio.run`.
A module that does not exist (yet) is skipped, so `up.py` plugs in by merely existing.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import sys

from jobvisor import __version__
from jobvisor.cli.errors import CliError
from jobvisor.errors import JobvisorError

COMMAND_MODULES = (
    "jobvisor.cli.up",
    "jobvisor.cli.jobs",
    "jobvisor.cli.listing",
    "jobvisor.cli.waiting",
    "jobvisor.cli.system",
    "jobvisor.cli.admin",
    "jobvisor.cli.clusters",
    "jobvisor.cli.workflows",
    "jobvisor.cli.events",
    "jobvisor.cli.orchestrator",  # after the modules whose `queue` and `agents` commands it extends
    "jobvisor.cli.job_extras",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobvisor",
        description="Run jobs locally, in Docker or on Slurm; talk to a jobvisor gateway.",
    )
    parser.add_argument("--version", action="version", version=f"jobvisor {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.add_parser(subparsers)
    return parser


def run(args: argparse.Namespace) -> int:
    result = args.func(args)
    if inspect.isawaitable(result):
        result = asyncio.run(result)
    return int(result or 0)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        if getattr(args, "argv", None) is not None:  # submit: a command's own options, without `--`
            print("jobvisor: error: unrecognized arguments: " + " ".join(unknown) + "\n"
                  "jobvisor: options after the command are its own: put -- before the command "
                  "(jobvisor submit [OPTIONS] -- python -c 'print(1)')", file=sys.stderr)
            return 2
        parser.error("unrecognized arguments: " + " ".join(unknown))
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return run(args)
    except CliError as exc:
        print(f"jobvisor: {exc}", file=sys.stderr)
        return exc.status
    except JobvisorError as exc:
        print(f"jobvisor: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
