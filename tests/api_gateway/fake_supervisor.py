"""A test double of the supervisor's gateway-facing side: `/internal/op` and `/internal/events`,
exactly per the protocol. Tests drive job transitions, logs and files through its methods, for
what a real run cannot show on demand (a log arriving in pieces, a dropped event stream).

It does not build replies of its own: jobs are the supervisor's `ComputeJob`s, moved by their
own transitions and shown by their own `to_dict`; pages are newest first, as the store's; agent
states are `AgentState`s. `test_fake_contract.py` sends the same requests to it and to the real
supervisor and fails on any difference in the replies' keys and types.

Ownership is enforced as supervisor/requests.py does it: every op about one job first looks
the job up for the caller (`_job`), and another user's job is NotFound like a missing one.
The gateway relies on that (it makes one op per request, with no ownership check of its own
first), so the gateway's cross-user 404 tests test the gateway and this contract together.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

from aiohttp import web

from jobvisor import __version__
from jobvisor.errors import Conflict, InvalidRequest, NotFound, OpError, Unavailable
from jobvisor.ids import JobId, UserId, new_job_id
from jobvisor.codec import decode, encode, pack, to_wire
from jobvisor.limits import IO_CHUNK_BYTES
from jobvisor.protocol.common import PROTOCOL_VERSION, Caller, Reply, WireError
from jobvisor.protocol.events import Event, EventKind, ListEvents, PushEvent
from jobvisor.protocol.job_requests import (
    CancelJobRequest, GetJob, ListFiles, ListJobs, ReadFile, ReadLog, RunAnalysis, SubmitJobs,
)
from jobvisor.protocol.registry import ALLOWED_GATEWAY_REQUESTS
from jobvisor.protocol.system_requests import GetAgents, GetQueue, GetStatus
from jobvisor.resources import Resources
from jobvisor.states import JobState
from supervisor.agents import AgentState
from jobvisor.isotime import iso
from supervisor.compute_job import ComputeJob
from supervisor.event_log import Emitted, number

SECRET_HEADER = "X-Jobvisor-Secret"
CANCEL_DELAY = 0.01  # a running job's cancel is answered first and ends it a moment later


class FakeSupervisor:
    AGENT = "a1"  # the agent every job that left the queue went to

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.jobs: dict[str, ComputeJob] = {}
        self.logs: dict[str, bytearray] = {}
        self.files: dict[str, dict[str, bytes]] = {}
        self.history: dict[str, list[dict]] = {}  # GetJob's `history`, as the real store keeps it
        self.events: list[Event] = []  # every event published, numbered as the store numbers them
        self.events_unreadable_after: int | None = None  # ListEvents from this id on: Unavailable
        self.queue: list[str] = []  # queued job ids, oldest first
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
            reply = Reply(ok=False, error=WireError.of(exc))
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

    def _job(self, caller: Caller, job_id: str) -> ComputeJob:
        """As RequestHandlers._job: the job if the caller owns it or is an admin, else NotFound."""
        job = self.jobs.get(job_id)
        if job is None or not (caller.is_admin or job.owner == caller.user):
            raise NotFound(f"no job {job_id!r}")
        return job

    def job(self, job_id: str) -> dict:
        """A job as the supervisor shows it (with its queue position, and the agent it went to)."""
        job = self.jobs[job_id]
        view = job.to_dict(self.queue.index(job_id) + 1 if job_id in self.queue else None)
        if job.state is not JobState.QUEUED:
            view["agent_id"] = self.AGENT
        return view

    def _submit(self, caller: Caller, spec: Any) -> dict:
        now = time.time()
        resources = Resources.parse(spec.resources)
        job = ComputeJob(
            id=JobId(new_job_id()), owner=UserId(caller.user), code=spec.code,
            spec=ComputeJob.pack_spec(spec.params, resources.to_wire()), driver=spec.driver or "local",
            cpus=resources.cpus, created_at=now, name=spec.name,
            max_retries=spec.max_retries, reason="submitted",
        )
        self.jobs[job.id] = job
        self.queue.append(job.id)
        self.logs[job.id] = bytearray()
        self.files[job.id] = {}
        self.history[job.id] = [{"attempt": 1, "state": "queued", "reason": "submitted", "at": iso(now)}]
        self._record([job.initial_transition()])
        return self.job(job.id)

    async def handle(self, m: Any) -> Any:
        if isinstance(m, SubmitJobs):
            return {"jobs": [self._submit(m.caller, spec) for spec in m.jobs]}
        if isinstance(m, ListJobs):
            ids = sorted(
                (i for i, j in self.jobs.items() if m.caller.is_admin or j.owner == m.caller.user), reverse=True,
            )  # newest first, as the store pages
            if m.states:
                ids = [i for i in ids if str(self.jobs[i].state) in m.states]
            if m.after:
                ids = [i for i in ids if i < m.after]
            if m.name:
                ids = [i for i in ids if self.jobs[i].name == m.name]
            if m.id_prefix:
                ids = [i for i in ids if i.startswith(m.id_prefix)]
            page = ids[: m.limit]
            more = len(ids) > m.limit
            return {"jobs": [self.job(i) for i in page], "next": page[-1] if more else None}
        if isinstance(m, GetJob):
            self._job(m.caller, m.job_id)
            return {**self.job(m.job_id), "history": self.history[m.job_id]}
        if isinstance(m, CancelJobRequest):
            job = self._job(m.caller, m.job_id)
            if job.state.is_terminal:
                raise Conflict(f"job {m.job_id} already ended ({job.state})")
            if job.state is JobState.QUEUED:  # no agent to stop: at once
                self.set_state(m.job_id, "canceled", reason="canceled by user")
            else:  # its agent stops it; the reply shows the job as it is meanwhile
                end = functools.partial(self.set_state, m.job_id, "canceled", reason="canceled by user")
                asyncio.get_running_loop().call_later(CANCEL_DELAY, end)
            return self.job(m.job_id)
        if isinstance(m, ReadLog):
            job = self._job(m.caller, m.job_id)
            deadline = time.monotonic() + m.wait
            while True:
                log = self.logs[m.job_id]
                data = bytes(log[m.offset : m.offset + m.length])
                final = job.state.is_terminal and m.offset + len(data) >= len(log)
                remaining = deadline - time.monotonic()
                if data or final or remaining <= 0:
                    return {"data": data, "offset": m.offset, "size": len(log), "final": final,
                            "state": str(job.state), "exit_code": job.exit_code}
                changed = self._changed.setdefault(m.job_id, asyncio.Event())
                try:
                    await asyncio.wait_for(changed.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
        if isinstance(m, ListFiles):
            self._job(m.caller, m.job_id)
            return {"files": [{"path": p, "size": len(d), "mtime": iso(0.0)} for p, d in sorted(self.files[m.job_id].items())]}
        if isinstance(m, ReadFile):
            self._job(m.caller, m.job_id)
            data = self.files[m.job_id].get(m.path)
            if data is None:
                raise NotFound(f"no file {m.path!r}")
            length = min(m.length, self.io_chunk)
            return {"data": data[m.offset : m.offset + length], "offset": m.offset, "size": len(data)}
        if isinstance(m, RunAnalysis):
            job = self._job(m.caller, m.job_id)
            return {"result": {"job": job.id, "args": m.args}}
        if isinstance(m, GetQueue):
            queued = [self.jobs[i] for i in self.queue if m.caller.is_admin or self.jobs[i].owner == m.caller.user]
            return {
                "drivers": {"local": {"cpus_total": 4, "cpus_used": 0, "queued": len(self.queue)}},
                "jobs": [
                    {"id": j.id, "owner": j.owner, "driver": j.driver, "cpus": j.cpus, "queue_position": i + 1}
                    for i, j in enumerate(queued)
                ],
            }
        if isinstance(m, GetAgents):
            return {"agents": [
                {"id": f"a{n}", "user": user, "kind": "local", "state": str(AgentState.CONNECTED), "pid": n,
                 "host": "h", "jobs": 0, "connected_at": iso(self.started)}
                for n, user in enumerate(("alice", "bob"), start=1)
            ]}
        if isinstance(m, GetStatus):
            counts: dict[str, int] = {}
            for j in self.jobs.values():
                counts[str(j.state)] = counts.get(str(j.state), 0) + 1
            return {"version": __version__, "protocol_version": PROTOCOL_VERSION, "counts": counts,
                    "agents": 0, "uptime": time.time() - self.started, "started_at": iso(self.started),
                    "drivers": {"local": {"limits": "none", "memory": "not enforced", "cpus": "not enforced",
                                          "why": "the fake supervisor runs nothing"}}}
        if isinstance(m, ListEvents):
            if self.events_unreadable_after is not None and m.since >= self.events_unreadable_after:
                raise Unavailable("the database cannot be read: (a test)")
            limit = max(1, min(m.limit, 1000))
            page = [e for e in self.events if e.id > m.since and (m.caller.is_admin or e.owner == m.caller.user)
                    and (not m.job_id or e.job_id == m.job_id)][:limit]
            return {"events": [e.to_json() for e in page], "next": page[-1].id if len(page) == limit else None,
                    "last_id": self.events[-1].id if self.events else 0, "pruned": False}
        if isinstance(m, PushEvent):
            if m.job_id:
                job = self.jobs.get(m.job_id)
                if job is None or job.owner != m.caller.user:
                    raise InvalidRequest(f"you have no job {m.job_id!r}", field="job_id")
            if m.workflow_id:
                raise InvalidRequest(f"you have no workflow {m.workflow_id!r}", field="workflow_id")
            return self._record([Emitted(EventKind.USER, UserId(m.caller.user), m.data, m.job_id or None, None)])[0].to_json()
        raise OpError(f"unhandled {m.TYPE}")

    # ------------------------------------------------------------------ test controls

    def _wake(self, job_id: str) -> None:
        event = self._changed.pop(job_id, None)
        if event is not None:
            event.set()

    def set_state(self, job_id: str, state: str, *, exit_code: int | None = None, reason: str = "",
                  progress: float | None = None, message: str = "") -> None:
        """Move the job as the supervisor would (through `starting` to `running`), record the
        transition in its history and publish it."""
        job = self.jobs[job_id]
        target = JobState(state)
        ran = target is JobState.RUNNING or target in (JobState.COMPLETED, JobState.FAILED, JobState.TIMED_OUT)
        if ran and job.state is JobState.QUEUED:
            self._move(job, JobState.STARTING, f"sent to agent {self.AGENT}")
        if ran and target is not JobState.RUNNING and job.state is JobState.STARTING:
            self._move(job, JobState.RUNNING, "running")  # its start, folded into its end
        if exit_code is not None:
            job.exit_code = exit_code
        if progress is not None:
            job.progress = progress
            job.progress_message = message
        if target is not job.state:
            self._move(job, target, reason or str(target))
        if progress is not None:
            self._record([Emitted(EventKind.PROGRESS, job.owner, {
                "state": job.state.value, "attempt": job.attempt, "progress": progress, "message": message,
            }, job.id, None)])
        self._wake(job_id)

    def _move(self, job: ComputeJob, state: JobState, reason: str) -> None:
        transition = job.move(state, reason, time.time())
        if job.id in self.queue and state is not JobState.QUEUED:
            self.queue.remove(job.id)
        self.history[job.id].append(
            {"attempt": transition.attempt, "state": str(state), "reason": reason, "at": iso(transition.at)}
        )
        self._record([transition])

    def _record(self, sources: list) -> list[Event]:
        """Number events as the store does, keep them (ListEvents) and publish them."""
        events = number(sources, self.events[-1].id + 1 if self.events else 1)
        self.events.extend(events)
        for event in events:
            self.publish(event)
        return events

    def publish(self, event: Event) -> None:
        for queue in self._subscribers:
            queue.put_nowait(event)

    def append_log(self, job_id: str, data: bytes) -> None:
        self.logs[job_id] += data
        self._wake(job_id)
