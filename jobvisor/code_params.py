"""The parameter checks of the built-in codes (shell, python, demo), in one place.

Two layers check a job's params and both import this module:

- the gateway, at submit, so a malformed job gets a 400 naming the field (`params.argv`,
  `jobs[3].params.argv`) instead of a 201 and a failure minutes later on a cluster;
- the agent, through the code's `launch` (job_cmd.codes), because a job may reach it without
  passing this gateway (an older gateway, a job persisted before an upgrade).

The checks are pure: no file system, no import of the user's module, nothing that depends on
where the job will run. What does (the entry's module exists, the run dir is writable) is the
agent's to find out at run time.

Only the built-in codes are known here. A site's code plugin may be installed only where the
agent runs (a Docker image, a cluster's Python environment), so the gateway cannot check its
params, nor even know that it exists: `check_params` accepts any params of a code it does not
know, and the agent checks them at run time, or fails the job with a reason naming the
unknown code and the codes installed there.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobvisor.errors import InvalidParams

DEFAULT_SHELL = "/bin/sh"
SHELL_PARAMS = frozenset({"argv", "script", "shell", "env"})
PYTHON_PARAMS = frozenset({"entry", "args", "path", "env"})

_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
ENTRY = re.compile(rf"^({_DOTTED}):({_DOTTED})$")

# demo: name -> (type, default, minimum, maximum)
DEMO_PARAMS: dict[str, tuple[type, float | int, float | None, float | None]] = {
    "steps": (int, 2000, 1, 5_000_000),
    "dt": (float, 0.01, 1e-9, 1.0),
    "omega0": (float, 2.0, 0.0, 1e6),
    "zeta": (float, 0.1, 0.0, 1e6),
    "force": (float, 1.0, -1e9, 1e9),
    "drive_omega": (float, 1.5, 0.0, 1e6),
    "x0": (float, 1.0, -1e9, 1e9),
    "v0": (float, 0.0, -1e9, 1e9),
    "print_every": (int, 0, 0, None),  # 0: about twenty lines per run
    "step_delay": (float, 0.0, 0.0, 1.0),  # seconds of sleep per step, to watch a slow run
}


# --------------------------------------------------------------------------- shared checks
# Plugins use these too (through job_cmd.codes.base), so their errors read like the built-ins'.


def require_object(params: Any, code: str) -> dict:
    if not isinstance(params, dict):
        raise InvalidParams(f"params of code {code!r} must be an object, not {type(params).__name__}", field="params")
    return params


def reject_unknown(params: dict, known: set[str] | frozenset[str], code: str) -> None:
    """A misspelt param is an error, not silently ignored: `stpes` must not run 2000 steps."""
    unknown = sorted(str(k) for k in params if k not in known)
    if unknown:
        raise InvalidParams(
            f"unknown param(s) {', '.join(map(repr, unknown))} for code {code!r}; "
            f"it accepts {', '.join(sorted(known))}",
            field=f"params.{unknown[0]}",
        )


def check_env(value: Any) -> dict[str, str]:
    """`params.env`: a map of variable names to string values."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidParams("params.env must be an object mapping names to strings", field="params.env")
    for key, val in value.items():
        if not isinstance(key, str) or not key or "=" in key or "\x00" in key:
            raise InvalidParams(f"params.env has an invalid variable name {key!r}", field="params.env")
        if not isinstance(val, str) or "\x00" in val:
            raise InvalidParams(f"params.env.{key} must be a string", field=f"params.env.{key}")
    return dict(value)


def check_string_list(value: Any, where: str, *, non_empty: bool) -> list[str]:
    """A list of strings without NUL (which no exec or path can carry)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParams(f"{where} must be a list of strings", field=where)
    if non_empty and not value:
        raise InvalidParams(f"{where} must not be empty", field=where)
    for i, v in enumerate(value):
        if "\x00" in v:
            raise InvalidParams(f"{where}[{i}] contains a NUL character", field=where)
    return list(value)


# --------------------------------------------------------------------------- shell


def check_shell(params: Any) -> tuple[list[str], dict[str, str]]:
    """`shell` params -> (argv to exec, env to add). `{"argv": [...]}` runs a program,
    `{"script": "..."}` runs `params.shell` (default /bin/sh) with `-c script`."""
    params = require_object(params, "shell")
    reject_unknown(params, SHELL_PARAMS, "shell")
    env = check_env(params.get("env"))
    if ("argv" in params) == ("script" in params):
        raise InvalidParams('shell params need exactly one of "argv" (a list of strings) or "script" (a string)', field="params.argv")
    if "argv" in params:
        if "shell" in params:
            raise InvalidParams('params.shell only applies to "script", not to "argv"', field="params.shell")
        argv = check_string_list(params["argv"], "params.argv", non_empty=True)
        if not argv[0]:
            raise InvalidParams("params.argv[0] (the program) must not be empty", field="params.argv")
        return argv, env
    script = params["script"]
    if not isinstance(script, str) or not script.strip():
        raise InvalidParams("params.script must be a non-empty string", field="params.script")
    if "\x00" in script:
        raise InvalidParams("params.script contains a NUL character", field="params.script")
    shell = params.get("shell", DEFAULT_SHELL)
    if not isinstance(shell, str) or not shell or "\x00" in shell:
        raise InvalidParams("params.shell must be a non-empty string such as '/bin/bash'", field="params.shell")
    return [shell, "-c", script], env


# --------------------------------------------------------------------------- python


@dataclass(frozen=True, slots=True)
class PythonParams:
    """Checked `python` params: call `function(**args)` of `module`, with `path` on sys.path."""

    entry: str
    module: str
    function: str
    args: dict[str, Any]
    path: list[str]
    env: dict[str, str]


def parse_entry(entry: Any) -> tuple[str, str]:
    """'module:function' -> (module, function); the syntax only, the module is not imported."""
    if not isinstance(entry, str) or not (match := ENTRY.match(entry)):
        raise InvalidParams(
            f"params.entry must be 'module:function' (for example 'mypkg.sim:run'), not {entry!r}",
            field="params.entry",
        )
    return match.group(1), match.group(2)


def check_python(params: Any) -> PythonParams:
    params = require_object(params, "python")
    reject_unknown(params, PYTHON_PARAMS, "python")
    if "entry" not in params:
        raise InvalidParams("python params need \"entry\": 'module:function'", field="params.entry")
    module, function = parse_entry(params["entry"])
    args = params.get("args", {})
    if not isinstance(args, dict) or not all(isinstance(k, str) and k.isidentifier() for k in args):
        raise InvalidParams("params.args must be an object whose keys are python argument names", field="params.args")
    try:  # the args travel to the job as a JSON file; NaN or Infinity would not read back as JSON
        json.dumps(args, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidParams(f"params.args must be plain JSON: {exc}", field="params.args") from None
    path = check_string_list(params.get("path", []), "params.path", non_empty=False)
    env = check_env(params.get("env"))
    return PythonParams(params["entry"], module, function, args, path, env)


# --------------------------------------------------------------------------- demo


def check_demo(params: Any) -> dict[str, float | int]:
    """`demo` params with their defaults filled in; `null` means all defaults."""
    if params is None:
        params = {}
    params = require_object(params, "demo")
    reject_unknown(params, set(DEMO_PARAMS), "demo")
    out: dict[str, float | int] = {}
    for name, (kind, default, lo, hi) in DEMO_PARAMS.items():
        value = params.get(name, default)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if kind is int and ok:
            ok = float(value).is_integer()
        if not ok:
            raise InvalidParams(f"params.{name} must be a {'whole number' if kind is int else 'number'}", field=f"params.{name}")
        value = kind(value)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
            raise InvalidParams(f"params.{name} must be {bounds}, not {value}", field=f"params.{name}")
        out[name] = value
    if not out["print_every"]:
        out["print_every"] = max(1, int(out["steps"]) // 20)
    return out


# --------------------------------------------------------------------------- by code name

BUILTIN_CHECKS: dict[str, Callable[[Any], object]] = {
    "shell": check_shell,
    "python": check_python,
    "demo": check_demo,
}


def check_params(code: str, params: Any) -> bool:
    """Check `params` of a built-in `code` (raise `InvalidParams` naming the field); True if
    they were checked, False if `code` is not built in.

    A code not built in is accepted as it is: it may be a plugin installed only where the agent
    runs, and the agent checks its params, or fails the job naming the unknown code, at run
    time. (A plugin registered under a built-in name would still be checked here as the
    built-in: those names are taken.)"""
    check = BUILTIN_CHECKS.get(code)
    if check is None:
        return False
    check(params)
    return True
