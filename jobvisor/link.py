"""The gateway's link to a supervisor in the same process: the typed protocol without sockets.

`jobvisor up` runs both in one asyncio loop. Messages still cross this boundary as the
declared protocol types (a `GatewayRequest` in, a `Reply` out, `Event`s pushed), so the
gateway keeps no knowledge of the supervisor's insides and can as well reach a supervisor on
another host over HTTP; in one process it just skips two HTTP hops and the msgpack framing
per request and per event (a large share of the time of a short job).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from jobvisor.protocol.common import Reply
from jobvisor.protocol.events import Event
from jobvisor.protocol.registry import GatewayRequest


class LocalLink(Protocol):
    async def request(self, request: GatewayRequest) -> Reply:
        """Answer one request (never raises for an op's failure: that is a `Reply`)."""

    def subscribe(self) -> "asyncio.Queue[list[Event] | None]":
        """A queue of committed events, in batches; None means the subscription ended."""

    def unsubscribe(self, queue: "asyncio.Queue[list[Event] | None]") -> None: ...
