"""A small blocking HTTP client of the public API (stdlib `urllib`: the CLI needs no loop).

Errors become `ApiError` carrying the problem detail the gateway sent, or `CliError` when the
gateway cannot be reached, so every command prints one clear line and exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.client import HTTPResponse
from typing import Any, Iterator

from jobvisor.cli.config_args import add_config_argument, config_from_args
from jobvisor.cli.errors import CliError
from jobvisor.sse import SseDecoder

API = "/api/v1"
NO_TOKEN = (
    "no API token: set JOBVISOR_TOKEN or pass --token. An admin makes one with "
    "`jobvisor token create <user>` (the first admin token is printed by `jobvisor up`)."
)


@dataclass(frozen=True)
class RawBody:
    """A request body sent as it is (a YAML document), not as JSON."""

    data: bytes
    content_type: str


class ApiError(CliError):
    def __init__(self, http_status: int, detail: str, field: str | None = None) -> None:
        text = f"HTTP {http_status}: {detail}" + (f" (field: {field})" if field else "")
        super().__init__(text)
        self.http_status = http_status
        self.detail = detail
        self.field = field


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="gateway URL (default: $JOBVISOR_URL, else [server] host and port of the config)")
    parser.add_argument("--token", help="API token (default: $JOBVISOR_TOKEN)")
    add_config_argument(parser, "read for the gateway URL when neither --url nor $JOBVISOR_URL gives one")


def client_from_args(args: argparse.Namespace, *, token_required: bool = True) -> "ApiClient":
    """The client the options and environment describe. `token_required=False` for the public
    routes (`/status`): a token is sent if there is one."""
    url = args.url or os.environ.get("JOBVISOR_URL")
    if not url or getattr(args, "config", None):  # a --config FILE given is read (and checked) even if unused
        config_url = config_from_args(args).gateway_url
        url = url or config_url
    if "://" not in url:  # `--url 127.0.0.1:8765`, as a person types it
        url = "http://" + url
    elif not url.startswith(("http://", "https://")):
        raise CliError(f"the gateway's URL {url!r} is not http:// or https://")
    token = args.token or os.environ.get("JOBVISOR_TOKEN")
    if not token and token_required:
        raise CliError(NO_TOKEN)
    return ApiClient(url, token or "")


def _error_from(exc: urllib.error.HTTPError) -> ApiError:
    try:
        raw = exc.read()
    except OSError:
        raw = b""
    detail, field = (exc.reason or "error"), None
    try:
        problem = json.loads(raw)
        if isinstance(problem, dict):
            detail = str(problem.get("detail") or problem.get("title") or detail)
            field = problem.get("field")
    except ValueError:
        if raw.lstrip()[:1] == b"<":  # a web page: not a jobvisor gateway, whose errors are JSON
            detail = (f"{exc.url} answered with a web page, not a jobvisor gateway's problem: is it the "
                      f"gateway's address (jobvisor up prints it), not the supervisor's port?")
        elif raw:
            detail = raw.decode(errors="replace")[:200]
    err = ApiError(exc.code, str(detail), field)
    if exc.code == 401:
        err.args = (f"{err} -- {NO_TOKEN.split(': ', 1)[1]}",)
    return err


class ApiClient:
    def __init__(self, url: str, token: str, timeout: float = 60.0) -> None:
        self.base = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _url(self, path: str, query: dict[str, Any] | None = None) -> str:
        url = self.base + API + path
        if query:
            clean = {k: v for k, v in query.items() if v is not None and v != ""}
            if clean:
                url += "?" + urllib.parse.urlencode(clean)
        return url

    def open(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = None,
        accept: str = "application/json",
        form: Any = None,
    ) -> HTTPResponse:
        data = None
        headers = {"Accept": accept}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if isinstance(body, RawBody):
            data = body.data
            headers["Content-Type"] = body.content_type
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif form is not None:  # a streamed body (jobvisor.cli.uploads.Form): iterable, its length known
            data = form
            headers["Content-Type"] = form.content_type
            headers["Content-Length"] = str(form.length)
        request = urllib.request.Request(self._url(path, query), data=data, method=method, headers=headers)
        try:
            return urllib.request.urlopen(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as exc:
            raise _error_from(exc) from None
        except urllib.error.URLError as exc:
            raise CliError(
                f"cannot reach the gateway at {self.base}: {exc.reason}. Is `jobvisor up` running? "
                "(set JOBVISOR_URL or --url)"
            ) from None
        except (TimeoutError, socket.timeout):
            raise CliError(f"the gateway at {self.base} did not answer in time") from None

    def call(self, method: str, path: str, *, query: dict | None = None, body: Any = None, form: Any = None) -> Any:
        with self.open(method, path, query=query, body=body, form=form) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def events(self, path: str, *, query: dict | None = None, idle_timeout: float = 40.0) -> "EventStream":
        """Open a server-sent event stream now (so nothing after this call is missed);
        iterate it for (event, data, id)."""
        resp = self.open("GET", path, query=query, timeout=idle_timeout, accept="text/event-stream")
        return EventStream(resp)


class EventStream:
    """(event, data, id) of a server-sent event stream; iteration ends when the server closes
    it, and raises TimeoutError when nothing (not even a heartbeat) came for the idle timeout."""

    def __init__(self, resp: HTTPResponse) -> None:
        self._resp = resp

    def close(self) -> None:
        self._resp.close()

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[tuple[str, Any, str | None]]:
        decoder = SseDecoder()
        while True:
            try:
                line = self._resp.readline()
            except (TimeoutError, socket.timeout):
                raise TimeoutError("event stream idle") from None
            if not line:
                return
            event = decoder.feed(line)
            if event is not None:
                yield event
