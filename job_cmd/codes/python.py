"""`python`: call `function(**args)` from `module:function` in a fresh interpreter
(`python -m job_cmd.pyrun`), the return value becoming the job's result.

The params are checked by `jobvisor.code_params.check_python`, which the gateway runs at
submit; whether the module can be imported is found out by the run itself."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from jobvisor.code_params import ENTRY, check_python, parse_entry
from jobvisor.resources import Resources

from job_cmd.codes.base import Code, Launch
from job_cmd.fsutil import meta_dir, write_json_atomic

__all__ = ["ENTRY", "PARAMS_FILE", "PythonCode", "parse_entry"]

PARAMS_FILE = "params.json"


class PythonCode(Code):
    name = "python"

    def launch(self, params: Any, run_dir: Path, resources: Resources) -> Launch:
        checked = check_python(params)
        directory = meta_dir(run_dir)
        directory.mkdir(mode=0o700, exist_ok=True)
        write_json_atomic(directory / PARAMS_FILE, {"entry": checked.entry, "args": checked.args, "path": checked.path})
        return Launch(argv=[sys.executable, "-m", "job_cmd.pyrun"], env=checked.env)
