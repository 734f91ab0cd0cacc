"""A tiny SSE reader for tests: parse `event:`/`data:` blocks from an aiohttp response."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp


async def next_event(resp: aiohttp.ClientResponse, timeout: float = 10.0) -> tuple[str, Any]:
    """The next (event, data) pair, skipping comments; TimeoutError after `timeout`."""

    async def read() -> tuple[str, Any]:
        event, data = "message", []
        while True:
            line = await resp.content.readline()
            if not line:
                raise EOFError("stream ended")
            text = line.decode().rstrip("\n")
            if not text:
                if data:
                    return event, json.loads("\n".join(data))
                event = "message"
                continue
            if text.startswith(":"):
                continue
            key, _, value = text.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "event":
                event = value
            elif key == "data":
                data.append(value)

    return await asyncio.wait_for(read(), timeout)
