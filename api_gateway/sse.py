"""Server-sent events (text/event-stream) on an aiohttp StreamResponse."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

HEARTBEAT_SECONDS = 15.0


async def open_stream(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
        }
    )
    await resp.prepare(request)
    return resp


_to_json = json.JSONEncoder(separators=(",", ":")).encode  # one encoder, not one per event


def format_event(event: str, data: Any, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\nevent: {event}\n" if event_id is not None else f"event: {event}\n"
    return f"{head}data: {_to_json(data)}\n\n".encode()


async def send(resp: web.StreamResponse, event: str, data: Any, event_id: str | None = None) -> None:
    await resp.write(format_event(event, data, event_id))


async def heartbeat(resp: web.StreamResponse) -> None:
    await resp.write(b": heartbeat\n\n")
