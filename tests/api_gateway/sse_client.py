"""A tiny SSE reader for tests: parse `event:`/`data:` blocks from an aiohttp response."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from jobvisor.sse import SseDecoder


async def next_event(resp: aiohttp.ClientResponse, timeout: float = 10.0) -> tuple[str, Any]:
    """The next (event, data) pair, skipping comments; TimeoutError after `timeout`."""

    async def read() -> tuple[str, Any]:
        decoder = SseDecoder()
        while True:
            line = await resp.content.readline()
            if not line:
                raise EOFError("stream ended")
            event = decoder.feed(line)
            if event is not None:
                return event[0], event[1]

    return await asyncio.wait_for(read(), timeout)


async def read_events(resp: aiohttp.ClientResponse, until: Any = None, timeout: float = 10.0) -> list[tuple[str, Any, str | None]]:
    """(event, data, id) of every event until `until(event, data)` is true for one (it is
    included) or the stream ends; TimeoutError if neither comes within `timeout`."""

    async def read() -> list[tuple[str, Any, str | None]]:
        decoder = SseDecoder()
        out = []
        while True:
            line = await resp.content.readline()
            if not line:
                return out
            event = decoder.feed(line)
            if event is not None:
                out.append(event)
                if until is not None and until(event[0], event[1]):
                    return out

    return await asyncio.wait_for(read(), timeout)
