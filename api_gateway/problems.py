"""RFC 9457 problem details: every error the gateway answers is `application/problem+json`.

`error_middleware` turns aiohttp's HTTP exceptions (404 unknown route, 405, 413 body too
large), jobvisor's `OpError`s (from validation or from the supervisor) and unexpected
exceptions into one shape: `{"type", "title", "status", "detail", "field"?}`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from http import HTTPStatus
from typing import Any

from aiohttp import web

from jobvisor.errors import AuthError, ErrorKind, OpError

log = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"

KIND_TO_STATUS: dict[str, int] = {
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.INVALID: 400,
    ErrorKind.CONFLICT: 409,
    ErrorKind.TIMEOUT: 504,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.INTERNAL: 500,
}

WWW_AUTHENTICATE = 'Bearer realm="jobvisor"'


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem(
    status: int,
    detail: str,
    *,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _title(status),
        "status": status,
        "detail": detail,
    }
    if field:
        body["field"] = field
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type=PROBLEM_TYPE,
        headers=headers,
    )


def op_error_response(exc: OpError) -> web.Response:
    status = KIND_TO_STATUS.get(str(exc.kind), 500)
    return problem(status, exc.detail, field=exc.field)


def unauthorized(detail: str) -> web.Response:
    return problem(401, detail, headers={"WWW-Authenticate": WWW_AUTHENTICATE})


_HTTP_DETAILS = {
    404: "no such route; see /api/v1/openapi.json",
    405: "method not allowed on this route",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except OpError as exc:
        return op_error_response(exc)
    except AuthError as exc:
        return unauthorized(str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.content_type == PROBLEM_TYPE:
            raise
        headers = {}
        if exc.status == 405 and "Allow" in exc.headers:
            headers["Allow"] = exc.headers["Allow"]
        if exc.status == 413:
            detail = f"request body is too large ({exc.text})" if exc.text else "request body is too large"
        else:
            detail = _HTTP_DETAILS.get(exc.status) or exc.reason or _title(exc.status)
        return problem(exc.status, detail, headers=headers or None)
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "internal error; see the gateway log")
