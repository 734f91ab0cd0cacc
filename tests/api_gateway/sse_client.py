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
