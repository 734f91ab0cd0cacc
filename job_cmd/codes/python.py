"""`python`: call `function(**args)` from `module:function` in a fresh interpreter
(`python -m job_cmd.pyrun`), the return value becoming the job's result."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from jobvisor.resources import Resources

from job_cmd.codes.base import Code, Launch, check_env, check_string_list, reject_unknown, require_object
from job_cmd.errors import InvalidParams
from job_cmd.fsutil import meta_dir, write_json_atomic

PARAMS_FILE = "params.json"
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
ENTRY = re.compile(rf"^({_DOTTED}):({_DOTTED})$")


def parse_entry(entry: Any) -> tuple[str, str]:
    if not isinstance(entry, str) or not (match := ENTRY.match(entry)):
        raise InvalidParams(
            f"params.entry must be 'module:function' (for example 'mypkg.sim:run'), not {entry!r}",
            field="params.entry",
        )
    return match.group(1), match.group(2)


class PythonCode(Code):
    name = "python"

    def launch(self, params: Any, run_dir: Path, resources: Resources) -> Launch:
        params = require_object(params, self.name)
        reject_unknown(params, {"entry", "args", "path", "env"}, self.name)
        if "entry" not in params:
            raise InvalidParams("python params need \"entry\": 'module:function'", field="params.entry")
        parse_entry(params["entry"])
        args = params.get("args", {})
        if not isinstance(args, dict) or not all(isinstance(k, str) and k.isidentifier() for k in args):
            raise InvalidParams("params.args must be an object whose keys are python argument names", field="params.args")
        path = check_string_list(params.get("path", []), "params.path", non_empty=False)
        env = check_env(params.get("env"))
        directory = meta_dir(run_dir)
        directory.mkdir(mode=0o700, exist_ok=True)
        try:
            write_json_atomic(directory / PARAMS_FILE, {"entry": params["entry"], "args": args, "path": path})
        except (TypeError, ValueError) as exc:
            raise InvalidParams(f"params.args must be plain JSON: {exc}", field="params.args") from None
        return Launch(argv=[sys.executable, "-m", "job_cmd.pyrun"], env=env)
