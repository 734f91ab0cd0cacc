"""`shell`: run a program (`{"argv": [...]}`) or a script (`{"script": "..."}` through
`/bin/sh -c`, or through `params["shell"]`), with optional extra `env`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobvisor.resources import Resources

from job_cmd.codes.base import Code, Launch, check_env, check_string_list, reject_unknown, require_object
from job_cmd.errors import InvalidParams

DEFAULT_SHELL = "/bin/sh"


class ShellCode(Code):
    name = "shell"

    def launch(self, params: Any, run_dir: Path, resources: Resources) -> Launch:
        params = require_object(params, self.name)
        reject_unknown(params, {"argv", "script", "shell", "env"}, self.name)
        env = check_env(params.get("env"))
        if ("argv" in params) == ("script" in params):
            raise InvalidParams('shell params need exactly one of "argv" (a list of strings) or "script" (a string)', field="params.argv")
        if "argv" in params:
            if "shell" in params:
                raise InvalidParams('params.shell only applies to "script", not to "argv"', field="params.shell")
            argv = check_string_list(params["argv"], "params.argv", non_empty=True)
            if not argv[0]:
                raise InvalidParams("params.argv[0] (the program) must not be empty", field="params.argv")
            return Launch(argv=argv, env=env)
        script = params["script"]
        if not isinstance(script, str) or not script.strip():
            raise InvalidParams("params.script must be a non-empty string", field="params.script")
        if "\x00" in script:
            raise InvalidParams("params.script contains a NUL character", field="params.script")
        shell = params.get("shell", DEFAULT_SHELL)
        if not isinstance(shell, str) or not shell or "\x00" in shell:
            raise InvalidParams("params.shell must be a non-empty string such as '/bin/bash'", field="params.shell")
        return Launch(argv=[shell, "-c", script], env=env)
