"""`shell`: run a program (`{"argv": [...]}`) or a script (`{"script": "..."}` through
`/bin/sh -c`, or through `params["shell"]`), with optional extra `env`.

The params are checked by `jobvisor.code_params.check_shell`, which the gateway runs at submit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobvisor.code_params import DEFAULT_SHELL, check_shell
from jobvisor.resources import Resources

from job_cmd.codes.base import Code, Launch

__all__ = ["DEFAULT_SHELL", "ShellCode"]


class ShellCode(Code):
    name = "shell"

    def launch(self, params: Any, run_dir: Path, resources: Resources) -> Launch:
        argv, env = check_shell(params)
        return Launch(argv=argv, env=env)
