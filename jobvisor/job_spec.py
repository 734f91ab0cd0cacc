"""A job object of the public API (what `POST /jobs` takes, and each job of a workflow
document) checked and turned into a `JobSpec`.

Every failure is an `InvalidRequest` naming the field (`jobs[3].resources.cpus`). A job's
params are checked for the built-in codes (shell, python, demo) by the same functions the agent
runs (`jobvisor.code_params`). A code not known here passes unchecked: it may be a plugin
installed only where the agent runs (a Docker image, a cluster), and the agent checks it, or
fails the job naming the unknown code, at run time.
"""

from __future__ import annotations

import copy
from typing import Any

from jobvisor.code_params import check_params
from jobvisor.errors import InvalidRequest
from jobvisor.job_arrays import parse_array
from jobvisor.limits import MAX_RETRIES
from jobvisor.protocol.job_requests import JobSpec
from jobvisor.resources import Resources
from jobvisor.states import RETRY_ON_STATES
from jobvisor.wire_values import check_wire_value

JOB_FIELDS = frozenset({"code", "params", "resources", "driver", "max_retries", "name", "env", "workdir", "retry_on", "array"})
MAX_ENV_VARS = 1000
MAX_WORKDIR = 4096


def check_env(env: Any, field: str = "env") -> dict[str, str]:
    """A job's environment variables: an object of names to string values."""
    if env is None:
        return {}
    if not isinstance(env, dict):
        raise InvalidRequest("env must be an object of variable names to string values", field=field)
    if len(env) > MAX_ENV_VARS:
        raise InvalidRequest(f"env has more than {MAX_ENV_VARS} variables", field=field)
    for key, value in env.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise InvalidRequest(f"env name {key!r} is not a variable name (non-empty, no '=')", field=field)
        if not isinstance(value, str) or "\0" in value:
            raise InvalidRequest(f"env {key} must be a string without NUL characters", field=f"{field}.{key}")
    return dict(env)


def memory_in_megabytes(resources: Any) -> Any:
    """A bare memory number means megabytes, as in Slurm (`512` is 512M): the public API's
    resources with such a number given its unit, before `Resources.parse` (which reads bytes
    from the wire)."""
    if not isinstance(resources, dict):
        return resources
    memory = resources.get("memory")
    if isinstance(memory, bool):
        return resources
    if isinstance(memory, (int, float)):
        return {**resources, "memory": f"{memory}M"}
    return resources


def _prefixed(prefix: str, field: str | None) -> str:
    return f"{prefix}.{field}" if prefix and field else (field or prefix)


def parse_retry_on(value: Any, field: str = "retry_on") -> list[str]:
    """`retry_on`: a list of end states (or one comma-separated string) among
    RETRY_ON_STATES -> their sorted names without duplicates. None or empty: `lost` only."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise InvalidRequest("retry_on must be a list of states", field=field)
    names = sorted({item.strip() for item in items if item.strip()})
    allowed = sorted(s.value for s in RETRY_ON_STATES)
    for name in names:
        if name not in allowed:
            raise InvalidRequest(f"retry_on: {name!r} is not one of {', '.join(allowed)}", field=field)
    return names


def override_params(params: Any, overrides: Any, field: str = "params") -> Any:
    """`params` with `overrides` applied (a resubmit's `--param k=v`): each key is a dotted
    path into the params (`args.size` sets params["args"]["size"]), made where missing. The
    original is not changed. InvalidRequest naming the key when a path runs into a non-object."""
    if overrides is None or overrides == {}:
        return params
    if not isinstance(overrides, dict):
        raise InvalidRequest("params overrides must be an object of dotted keys and values", field=field)
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InvalidRequest("this job's params are not an object: they cannot be overridden by key", field=field)
    out = copy.deepcopy(params)
    for key, value in overrides.items():
        parts = key.split(".")
        if not all(parts):
            raise InvalidRequest(f"override key {key!r} has an empty part", field=f"{field}.{key}")
        node = out
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise InvalidRequest(f"{'.'.join(parts[:depth + 1])} is not an object in this job's params",
                                     field=f"{field}.{key}")
            node = child
        node[parts[-1]] = value
    return out


def parse_job_spec(data: Any, prefix: str = "", *, max_array: int = 0) -> JobSpec:
    """One job object -> JobSpec; the params last, so a job's other fields are reported first.

    `max_array`: the most elements an `array` may have; 0 where a job cannot be an array (a
    job of a list, of a workflow), so `array` there is a 400 naming it."""
    if not isinstance(data, dict):
        raise InvalidRequest("a job must be a JSON object", field=prefix or "body")
    unknown = [] if data.keys() <= JOB_FIELDS else sorted(set(data) - JOB_FIELDS)
    if unknown:
        raise InvalidRequest(
            f"unknown field {unknown[0]!r}; a job has {', '.join(sorted(JOB_FIELDS))}",
            field=_prefixed(prefix, unknown[0]),
        )
    code = data.get("code")
    if not isinstance(code, str) or not code.strip():
        raise InvalidRequest("code is required and must be a non-empty string", field=_prefixed(prefix, "code"))
    if "params" not in data:
        raise InvalidRequest("params is required (use {} for none)", field=_prefixed(prefix, "params"))
    try:
        resources = Resources.parse(memory_in_megabytes(data.get("resources")))
    except InvalidRequest as exc:
        raise InvalidRequest(exc.detail, field=_prefixed(prefix, exc.field)) from None
    driver = data.get("driver", "")
    if driver is None:
        driver = ""
    if not isinstance(driver, str):
        raise InvalidRequest("driver must be a string", field=_prefixed(prefix, "driver"))
    max_retries = data.get("max_retries", 0)
    if (
        not isinstance(max_retries, int)
        or isinstance(max_retries, bool)
        or not 0 <= max_retries <= MAX_RETRIES
    ):
        raise InvalidRequest(
            f"max_retries must be a whole number from 0 to {MAX_RETRIES}", field=_prefixed(prefix, "max_retries")
        )
    name = data.get("name", "")
    if name is None:
        name = ""
    if not isinstance(name, str):
        raise InvalidRequest("name must be a string", field=_prefixed(prefix, "name"))
    env = check_env(data.get("env"), _prefixed(prefix, "env"))
    workdir = data.get("workdir") or ""
    if not isinstance(workdir, str) or len(workdir) > MAX_WORKDIR or "\0" in workdir:
        raise InvalidRequest(f"workdir must be a path of at most {MAX_WORKDIR} characters", field=_prefixed(prefix, "workdir"))
    if workdir and not workdir.startswith("/"):
        raise InvalidRequest("workdir must be an absolute path", field=_prefixed(prefix, "workdir"))
    retry_on = parse_retry_on(data.get("retry_on"), _prefixed(prefix, "retry_on"))
    array = data.get("array")
    if array is not None and array != "":
        if max_array <= 0:
            raise InvalidRequest("array is only allowed for a job submitted alone (not in a list or a workflow)",
                                 field=_prefixed(prefix, "array"))
        array = str(parse_array(array, max_count=max_array, field=_prefixed(prefix, "array")))
    else:
        array = ""
    try:
        check_params(code, data["params"])
    except InvalidRequest as exc:
        raise type(exc)(exc.detail, field=_prefixed(prefix, exc.field)) from None
    check_wire_value(data, prefix)
    return JobSpec(
        code=code,
        params=data["params"],
        resources=resources.to_wire(),
        driver=driver,
        max_retries=max_retries,
        name=name,
        env=env,
        workdir=workdir,
        retry_on=retry_on,
        array=array,
    )
