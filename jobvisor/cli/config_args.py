"""`--config FILE`, one option for every command that reads the configuration.

Precedence, the same for every command (as `jobvisor up` has always had it):

1. the TOML file: `--config FILE`, else `$JOBVISOR_CONFIG`, else none (the defaults);
2. `JOBVISOR_<SECTION>_<KEY>` environment variables, which win over the file;
3. the command's own options (`--state-dir`, `up --port`, ...), which win over both.

A file that cannot be read or parsed (or holds unknown keys or bad values) is a usage error:
one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from jobvisor.cli.errors import CliError
from jobvisor.config import Config, load_config
from jobvisor.errors import ConfigError

EXIT_CONFIG = 2

CONFIG_HELP = (
    "TOML configuration file (default: $JOBVISOR_CONFIG, else the built-in defaults); "
    "JOBVISOR_<SECTION>_<KEY> environment variables win over its keys"
)


def add_config_argument(parser: argparse.ArgumentParser, reads: str = "") -> None:
    """Add `--config FILE`; `reads` (if any) tells what this command takes from it."""
    text = CONFIG_HELP + (f"; {reads}" if reads else "")
    parser.add_argument("--config", metavar="FILE", help=text)


def config_from_args(args: argparse.Namespace, **server: Any) -> Config:
    """The configuration of `--config` (else $JOBVISOR_CONFIG) with the environment's
    overrides, then `--state-dir` (if the command has it) and the `[server]` keys given here
    (None: not given) on top. A bad file raises a CliError with exit status 2."""
    try:
        config = load_config(getattr(args, "config", None) or None)
    except ConfigError as exc:
        raise CliError(str(exc), status=EXIT_CONFIG) from exc
    changes = {key: value for key, value in server.items() if value is not None}
    if getattr(args, "state_dir", None):
        changes["state_dir"] = os.path.abspath(args.state_dir)
    return config.replace("server", **changes) if changes else config
