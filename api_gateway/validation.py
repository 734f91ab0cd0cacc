"""Input checks of the public API: JSON bodies to typed messages, query strings to values.

Every failure is an `InvalidRequest` naming the field (`jobs[3].resources.cpus`), which the
error middleware answers as a 400 problem with `field`.

Every value that goes on to the supervisor passes `jobvisor.wire_values.check_wire_value`
first: a number too large for msgpack's 64 bits, NaN, a lone surrogate or a too deep nesting
is a 400 naming its path (`jobs[0].params.args.x`), never a failure further on.

A job object is checked by `jobvisor.job_spec.parse_job_spec` (shared with the workflow
document, whose jobs are what `POST /jobs` takes).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from jobvisor.suggest import unknown_name
from jobvisor.errors import InvalidRequest, NotFound, TooLarge
from jobvisor.job_spec import parse_job_spec
from jobvisor.protocol.job_requests import JobSpec
from jobvisor.states import JobState
from jobvisor.wire_values import check_wire_value, loads_json

DEFAULT_PAGE = 100
MAX_OFFSET = 2**63 - 1  # a byte offset travels to the supervisor as a 64-bit integer
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
STATES = frozenset(s.value for s in JobState)


async def read_json(request: web.Request, *, empty: Any = ...) -> Any:
    """The request body as JSON; 400 naming the problem if it is not. 413 comes from aiohttp."""
    raw = await request.read()
    if not raw and empty is not ...:
        return empty  # no body at all; a body of blanks is not JSON
    if not raw.strip():
        raise InvalidRequest("request body is empty; a JSON document is required", field="body")
    return loads_json(raw)


def parse_job_specs(data: Any, max_batch: int, max_array: int = 0) -> tuple[list[JobSpec], bool]:
    """A job object or a list of them -> (specs, was_a_list). Only a job object alone may be
    an array (of up to `max_array` elements)."""
    if isinstance(data, list):
        if not data:
            raise InvalidRequest("the list of jobs is empty", field="jobs")
        if len(data) > max_batch:
            raise TooLarge(f"{len(data)} jobs in one request; at most {max_batch}", field="jobs")
        return [parse_job_spec(item, f"jobs[{i}]") for i, item in enumerate(data)], True
    return [parse_job_spec(data, max_array=max_array)], False


def job_id_of(request: web.Request) -> str:
    """The `{id}` of the path; a malformed id cannot name a job: 404 like any unknown one."""
    job_id = request.match_info["id"]
    if not _JOB_ID.match(job_id):
        raise NotFound(f"no job {job_id!r}")
    return job_id


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a whole number, not {raw!r}", field=name) from None
    if value < lo or (hi is not None and value > hi):
        bound = f"from {lo} to {hi}" if hi is not None else f">= {lo}"
        raise InvalidRequest(f"{name} must be {bound}", field=name)
    return value


def query_states(request: web.Request) -> list[str]:
    states: list[str] = []
    for raw in request.query.getall("state", []):
        for item in raw.split(","):
            item = item.strip()
            if not item:
                continue
            if item not in STATES:
                raise InvalidRequest(unknown_name("state", item, [s.value for s in JobState], "states"), field="state")
            states.append(item)
    return states


FLAGS = {"0": False, "false": False, "1": True, "true": True}


def query_flag(request: web.Request, name: str) -> bool:
    """An on/off query parameter: absent is off; anything but FLAGS' words is a 400, so a
    misspelt `follow=ture` is not silently off."""
    raw = request.query.get(name)
    if raw is None:
        return False
    if raw not in FLAGS:
        raise InvalidRequest(f"{name} must be one of {', '.join(FLAGS)}, not {raw!r}", field=name)
    return FLAGS[raw]


NAME_MAX = 255  # Linux's limits: bytes of one path component,
PATH_MAX = 4096  # and of a whole path


def file_path_of(request: web.Request) -> str:
    """The `{path}` of a file route, relative to the run dir; one no file system could hold is
    a 400 here rather than an error from the agent's open()."""
    path = request.match_info["path"]
    parts = path.split("/")
    if path.startswith("/") or ".." in parts or "\x00" in path:
        raise InvalidRequest("path must be relative to the job's run dir, without '..'", field="path")
    check_wire_value(path, "path")
    if len(path.encode()) > PATH_MAX or any(len(part.encode()) > NAME_MAX for part in parts):
        raise InvalidRequest(f"path is too long: at most {NAME_MAX} bytes a name, {PATH_MAX} in all", field="path")
    return path
