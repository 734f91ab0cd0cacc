"""Routes about jobs: submit, list, show, cancel, log, files, analysis.

Each handler decodes and validates, makes one op request, and encodes. (Streams repeat
their op for each slice or long-poll.) A job of another user is answered 404, exactly like a
job that does not exist: every op about one job is refused by the supervisor with NotFound
unless the caller owns the job or is an admin, so the gateway does not ask first with a
GetJob of its own; it checks the owner of the jobs it gets back as well.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import json
import logging
import mimetypes
import time
from typing import Any

from aiohttp import web

from jobvisor.errors import InvalidRequest, NotFound, OpError
from jobvisor.limits import IO_CHUNK_BYTES, LOG_READ_BYTES, MAX_PAGE
from jobvisor.protocol.job_requests import (
    CancelJobRequest, GetJob, ListFiles, ListJobs, ReadFile, ReadLog, ResubmitJob, RunAnalysis, SubmitJobs,
)
from jobvisor.wire_values import check_wire_value

from api_gateway import sse, uploads
from api_gateway.context import CONFIG, STREAMS, caller_of, op
from api_gateway.problems import KIND_TO_STATUS
from api_gateway.validation import (
    DEFAULT_PAGE,
    MAX_OFFSET,
    file_path_of,
    job_id_of,
    parse_job_specs,
    query_flag,
    query_int,
    query_states,
    read_json,
)

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
LOG_WAIT_SECONDS = 10.0  # long-poll of one ReadLog while following; below the SSE heartbeat

_dumps = functools.partial(json.dumps, separators=(",", ":"))


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=_dumps)


def _visible(request: web.Request, job: dict) -> dict:
    """The job, if the caller may see it; else NotFound. The supervisor checked already: this
    is the gateway's own check of what it is about to show, which costs no op."""
    caller = caller_of(request)
    if not caller.is_admin and job.get("owner") != caller.user:
        raise NotFound(f"no job {job.get('id')!r}")
    return job


class Stream:
    """Register a long-lived handler so shutdown can cancel it instead of waiting for it."""

    def __init__(self, request: web.Request) -> None:
        self._streams = request.app[STREAMS]
        self._task = asyncio.current_task()

    def __enter__(self) -> None:
        self._streams.add(self._task)

    def __exit__(self, *exc_info: object) -> None:
        self._streams.discard(self._task)


# --------------------------------------------------------------------------- jobs


async def submit_jobs(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    if request.content_type == uploads.FORM:  # a job with input files
        specs, many, upload_id = await uploads.read_form_submit(request)
    else:
        specs, many = parse_job_specs(await read_json(request), config.gateway.max_batch, config.gateway.max_array)
        upload_id = ""
    reply = await op(request, SubmitJobs(caller=caller_of(request), jobs=specs, upload_id=upload_id))
    if "array" in reply:  # a job array: the array, its jobs' ids, and where to list them
        array = reply["array"]
        return json_response(array, status=201, headers={"Location": f"{PREFIX}/jobs?array={array['array_id']}"})
    jobs = reply["jobs"]
    if many:
        return json_response(jobs, status=201)
    job = jobs[0]
    return json_response(job, status=201, headers={"Location": f"{PREFIX}/jobs/{job['id']}"})


async def list_jobs(request: web.Request) -> web.Response:
    caller = caller_of(request)
    states = query_states(request)
    limit = query_int(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    after = request.query.get("after", "")
    name = request.query.get("name", "")
    id_prefix = request.query.get("id_prefix", "")
    array_id = request.query.get("array", "")
    check_wire_value(name, "name")
    check_wire_value(array_id, "array")
    reply = await op(request, ListJobs(caller=caller, states=states, limit=limit, after=after, name=name,
                                       id_prefix=id_prefix, array_id=array_id))
    jobs = reply["jobs"]
    if not caller.is_admin:
        jobs = [job for job in jobs if job.get("owner") == caller.user]
    cursor = reply.get("next")
    headers = {}
    if cursor:
        next_url = request.rel_url.update_query(after=cursor)
        headers["Link"] = f'<{next_url}>; rel="next"'
    return json_response({"jobs": jobs, "next": cursor}, headers=headers)


async def get_job(request: web.Request) -> web.Response:
    job_id = job_id_of(request)
    job = await op(request, GetJob(caller=caller_of(request), job_id=job_id))
    return json_response(_visible(request, job))


async def cancel_job(request: web.Request) -> web.Response:
    job_id = job_id_of(request)
    job = await op(request, CancelJobRequest(caller=caller_of(request), job_id=job_id))
    return json_response(_visible(request, job))


async def resubmit_job(request: web.Request) -> web.Response:
    """A new job from an old one's spec; the body (optional) is `{"params": {dotted key: value}}`."""
    job_id = job_id_of(request)
    body = await read_json(request, empty={})
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object such as {\"params\": {\"args.n\": 3}}", field="body")
    unknown = sorted(set(body) - {"params"})
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}; a resubmit takes params", field=unknown[0])
    overrides = body.get("params", {})
    if not isinstance(overrides, dict):
        raise InvalidRequest("params must be an object of dotted keys and values", field="params")
    check_wire_value(overrides, "params")
    job = await op(request, ResubmitJob(caller=caller_of(request), job_id=job_id, params=overrides))
    return json_response(_visible(request, job), status=201, headers={"Location": f"{PREFIX}/jobs/{job['id']}"})


# --------------------------------------------------------------------------- log


def _start_offset(request: web.Request) -> int:
    last_id = request.headers.get("Last-Event-ID", "")
    if "offset" not in request.query and last_id.isascii() and last_id.isdigit():
        if int(last_id) > MAX_OFFSET:  # an EventSource resuming a followed log
            raise InvalidRequest(f"Last-Event-ID must be an offset up to {MAX_OFFSET}", field="Last-Event-ID")
        return int(last_id)
    return query_int(request, "offset", 0, 0, MAX_OFFSET)


async def get_log(request: web.Request) -> web.StreamResponse:
    """The log as text, or with follow=1 as SSE. The first ReadLog is made before any response
    is started: another user's job (or a missing one) is a 404 problem, not a 200 stream that
    carries an error event."""
    job_id = job_id_of(request)
    caller = caller_of(request)
    offset = _start_offset(request)
    first = await op(request, ReadLog(caller=caller, job_id=job_id, offset=offset))
    if query_flag(request, "follow"):
        return await _follow_log(request, job_id, offset, first)
    resp = web.StreamResponse(headers={"X-Log-Size": str(first["size"])})
    resp.content_type = "text/plain"
    resp.charset = "utf-8"
    await resp.prepare(request)
    reply = first
    while True:
        data = reply["data"]
        if data:
            await resp.write(data)
        offset += len(data)
        if not data or offset >= reply["size"]:
            break
        reply = await op(request, ReadLog(caller=caller, job_id=job_id, offset=offset, length=LOG_READ_BYTES))
    await resp.write_eof()
    return resp


async def _follow_log(request: web.Request, job_id: str, offset: int, first: dict) -> web.StreamResponse:
    """Stream `first` (the ReadLog at `offset` that get_log made) and what follows it."""
    caller = caller_of(request)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    resp = await sse.open_stream(request)
    last_write = time.monotonic()
    reply = first
    with Stream(request):
        try:
            while True:
                data = reply["data"]
                if data:
                    start, offset = offset, offset + len(data)
                    text = decoder.decode(data)
                    await sse.send(resp, "log", {"offset": start, "next": offset, "text": text}, str(offset))
                    last_write = time.monotonic()
                if reply["final"]:
                    tail = decoder.decode(b"", final=True)
                    if tail:
                        await sse.send(resp, "log", {"offset": offset, "next": offset, "text": tail}, str(offset))
                    job = await op(request, GetJob(caller=caller, job_id=job_id))
                    await sse.send(resp, "end", {"state": job["state"], "exit_code": job.get("exit_code")})
                    break
                if not data and time.monotonic() - last_write >= sse.HEARTBEAT_SECONDS:
                    await sse.heartbeat(resp)
                    last_write = time.monotonic()
                reply = await op(
                    request,
                    ReadLog(caller=caller, job_id=job_id, offset=offset, wait=LOG_WAIT_SECONDS),
                )
        except OpError as exc:
            status = KIND_TO_STATUS.get(str(exc.kind), 500)
            await sse.send(resp, "error", {"status": status, "detail": exc.detail})
        except (ConnectionResetError, asyncio.CancelledError):
            return resp
    await resp.write_eof()
    return resp


# --------------------------------------------------------------------------- files, analysis


async def list_files(request: web.Request) -> web.Response:
    job_id = job_id_of(request)
    reply = await op(request, ListFiles(caller=caller_of(request), job_id=job_id))
    return json_response({"files": reply["files"]})


async def get_file(request: web.Request) -> web.StreamResponse:
    job_id = job_id_of(request)
    path = file_path_of(request)
    caller = caller_of(request)
    reply = await op(request, ReadFile(caller=caller, job_id=job_id, path=path, offset=0, length=IO_CHUNK_BYTES))
    content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    headers = {"X-File-Size": str(reply["size"])}
    data = reply["data"]
    if len(data) >= reply["size"]:
        return web.Response(body=data, content_type=content_type, headers=headers)
    resp = web.StreamResponse(headers=headers)
    resp.content_type = content_type
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    offset = 0
    with Stream(request):
        while data:
            await resp.write(data)
            offset += len(data)
            if offset >= reply["size"]:
                break
            reply = await op(
                request, ReadFile(caller=caller, job_id=job_id, path=path, offset=offset, length=IO_CHUNK_BYTES)
            )
            data = reply["data"]
    await resp.write_eof()
    return resp


async def run_analysis(request: web.Request) -> web.Response:
    job_id = job_id_of(request)
    args = await read_json(request, empty={})
    if not isinstance(args, dict):
        raise InvalidRequest("the analysis arguments must be a JSON object", field="body")
    check_wire_value(args, "args")
    reply = await op(request, RunAnalysis(caller=caller_of(request), job_id=job_id, args=args))
    return json_response({"result": reply.get("result")})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post(PREFIX + "/jobs", submit_jobs)
    r.add_get(PREFIX + "/jobs", list_jobs, allow_head=False)
    r.add_get(PREFIX + "/jobs/{id}", get_job, allow_head=False)
    r.add_post(PREFIX + "/jobs/{id}/cancel", cancel_job)
    r.add_post(PREFIX + "/jobs/{id}/resubmit", resubmit_job)
    r.add_get(PREFIX + "/jobs/{id}/log", get_log, allow_head=False)
    r.add_get(PREFIX + "/jobs/{id}/files", list_files, allow_head=False)
    r.add_get(PREFIX + "/jobs/{id}/files/{path:.+}", get_file, allow_head=False)
    r.add_post(PREFIX + "/jobs/{id}/analysis", run_analysis)
