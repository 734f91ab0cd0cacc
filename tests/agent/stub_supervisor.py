"""Test helpers: a real websocket server playing the supervisor's side of the agent protocol,
and a real agent process (`python -m agent`) pointed at it. Not production code."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from aiohttp import WSMsgType, web

from jobvisor.codec import Message, decode_frame, encode_frame
from jobvisor.protocol.agent_wire import ErrorMessage, Hello, HelloAck, LogChunk, StatusUpdate
from jobvisor.protocol.registry import ALLOWED_FROM_AGENT

REPO = Path(__file__).resolve().parents[2]
TOKEN = "agent-test-token-0123456789"
WAIT = 20.0  # the longest any single wait in these tests may take
PROFILE: list[str] = []  # e.g. ["-m", "cProfile", "-o", "agent.prof"] when measuring


class StubSupervisor:
    def __init__(self, token: str = TOKEN, refuse_with: int | None = None) -> None:
        self.token = token
        self.refuse_with = refuse_with  # answer every upgrade with this HTTP status
        self.messages: list[tuple[int, Message]] = []  # (frame number, message)
        self.errors: list[str] = []  # protocol errors in what the agent sent
        self.logs: dict[str, bytearray] = {}  # contiguous log bytes per job
        self.log_gaps: list[tuple[str, int, int]] = []
        self.frames = 0
        self.connections = 0
        self.upgrade_attempts = 0
        self.ack_hello = True
        self.refuse_hello = False  # answer a hello with an error and close, as a version mismatch does
        self.hello_offsets: dict[str, int] | None = None  # override the offsets in the next HelloAck
        self.ws: web.WebSocketResponse | None = None
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/agent"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/agent", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.upgrade_attempts += 1
        if self.refuse_with is not None:
            return web.Response(status=self.refuse_with, text="refused")
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.Response(status=401, text="bad agent token")
        ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        self.ws = ws
        self.connections += 1
        async for msg in ws:
            if msg.type != WSMsgType.BINARY:
                continue
            self.frames += 1
            messages, errors = decode_frame(msg.data, ALLOWED_FROM_AGENT)
            self.errors.extend(str(e) for e in errors)
            for message in messages:
                self._record(message)
                if isinstance(message, Hello) and self.refuse_hello:
                    await ws.send_bytes(encode_frame([ErrorMessage("protocol version 1 is not supported", "hello")]))
                    await ws.close()
                    break
                if isinstance(message, Hello) and self.ack_hello:
                    offsets = {r.job_id: len(self.logs.get(r.job_id, b"")) for r in message.jobs}
                    if self.hello_offsets is not None:
                        offsets.update(self.hello_offsets)
                        self.hello_offsets = None
                    await ws.send_bytes(encode_frame([HelloAck(log_offsets=offsets)]))
            self._changed.set()
        return ws

    def _record(self, message: Message) -> None:
        self.messages.append((self.frames, message))
        if isinstance(message, LogChunk):
            log = self.logs.setdefault(message.job_id, bytearray())
            if message.offset > len(log):
                self.log_gaps.append((message.job_id, len(log), message.offset))
            else:
                del log[message.offset:]
                log.extend(message.data)

    # ------------------------------------------------------------------ test side

    async def send(self, *messages: Message) -> None:
        await self.wait_connected()
        await self.ws.send_bytes(encode_frame(list(messages)))

    async def send_raw(self, data: bytes) -> None:
        await self.wait_connected()
        await self.ws.send_bytes(data)

    async def drop(self) -> None:
        """Close the agent's websocket from the server side."""
        ws, self.ws = self.ws, None
        await ws.close()

    async def wait_connected(self, count: int = 1, timeout: float = WAIT) -> None:
        """The agent's `count`-th connection is up and its hello has arrived."""
        await self.wait(
            lambda: self.connections >= count and self.ws is not None and not self.ws.closed
            and len(self.hellos()) >= count,
            timeout, f"connection {count} and its hello",
        )

    async def wait(self, condition: Callable[[], object], timeout: float = WAIT, what: str = "") -> object:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (result := condition()):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}; got {self.summary()}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))
            except TimeoutError:
                pass
        return result

    def find(self, kind: type, where: Callable[[Message], bool] = lambda m: True) -> list[Message]:
        return [m for _, m in self.messages if isinstance(m, kind) and where(m)]

    async def message(self, kind: type, where: Callable[[Message], bool] = lambda m: True, timeout: float = WAIT) -> Message:
        found = await self.wait(lambda: self.find(kind, where), timeout, what=f"a {kind.__name__}")
        return found[0]

    async def status(self, job_id: str, state: str, timeout: float = WAIT) -> StatusUpdate:
        return await self.message(StatusUpdate, lambda m: m.report.job_id == job_id and m.report.state == state, timeout)

    def hellos(self) -> list[Hello]:
        return self.find(Hello)

    def summary(self) -> str:
        parts = []
        for frame, m in self.messages[-30:]:
            if isinstance(m, StatusUpdate):
                parts.append(f"#{frame} status {m.report.job_id} {m.report.state} {m.report.reason!r}")
            elif isinstance(m, LogChunk):
                parts.append(f"#{frame} log {m.job_id} @{m.offset}+{len(m.data)}")
            else:
                parts.append(f"#{frame} {m.TYPE}")
        return "; ".join(parts) or "nothing"


class AgentProcess:
    """`python -m agent` with a test environment; its log goes to a file shown on failure."""

    def __init__(self, url: str, tmp: Path, *, token: str = TOKEN, agent_id: str = "a-test", **config: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBVISOR_")}
        env.update(
            JOBVISOR_AGENT_ID=agent_id,
            JOBVISOR_AGENT_TOKEN=token,
            JOBVISOR_AGENT_URL=url,
            JOBVISOR_AGENT_CANCEL_GRACE="1",
            JOBVISOR_AGENT_LOG_POLL_INTERVAL="0.02",
            JOBVISOR_AGENT_MAX_BACKOFF="0.3",
            JOBVISOR_AGENT_GIVE_UP_AFTER="30",
            JOBVISOR_LOGGING_LEVEL="DEBUG",
            XDG_DATA_HOME=str(tmp / "xdg"),
            PYTHONUNBUFFERED="1",
        )
        env.update({f"JOBVISOR_AGENT_{k.upper()}": str(v) for k, v in config.items()})
        self.env = env
        self.log_path = tmp / "agent.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "AgentProcess":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *PROFILE, "-m", "agent"], cwd=REPO, env=self.env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    async def wait_exit(self, timeout: float = WAIT) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (code := self.proc.poll()) is None:
            if loop.time() > deadline:
                raise AssertionError(f"agent still running after {timeout}s; its log:\n{self.log()[-4000:]}")
            await asyncio.sleep(0.02)
        return code

    async def terminate(self, timeout: float = WAIT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await self.wait_exit(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
