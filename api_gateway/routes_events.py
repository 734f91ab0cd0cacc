"""Routes of the events: GET /events (a live SSE stream that resumes from an id without a gap,
or a JSON page of the history) and POST /events (a user's own event).

A stream that resumes (`Last-Event-ID`, or `?since=ID`) subscribes first, then reads what was
committed after that id from the database (ListEvents, page by page), then goes on with the
live events, dropping those with an id it already sent: an event committed before the
history was read is in it, one committed after reaches the subscription, and ids increase in
commit order, so nothing is missed and nothing is sent twice.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from aiohttp import web

from jobvisor.errors import InvalidRequest, OpError
from jobvisor.limits import MAX_EVENT_ID, MAX_PAGE
from jobvisor.protocol.common import Caller
from jobvisor.protocol.events import ListEvents, PushEvent
from jobvisor.wire_values import check_wire_value

from api_gateway import sse
from api_gateway.context import HUB, caller_of, op
from api_gateway.events import EndReason, Subscription
from api_gateway.routes_jobs import PREFIX, Stream, json_response
from api_gateway.validation import DEFAULT_PAGE, query_int, read_json

EVENT_BATCH = 500  # most events written in one chunk when a burst is queued
HISTORY_PAGE = MAX_PAGE  # events read from the database per ListEvents while catching up
# After a chunk of at least BURST_EVENTS (a burst, not one job's few transitions), the next
# chunk waits BURST_PAUSE seconds to gather more: every write costs a send and a wake-up of
# the client, so a burst goes out in a few large writes. A lone event is never delayed.
BURST_EVENTS = 16
BURST_PAUSE = 0.005
FORMATS = ("sse", "json")
PUSH_FIELDS = frozenset({"data", "job_id", "workflow_id"})

_END_DETAIL = {
    EndReason.OVERFLOW: "events came faster than this client read them",
    EndReason.RELINKED: "the gateway's link to the supervisor was restored",
    EndReason.CLOSED: "the server is stopping",
    EndReason.UNAVAILABLE: "the history could not be read",
}


def _since(request: web.Request) -> int | None:
    """Where a stream resumes: Last-Event-ID (an EventSource reconnecting sends it, and it is
    newer than the URL's `since`), else `?since=`; None: live events only."""
    since = query_int(request, "since", 0, 0, MAX_EVENT_ID) if "since" in request.query else None
    last_id = request.headers.get("Last-Event-ID")
    if last_id:  # (empty: none, as an EventSource that has seen no id yet)
        value = last_id
        if not (value.isascii() and value.isdigit()) or int(value) > MAX_EVENT_ID:
            raise InvalidRequest(f"Last-Event-ID must be an event id (a whole number from 0), not {last_id!r}",
                                 field="Last-Event-ID")
        return int(value)
    return since


def _format(request: web.Request) -> str:
    value = request.query.get("format", "sse")
    if value not in FORMATS:
        raise InvalidRequest(f"format must be one of {', '.join(FORMATS)}, not {value!r}", field="format")
    return value


async def get_events(request: web.Request) -> web.StreamResponse:
    """The caller's events (everyone's for admins); `?job=ID`: one job's. As SSE (each event
    with its `id:`), or with `format=json` one page of the history after `since`."""
    caller = caller_of(request)
    job_id = request.query.get("job", "")
    since = _since(request)
    fmt = _format(request)
    if fmt == "json":
        limit = query_int(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
        page = await op(request, ListEvents(caller=caller, since=since or 0, limit=limit, job_id=job_id))
        return json_response({key: page[key] for key in ("events", "next", "last_id", "pruned")})
    if "limit" in request.query:
        raise InvalidRequest("limit applies to format=json only (a stream sends everything)", field="limit")
    hub = request.app[HUB]
    # subscribe before the history is read and before the headers go out: an event committed
    # after the read reaches the subscription, so nothing falls between the two
    with hub.subscribe(caller.user, caller.is_admin, job_id or None) as sub, Stream(request):
        # read before the 200 (a supervisor that cannot answer is a 503): the history after
        # `since`, or for a live stream only where it starts (the newest committed id)
        first = await op(request, ListEvents(caller=caller, since=MAX_EVENT_ID if since is None else since,
                                             limit=HISTORY_PAGE, job_id=job_id))
        resp = await sse.open_stream(request)
        try:
            if since is None:
                # an `id:` alone sets an EventSource's last id: after a drop it resumes from here
                last = first["last_id"]
                await resp.write(f"retry: 2000\nid: {last}\n: subscribed\n\n".encode())
            else:
                await resp.write(b"retry: 2000\n: subscribed\n\n")
                if first["pruned"]:
                    await sse.send(resp, "pruned", {
                        "since": since, "detail": f"events after {since} were pruned already ([events] keep_days, "
                                                  "keep_count): the oldest kept follow"})
                last = since
                async for last in _send_history(request, resp, caller, job_id, first):
                    pass
            await _send_live(resp, sub, last)
            await resp.write_eof()
        except OpError:  # a later page of the history could not be read: resume from what was sent
            await _send_end(resp, EndReason.UNAVAILABLE, last)
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
    return resp


async def _send_history(request: web.Request, resp: web.StreamResponse, caller: Caller, job_id: str,
                        page: dict) -> AsyncIterator[int]:
    """Every committed event after the first page's `since`, page by page; yields the last id
    sent after each page."""
    while True:
        events = page["events"]
        if events:
            await resp.write(b"".join(sse.format_event(e["kind"], e, str(e["id"])) for e in events))
            yield events[-1]["id"]
        if page["next"] is None:
            return
        page = await op(request, ListEvents(caller=caller, since=page["next"], limit=HISTORY_PAGE, job_id=job_id))


async def _send_end(resp: web.StreamResponse, reason: EndReason, last: int) -> None:
    await sse.send(resp, "reconnect", {
        "reason": reason.value, "last_id": last,
        "detail": f"{_END_DETAIL[reason]}: reconnect with Last-Event-ID: {last} (or ?since={last}) to get every "
                  "event after it",
    })


async def _send_live(resp: web.StreamResponse, sub: Subscription, last: int) -> None:
    """Live events with an id above `last` until the subscription ends; then a `reconnect`
    event that says why and from which id to resume."""
    while True:
        try:
            events = await sub.take(sse.HEARTBEAT_SECONDS, EVENT_BATCH)
        except asyncio.TimeoutError:
            await sse.heartbeat(resp)
            continue
        if events is None:
            await _send_end(resp, sub.ended or EndReason.CLOSED, last)
            return
        chunk: list[bytes] = []
        for event in events:
            if event.id > last:
                chunk.append(sse.format_event(event.kind.value, event.to_json(), str(event.id)))
                last = event.id
        if chunk:
            await resp.write(b"".join(chunk))
        if len(chunk) >= BURST_EVENTS:
            await asyncio.sleep(BURST_PAUSE)


async def post_event(request: web.Request) -> web.Response:
    """A user event: {"data": {...}, "job_id"?, "workflow_id"?} -> 201 with the event."""
    body: Any = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object: {\"data\": {...}, \"job_id\": ..., \"workflow_id\": ...}", field="body")
    unknown = sorted(set(body) - PUSH_FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r} (an event takes data, job_id, workflow_id)", field=unknown[0])
    data = body.get("data")
    if not isinstance(data, dict):
        raise InvalidRequest("data must be a JSON object", field="data")
    check_wire_value(data, "data")
    refs = {}
    for name in ("job_id", "workflow_id"):
        value = body.get(name)
        if value is not None and (not isinstance(value, str) or not value or len(value) > 64):
            raise InvalidRequest(f"{name} must be an id (a non-empty string of at most 64 characters) or null", field=name)
        refs[name] = value or ""
    event = await op(request, PushEvent(caller=caller_of(request), data=data, **refs))
    return json_response(event, status=201)


def add_routes(app: web.Application) -> None:
    app.router.add_get(PREFIX + "/events", get_events, allow_head=False)
    app.router.add_post(PREFIX + "/events", post_event)
