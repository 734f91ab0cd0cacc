"""The gateway's only link to the supervisor: msgpack ops over HTTP, and one event stream.

`SupervisorClient.op(request)` POSTs one `GatewayRequest` to `/internal/op` on a shared
keep-alive session and returns the reply's `data`, or raises the `OpError` the supervisor
sent. A supervisor that cannot be reached is `Unavailable` (503), one that does not answer in
time is `OpTimeout` (504); aiohttp's exceptions never leave this module.

`SupervisorClient.run_events(publish)` holds the single subscription to `/internal/events`
(reconnecting with jittered backoff) and hands every decoded `Event` to `publish`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

import aiohttp
import msgpack

from jobvisor.config import Config
from jobvisor.errors import InvalidRequest, OpError, OpTimeout, ProtocolError, Unavailable
from jobvisor.codec import decode, encode, from_wire
from jobvisor.protocol.common import Reply
from jobvisor.protocol.events import Event
from jobvisor.protocol.job_requests import ReadLog, RunAnalysis, SubmitJobs
from jobvisor.protocol.registry import ALLOWED_EVENTS, ALLOWED_REPLY, GatewayRequest
from jobvisor.link import LocalLink
from jobvisor.secrets import internal_secret_path, load_or_create_secret
from jobvisor.timing import backoff_delay

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Jobvisor-Secret"
MSGPACK = "application/msgpack"
DEFAULT_OP_TIMEOUT = 30.0


class SupervisorClient:
    def __init__(self, config: Config, *, secret: str | None = None, link: LocalLink | None = None) -> None:
        self._config = config
        self._link = link  # a supervisor in this process: no sockets (see jobvisor.link)
        self._base = config.supervisor_url.rstrip("/")
        self._secret = secret if secret is not None else load_or_create_secret(
            internal_secret_path(config.state_dir)
        )
        self._max_bytes = config.supervisor.max_message_bytes
        self._session: aiohttp.ClientSession | None = None
        self.events_connected = asyncio.Event()

    @property
    def url(self) -> str:
        return "in-process" if self._link is not None else self._base

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=60.0)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={SECRET_HEADER: self._secret},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _timeout_for(self, request: GatewayRequest) -> float:
        sup = self._config.supervisor
        if isinstance(request, ReadLog):
            return sup.io_timeout + max(0.0, request.wait) + 5.0
        if isinstance(request, RunAnalysis):
            return sup.analysis_timeout + 5.0
        return max(DEFAULT_OP_TIMEOUT, sup.io_timeout + 5.0)

    async def op(self, request: GatewayRequest) -> Any:
        if self._link is not None:
            try:
                reply = await asyncio.wait_for(self._link.request(request), self._timeout_for(request))
            except asyncio.TimeoutError as exc:
                raise OpTimeout(f"the supervisor did not answer {request.TYPE} in time") from exc
            return self._data_of(reply)
        if self._session is None:
            raise Unavailable("the gateway is not connected to the supervisor (starting or stopping)")
        try:
            body = encode(request)
        except (OverflowError, TypeError, ValueError) as exc:
            # validation checks every value a user sends (jobvisor.wire_values): reaching
            # this is a value it missed, answered as the request's fault at once, not a 500
            log.error("cannot encode a %s request for the supervisor: %s", request.TYPE, exc)
            raise InvalidRequest(f"the request holds a value that cannot be sent on: {exc}") from exc
        timeout = aiohttp.ClientTimeout(total=self._timeout_for(request))
        # a keep-alive connection the supervisor closed while idle fails at once: retry that
        # once, except for a submit, which must never run twice
        tries = 1 if isinstance(request, SubmitJobs) else 2
        try:
            for attempt in range(tries):
                try:
                    async with self._session.post(
                        self._base + "/internal/op",
                        data=body,
                        headers={"Content-Type": MSGPACK},
                        timeout=timeout,
                    ) as resp:
                        raw = await resp.read()
                        status = resp.status
                    break
                except aiohttp.ServerDisconnectedError:
                    if attempt + 1 >= tries:
                        raise
        except asyncio.TimeoutError as exc:
            raise OpTimeout(f"the supervisor did not answer {request.TYPE} in time") from exc
        except aiohttp.ClientError as exc:
            raise Unavailable(f"the supervisor at {self._base} is unreachable: {exc}") from exc
        try:
            reply = decode(raw, ALLOWED_REPLY, self._max_bytes)
        except ProtocolError as exc:
            log.warning("unreadable supervisor reply to %s (HTTP %s): %s", request.TYPE, status, exc)
            if status in (401, 403):
                raise OpError("the supervisor rejected the gateway's internal secret") from exc
            raise OpError(f"the supervisor sent an unreadable reply (HTTP {status})") from exc
        assert isinstance(reply, Reply)
        return self._data_of(reply)

    @staticmethod
    def _data_of(reply: Reply) -> Any:
        if not reply.ok:
            raise reply.error.exception() if reply.error is not None else OpError("the supervisor failed without saying why")
        return reply.data

    async def run_events(self, publish: Callable[[Event], None], on_linked: Callable[[], None] = lambda: None) -> None:
        """Forever: subscribe to the supervisor's events and publish each one. Cancel to stop.

        `on_linked` runs each time the subscription is made, before its first event: events
        committed while there was none never come, and whoever streams them must say so."""
        attempt = 0
        while True:
            try:
                await self._stream_events(publish, on_linked)
                attempt = 0  # a clean end (supervisor restart): reconnect quickly
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, asyncio.TimeoutError, ProtocolError, OSError) as exc:
                log.info("event stream from %s interrupted: %s", self._base, exc)
            finally:
                self.events_connected.clear()
            delay = backoff_delay(attempt, base=0.2, cap=5.0)
            attempt += 1
            await asyncio.sleep(delay)

    async def _stream_events(self, publish: Callable[[Event], None], on_linked: Callable[[], None]) -> None:
        if self._link is not None:
            await self._link_events(self._link, publish, on_linked)
            return
        if self._session is None:
            raise Unavailable("client not started")
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=None)
        async with self._session.get(self._base + "/internal/events", timeout=timeout) as resp:
            if resp.status != 200:
                raise ProtocolError(f"event stream answered HTTP {resp.status}")
            self.events_connected.set()
            on_linked()
            log.info("subscribed to events at %s", self._base)
            unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=self._max_bytes)
            async for chunk in resp.content.iter_any():
                unpacker.feed(chunk)
                for obj in unpacker:
                    if obj is None:  # the supervisor's keepalive
                        continue
                    try:
                        message = from_wire(obj, ALLOWED_EVENTS)
                    except ProtocolError as exc:
                        log.warning("dropping a malformed event: %s", exc)
                        continue
                    assert isinstance(message, Event)
                    publish(message)

    async def _link_events(self, link: LocalLink, publish: Callable[[Event], None], on_linked: Callable[[], None]) -> None:
        queue = link.subscribe()
        self.events_connected.set()
        on_linked()
        try:
            while (batch := await queue.get()) is not None:
                for event in batch:
                    publish(event)
        finally:
            link.unsubscribe(queue)
