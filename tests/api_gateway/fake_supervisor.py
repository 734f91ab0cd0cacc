"""A test double of the supervisor's gateway-facing side: `/internal/op` and `/internal/events`,
exactly per the protocol, with jobs kept in a dict. Tests drive job transitions, logs and
files through its methods; the real supervisor is tested against the same contract elsewhere.

Ownership is enforced as supervisor/requests.py does it: every op about one job first looks
the job up for the caller (`_job`), and another user's job is NotFound like a missing one.
The gateway relies on that (it makes one op per request, with no ownership check of its own
first), so the gateway's cross-user 404 tests test the gateway and this contract together.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from jobvisor import __version__
from jobvisor.errors import Conflict, NotFound, OpError
from jobvisor.ids import new_job_id
from jobvisor.protocol import (
    ALLOWED_GATEWAY_REQUESTS,
    IO_CHUNK_BYTES,
    PROTOCOL_VERSION,
    CancelJobRequest,
    Caller,
    GetAgents,
    GetJob,
    GetQueue,
    GetStatus,
    JobEvent,
    ListFiles,
    ListJobs,
    ReadFile,
    ReadLog,
    Reply,
    RunAnalysis,
    SubmitJobs,
    decode,
    encode,
    pack,
    to_wire,
)
from jobvisor.states import JobState

SECRET_HEADER = "X-Jobvisor-Secret"


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat()


class FakeSupervisor:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.jobs: dict[str, dict] = {}
        self.logs: dict[str, bytearray] = {}
        self.files: dict[str, dict[str, bytes]] = {}
        self.history: dict[str, list[dict]] = {}  # GetJob's `history`, as the real store keeps it
        self.requests: list[Any] = []  # every decoded op, for assertions
        self.io_chunk = IO_CHUNK_BYTES  # tests shrink it to force many ReadFile slices
        self._changed: dict[str, asyncio.Event] = {}
        self._subscribers: set[asyncio.Queue] = set()
        self.event_connections = 0  # how many times the gateway subscribed
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.started = time.time()

    # ------------------------------------------------------------------ server

    async def start(self) -> "FakeSupervisor":
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/internal/op", self._op)
        app.router.add_get("/internal/events", self._events)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        for queue in list(self._subscribers):
            queue.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()

    def drop_event_streams(self) -> None:
        """End every event stream, as a restarting supervisor would."""
        for queue in list(self._subscribers):
            queue.put_nowait(None)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def _op(self, request: web.Request) -> web.Response:
        if request.headers.get(SECRET_HEADER) != self.secret:
            return web.Response(status=401, text="bad secret")
        message = decode(await request.read(), ALLOWED_GATEWAY_REQUESTS)
        self.requests.append(message)
        try:
            data = await self.handle(message)
            reply = Reply(ok=True, data=data)
        except OpError as exc:
            reply = Reply(ok=False, error=exc.to_wire())
        return web.Response(body=encode(reply), content_type="application/msgpack")

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get(SECRET_HEADER) != self.secret:
            return web.Response(status=401, text="bad secret")
        resp = web.StreamResponse()
        resp.content_type = "application/msgpack"
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        queue: asyncio.Queue = asyncio.Queue()
        self._subscribers.add(queue)
        self.event_connections += 1
        try:
            while True:
                event = await queue.get()
                if event is None:
                    break
                await resp.write(pack(to_wire(event)))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._subscribers.discard(queue)
        return resp

    # ------------------------------------------------------------------ ops

    def _job(self, caller: Caller, job_id: str) -> dict:
        """As RequestHandlers._job: the job if the caller owns it or is an admin, else NotFound."""
        job = self.jobs.get(job_id)
        if job is None or not (caller.is_admin or job["owner"] == caller.user):
            raise NotFound(f"no job {job_id!r}")
        return job

    async def handle(self, m: Any) -> Any:
        if isinstance(m, SubmitJobs):
            out = []
            for spec in m.jobs:
                job_id = new_job_id()
                job = {
                    "id": job_id, "state": "queued", "code": spec.code, "params": spec.params,
                    "resources": spec.resources, "driver": spec.driver or "local", "owner": m.caller.user,
                    "name": spec.name, "exit_code": None, "result": None, "reason": "submitted",
                    "queue_position": len(self.jobs) + 1, "created_at": _iso(time.time()),
                    "started_at": None, "finished_at": None, "attempt": 1,
                    "max_retries": spec.max_retries, "progress": None, "progress_message": "", "info": {},
                    "agent_id": None,
                }
                self.jobs[job_id] = job
                self.logs[job_id] = bytearray()
                self.files[job_id] = {}
                self.history[job_id] = [{"attempt": 1, "state": "queued", "reason": "submitted", "at": time.time()}]
                out.append(job)
            return {"jobs": out}
        if isinstance(m, ListJobs):
            jobs = sorted(
                (j for j in self.jobs.values() if m.caller.is_admin or j["owner"] == m.caller.user),
                key=lambda j: j["id"],
            )
            if m.states:
                jobs = [j for j in jobs if j["state"] in m.states]
            if m.after:
                jobs = [j for j in jobs if j["id"] > m.after]
            page = jobs[: m.limit]
            more = len(jobs) > m.limit
            return {"jobs": page, "next": page[-1]["id"] if more else None}
        if isinstance(m, GetJob):
            return {**self._job(m.caller, m.job_id), "history": self.history[m.job_id]}
        if isinstance(m, CancelJobRequest):
            job = self._job(m.caller, m.job_id)
            if JobState(job["state"]).is_terminal:
                raise Conflict(f"job {m.job_id} already ended ({job['state']})")
            self.set_state(m.job_id, "canceled", reason="canceled by user")
            return job
        if isinstance(m, ReadLog):
            job = self._job(m.caller, m.job_id)
            deadline = time.monotonic() + m.wait
            while True:
                log = self.logs[m.job_id]
                data = bytes(log[m.offset : m.offset + m.length])
                terminal = JobState(job["state"]).is_terminal
                final = terminal and m.offset + len(data) >= len(log)
                remaining = deadline - time.monotonic()
                if data or final or remaining <= 0:
                    return {"data": data, "offset": m.offset, "size": len(log), "final": final}
                changed = self._changed.setdefault(m.job_id, asyncio.Event())
                try:
                    await asyncio.wait_for(changed.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
        if isinstance(m, ListFiles):
            self._job(m.caller, m.job_id)
            return {"files": [{"path": p, "size": len(d), "mtime": 0.0} for p, d in sorted(self.files[m.job_id].items())]}
        if isinstance(m, ReadFile):
            self._job(m.caller, m.job_id)
            data = self.files[m.job_id].get(m.path)
            if data is None:
                raise NotFound(f"no file {m.path!r}", field="path")
            length = min(m.length, self.io_chunk)
            return {"data": data[m.offset : m.offset + length], "offset": m.offset, "size": len(data)}
        if isinstance(m, RunAnalysis):
            job = self._job(m.caller, m.job_id)
            return {"result": {"job": job["id"], "args": m.args}}
        if isinstance(m, GetQueue):
            queued = [j for j in self.jobs.values() if j["state"] == "queued"]
            return {
                "drivers": {"local": {"cpus_total": 4, "cpus_used": 0, "queued": len(queued)}},
                "jobs": [
                    {"id": j["id"], "owner": j["owner"], "driver": j["driver"], "cpus": 1, "queue_position": i + 1}
                    for i, j in enumerate(queued)
                ],
            }
        if isinstance(m, GetAgents):
            return {"agents": [
                {"id": "a1", "user": "alice", "kind": "local", "state": "idle", "pid": 1, "host": "h", "jobs": 0, "connected_at": None},
                {"id": "a2", "user": "bob", "kind": "local", "state": "idle", "pid": 2, "host": "h", "jobs": 0, "connected_at": None},
            ]}
        if isinstance(m, GetStatus):
            counts: dict[str, int] = {}
            for j in self.jobs.values():
                counts[j["state"]] = counts.get(j["state"], 0) + 1
            return {"version": __version__, "protocol_version": PROTOCOL_VERSION, "counts": counts,
                    "agents": 0, "uptime": time.time() - self.started}
        raise OpError(f"unhandled {m.TYPE}")

    # ------------------------------------------------------------------ test controls

    def _wake(self, job_id: str) -> None:
        event = self._changed.pop(job_id, None)
        if event is not None:
            event.set()

    def set_state(self, job_id: str, state: str, *, exit_code: int | None = None, reason: str = "",
                  progress: float | None = None, message: str = "") -> None:
        job = self.jobs[job_id]
        job["state"] = state
        job["reason"] = reason or job["reason"]
        self.history[job_id].append({"attempt": job["attempt"], "state": state, "reason": job["reason"], "at": time.time()})
        if exit_code is not None:
            job["exit_code"] = exit_code
        if progress is not None:
            job["progress"] = progress
        if state == "running":
            job["started_at"] = _iso(time.time())
        if JobState(state).is_terminal:
            job["finished_at"] = _iso(time.time())
            job["queue_position"] = None
        self.publish(JobEvent(job_id=job_id, owner=job["owner"], state=state, attempt=job["attempt"],
                              at=time.time(), reason=reason, exit_code=exit_code, progress=progress,
                              message=message))
        self._wake(job_id)

    def publish(self, event: JobEvent) -> None:
        for queue in self._subscribers:
            queue.put_nowait(event)

    def append_log(self, job_id: str, data: bytes) -> None:
        self.logs[job_id] += data
        self._wake(job_id)
