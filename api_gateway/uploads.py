"""`POST /jobs` as `multipart/form-data`: a part `job` (the JSON job, or a list of jobs) and
parts `file`, each file's `filename` being its path in the run dir (percent-decoded).

The files are streamed to the supervisor in slices (`UploadInput`, each well under the message
limit), never held whole here; the submit then names the upload, and every job of it gets all
the files as inputs. The files together may be `[gateway] max_input_bytes` (413 above it), the
`job` part `[gateway] max_body_bytes`; aiohttp's own body limit does not apply to a streamed
form, so both are counted here as the parts arrive.
"""

from __future__ import annotations

import json
import secrets
import urllib.parse
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import BodyPartReader

from jobvisor.errors import InvalidRequest, TooLarge
from jobvisor.input_paths import check_input_path
from jobvisor.limits import IO_CHUNK_BYTES
from jobvisor.protocol.common import Caller
from jobvisor.protocol.job_requests import JobSpec, UploadInput

from api_gateway.context import CONFIG, caller_of, op
from api_gateway.validation import parse_job_specs

FORM = "multipart/form-data"
JOB_PART = "job"
FILE_PART = "file"


async def read_form_submit(request: web.Request) -> tuple[list[JobSpec], bool, str]:
    """(specs, was_a_list, upload_id) of a multipart submit, its files already with the supervisor."""
    config = request.app[CONFIG].gateway
    declared = request.content_length
    if declared is not None and declared > config.max_input_bytes + config.max_body_bytes:
        raise TooLarge(f"the request of {declared} bytes is over gateway.max_input_bytes "
                       f"({config.max_input_bytes}) plus gateway.max_body_bytes")
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, KeyError) as exc:
        raise InvalidRequest(f"not a multipart/form-data body: {exc}", field="body") from None
    caller = caller_of(request)
    upload_id = secrets.token_urlsafe(16)
    job: Any = ...
    paths: set[str] = set()
    total = 0
    index = 0
    while True:
        try:
            part = await reader.next()
        except (ValueError, HttpProcessingError) as exc:  # a part's headers that are not HTTP headers
            raise InvalidRequest(f"malformed multipart body: {str(exc).strip()[:200]}", field="body") from None
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise InvalidRequest("nested multipart parts are not supported", field="body")
        if part.name == JOB_PART:
            if job is not ...:
                raise InvalidRequest("more than one 'job' part", field="job")
            job = await _json_part(part, config.max_body_bytes)
        elif part.name == FILE_PART:
            field = f"file[{index}]"
            index += 1
            path = check_input_path(_filename(part), field=field)
            if path in paths:
                raise InvalidRequest(f"two files go to {path!r}", field=field)
            paths.add(path)
            total = await _stream_file(request, caller, upload_id, path, part, total, config.max_input_bytes,
                                       upload_slice(request.app[CONFIG].supervisor.max_message_bytes))
        else:
            raise InvalidRequest(f"unknown form part {part.name!r}; the form has a '{JOB_PART}' part and "
                                 f"'{FILE_PART}' parts", field=part.name or "body")
    if job is ...:
        raise InvalidRequest(f"the form has no '{JOB_PART}' part (the job as JSON)", field="job")
    specs, many = parse_job_specs(job, config.max_batch, config.max_array)  # an array: every job gets every file
    return specs, many, upload_id if paths else ""


def _filename(part: BodyPartReader) -> str | None:
    """The part's filename, percent-decoded: some clients (aiohttp's, for one) percent-encode
    the `/` of a path (`data%2Fin.txt`); a literal `%` is then sent as `%25`."""
    name = part.filename
    if not name or "%" not in name:
        return name
    try:
        return urllib.parse.unquote(name, errors="strict")
    except UnicodeDecodeError:
        raise InvalidRequest(f"file name {name!r} is not UTF-8 once percent-decoded", field="file") from None


async def _read_chunk(part: BodyPartReader) -> bytes:
    try:
        return await part.read_chunk(IO_CHUNK_BYTES)
    except (ValueError, HttpProcessingError) as exc:  # a part's body cut short or malformed
        raise InvalidRequest(f"malformed multipart body: {str(exc).strip()[:200]}", field="body") from None


async def _json_part(part: BodyPartReader, limit: int) -> Any:
    raw = bytearray()
    while chunk := await _read_chunk(part):
        raw += chunk
        if len(raw) > limit:
            raise TooLarge(f"the 'job' part is over gateway.max_body_bytes ({limit} bytes)", field="job")
    try:
        return json.loads(bytes(raw))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InvalidRequest(f"the 'job' part is not valid JSON: {exc}", field="job") from None


def upload_slice(max_message_bytes: int) -> int:
    """Bytes of one UploadInput: a quarter of a message at most, so it fits over HTTP too."""
    return max(1, min(IO_CHUNK_BYTES, max_message_bytes // 4))


async def _stream_file(request: web.Request, caller: Caller, upload_id: str, path: str, part: BodyPartReader,
                       total: int, limit: int, slice_bytes: int) -> int:
    """One file to the supervisor, slice by slice; the running total of the form's files."""
    offset = 0
    pending = bytearray()
    while True:
        chunk = await _read_chunk(part)
        total += len(chunk)
        if total > limit:
            raise TooLarge(f"the files are over gateway.max_input_bytes ({limit} bytes)", field="file")
        pending += chunk
        if chunk and len(pending) < slice_bytes:
            continue
        if not pending and offset == 0:  # an empty file is made too
            await op(request, UploadInput(caller, upload_id, path, 0, b""))
        while pending and (len(pending) >= slice_bytes or not chunk):
            piece = bytes(pending[:slice_bytes])
            await op(request, UploadInput(caller, upload_id, path, offset, piece))
            offset += len(piece)
            del pending[:slice_bytes]
        if not chunk:
            return total
