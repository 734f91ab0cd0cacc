"""Reading server-sent events (text/event-stream), one line at a time.

Pure, so the blocking CLI client and the asyncio test clients share one reading of the format:
`event:`, `data:` (several join with newlines; JSON here) and `id:` fields, comments starting
with `:`, and a blank line that ends an event.
"""

from __future__ import annotations

import json
from typing import Any


class SseDecoder:
    def __init__(self) -> None:
        self._event = "message"
        self._data: list[str] = []
        self.last_id: str | None = None  # the stream's last `id:`, kept across events

    def feed(self, line: bytes | str) -> tuple[str, Any, str | None] | None:
        """Take one line; return (event, JSON data, last id) when it ends an event."""
        text = (line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line).rstrip("\r\n")
        if not text:
            event, data = self._event, self._data
            self._event, self._data = "message", []
            return (event, json.loads("\n".join(data)), self.last_id) if data else None
        if text.startswith(":"):
            return None
        key, _, value = text.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if key == "event":
            self._event = value
        elif key == "data":
            self._data.append(value)
        elif key == "id":
            self.last_id = value
        return None
