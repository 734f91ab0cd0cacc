"""ComputeJob: the supervisor's in-memory owner of one job's state.

Transitions are plain synchronous methods, so no other coroutine can interleave halfway
through one. Each returns the `Transition` to persist; the caller hands it to the store, and
the event is published only once the store has committed it.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from drivers.base import split_target
from jobvisor.ids import AgentId, JobId, UserId
from jobvisor.isotime import iso
from jobvisor.states import JobState, can_transition

if TYPE_CHECKING:
    from supervisor.ops import RunOp

log = logging.getLogger(__name__)


class IllegalTransition(RuntimeError):
    """A bug: the supervisor tried a move DESIGN.md does not allow."""


@dataclass(frozen=True, slots=True)
class Prefetched:
    """Sent ahead into `agent`'s FIFO while every slot was busy: it holds no slot, and to its
    user it is still `queued` (with its position). The agent may start it the moment one of
    its jobs ends, so from here on the job may have started: it goes back to the queue under
    the same attempt only if that agent's own process says it never got it."""

    agent: AgentId


@dataclass(frozen=True, slots=True)
class Dispatched:
    """Sent to `agent` to run, holding its cpu slots in `run_op` (`starting` or `running`)."""

    agent: AgentId
    run_op: "RunOp"


@dataclass(frozen=True, slots=True)
class Restored:
    """Read from the database at start-up: it was sent to `agent` (None: no agent was recorded,
    for a job whose row says it is active) before the supervisor stopped. Recovery turns it
    into `Dispatched` or `Prefetched`, or ends it, before anything else runs."""

    agent: AgentId | None


# Where a job is: nowhere (waiting or queued here), or with an agent. A job with an agent may
# have started there; it is queued again under the same attempt only when that agent's process
# said it never got it (see supervisor.recovery).
Placement = Prefetched | Dispatched | Restored | None


@dataclass(frozen=True, slots=True)
class WorkflowMember:
    """A job of a workflow: job `name` of run `run` of workflow `workflow_id`."""

    workflow_id: str
    name: str
    run: int


@dataclass(frozen=True, slots=True)
class ArrayMember:
    """Element `index` of a job array (`array_id`: the id of its first job). `cap`: how many
    of the array may hold slots at once (0: no cap); every element carries it, so the
    scheduler knows it without looking the array up, and a restart keeps it."""

    array_id: str
    index: int
    cap: int = 0


# What larger whole a job belongs to, if any (one slot on every job, None for most).
Member = WorkflowMember | ArrayMember | None

# What a job retries on unless it asks for more (`retry_on`): an attempt its agent lost.
RETRY_LOST: frozenset[JobState] = frozenset({JobState.LOST})


@dataclass(frozen=True, slots=True)
class Transition:
    job_id: JobId
    owner: UserId
    attempt: int
    state: JobState
    reason: str
    at: float
    exit_code: int | None = None
    previous: JobState | None = None  # the state it left; None for a new job (keeps the counts)
    workflow_id: str | None = None  # the job's workflow, if it has one (its events carry it)


class ComputeJob:
    """One job. `spec` keeps params and resources packed, and `__slots__` keeps the rest small:
    a queue of 100,000 jobs is a normal day (`bench/memory` measures the cost of one)."""

    __slots__ = (
        "id", "owner", "name", "code", "spec", "driver", "cpus", "max_retries", "state", "attempt",
        "reason", "exit_code", "result", "info", "created_at", "started_at",
        "finished_at", "updated_at", "progress", "progress_message", "cancel_reason", "placement",
        "log_size", "member", "retry_on", "retry_at", "interrupted",
    )

    def __init__(
        self, *, id: JobId, owner: UserId, code: str, spec: bytes, driver: str, cpus: int,
        created_at: float, name: str = "", max_retries: int = 0, state: JobState = JobState.QUEUED,
        attempt: int = 1, reason: str = "", exit_code: int | None = None, result: Any = None,
        agent_id: AgentId | None = None, info: dict | None = None, started_at: float | None = None,
        finished_at: float | None = None, updated_at: float | None = None, member: Member = None,
        retry_on: frozenset[JobState] = RETRY_LOST, retry_at: float | None = None, interrupted: int = 0,
    ) -> None:
        self.id = id
        self.owner = owner
        self.name = name
        self.code = code
        self.spec = spec
        self.driver = driver
        self.cpus = cpus
        self.max_retries = max_retries
        self.state = state
        self.attempt = attempt
        self.reason = reason
        self.exit_code = exit_code
        self.result = result
        self.placement: Placement = Restored(agent_id) if agent_id is not None or state.is_active else None
        self.info = info
        self.created_at = created_at
        self.started_at = started_at
        self.finished_at = finished_at
        self.updated_at = updated_at if updated_at is not None else created_at
        self.progress: float | None = None
        self.progress_message = ""
        self.cancel_reason: str | None = None
        self.log_size = 0
        self.member = member
        self.retry_on = retry_on  # the end states that start a new attempt while retries remain
        self.retry_at = retry_at  # queued, waiting out a retry's backoff until then (not in a queue)
        self.interrupted = interrupted  # attempts a planned stop ended: not counted against max_retries

    @property
    def agent_id(self) -> AgentId | None:
        """The agent the job was sent to (persisted: after a crash, the one to ask about it)."""
        return self.placement.agent if self.placement is not None else None

    @property
    def workflow_id(self) -> str | None:
        member = self.member
        return member.workflow_id if type(member) is WorkflowMember else None

    @property
    def run_op(self) -> "RunOp | None":
        return self.placement.run_op if isinstance(self.placement, Dispatched) else None

    # ------------------------------------------------------------------ spec

    @staticmethod
    def pack_spec(params: Any, resources: dict, extra: dict | None = None) -> bytes:
        """`extra`: what few jobs have (env, workdir, inputs as [path, size] pairs), kept
        only when there is some, so a plain job's spec stays as small as before."""
        return msgpack.packb((params, resources, extra) if extra else (params, resources), use_bin_type=True)

    def unpack_spec(self) -> tuple[Any, dict]:
        spec = msgpack.unpackb(self.spec, raw=False, strict_map_key=False)
        return spec[0], spec[1]

    def unpack_all(self) -> tuple[Any, dict, dict]:
        """params, resources and the extra fields (empty for most jobs)."""
        spec = msgpack.unpackb(self.spec, raw=False, strict_map_key=False)
        return spec[0], spec[1], (spec[2] if len(spec) > 2 and spec[2] else {})

    # ------------------------------------------------------------------ transitions

    def move(self, new: JobState, reason: str, now: float) -> Transition:
        if not can_transition(self.state, new):
            raise IllegalTransition(f"job {self.id}: {self.state} -> {new} is not allowed")
        previous, self.state = self.state, new
        self.reason = reason
        self.updated_at = now
        if new is JobState.RUNNING and self.started_at is None:
            self.started_at = now
        if new.is_terminal:
            self.finished_at = now
        return Transition(self.id, self.owner, self.attempt, new, reason, now, self.exit_code, previous, self.workflow_id)

    def initial_transition(self) -> Transition:
        return Transition(self.id, self.owner, self.attempt, self.state, self.reason, self.created_at,
                          workflow_id=self.workflow_id)

    def retry(self, reason: str, now: float, delay: float = 0.0) -> Transition:
        """A new attempt: the previous one ended in one of `retry_on` and retries remain. With
        a `delay`, it waits that long (its backoff) before it may queue: `retry_at`."""
        self.attempt += 1
        self.retry_at = now + delay if delay > 0 else None
        self.exit_code = None
        self.result = None
        self.started_at = None
        self.finished_at = None
        self.placement = None
        self.progress = None
        self.progress_message = ""
        self.log_size = 0
        previous, self.state = self.state, JobState.QUEUED
        self.reason = reason
        self.updated_at = now
        return Transition(self.id, self.owner, self.attempt, JobState.QUEUED, reason, now, None, previous, self.workflow_id)

    def retry_interrupted(self, reason: str, now: float) -> Transition:
        """A new attempt, at once, for one a planned stop of the supervisor ended: the job did
        nothing wrong, so this attempt is not one of its `max_retries`."""
        self.interrupted += 1
        return self.retry(reason, now)

    @property
    def retries_left(self) -> bool:
        return self.attempt - self.interrupted <= self.max_retries

    @property
    def attempts_allowed(self) -> int:
        """The attempt number its last retry may reach (`max_retries` + 1, plus the attempts
        planned stops interrupted)."""
        return self.max_retries + 1 + self.interrupted

    def retries_after(self, state: JobState) -> bool:
        """Whether an attempt that ended in `state` starts another one: one of `retry_on`
        (lost always), retries left, and no cancel asked for."""
        return state in self.retry_on and self.retries_left and self.cancel_reason is None

    # ------------------------------------------------------------------ views

    # the jobs table's columns: set once at submit, and changed by transitions
    FIXED_COLUMNS = (
        "id", "owner", "name", "code", "spec", "driver", "cpus", "max_retries", "created_at",
        "workflow_id", "workflow_job", "workflow_run", "array_id", "array_index", "array_cap", "retry_on",
    )
    MUTABLE_COLUMNS = (
        "state", "attempt", "reason", "exit_code", "result", "agent_id", "info", "started_at",
        "finished_at", "updated_at", "progress", "progress_message", "retry_at", "interrupted",
    )
    JSON_COLUMNS = ("result", "info")

    def fixed_values(self) -> tuple:
        """The FIXED_COLUMNS' values, in their order."""
        member = self.member
        if isinstance(member, WorkflowMember):
            groups: tuple = (member.workflow_id, member.name, member.run, None, None, None)
        elif isinstance(member, ArrayMember):
            groups = (None, None, None, member.array_id, member.index, member.cap or None)
        else:
            groups = (None, None, None, None, None, None)
        return (self.id, self.owner, self.name, self.code, self.spec, self.driver, self.cpus, self.max_retries,
                self.created_at) + groups + (retry_on_column(self.retry_on),)

    def mutable_values(self) -> tuple:
        """The MUTABLE_COLUMNS' values, in their order (JSON columns as Python values)."""
        return (self.state.value, self.attempt, self.reason, self.exit_code, self.result, self.agent_id, self.info,
                self.started_at, self.finished_at, self.updated_at, self.progress, self.progress_message,
                self.retry_at, self.interrupted)

    def row(self) -> dict:
        """The mutable columns, as one executemany row."""
        return {"_id": self.id, **dict(zip(self.MUTABLE_COLUMNS, self.mutable_values()))}

    def insert_row(self) -> dict:
        return dict(zip(self.FIXED_COLUMNS + self.MUTABLE_COLUMNS, self.fixed_values() + self.mutable_values()))

    @classmethod
    def from_row(cls, row: Any) -> "ComputeJob":
        job = cls(
            id=row.id, owner=row.owner, name=row.name, code=row.code, spec=row.spec, driver=row.driver,
            cpus=row.cpus, max_retries=row.max_retries, state=JobState(row.state), attempt=row.attempt,
            reason=row.reason, exit_code=row.exit_code, result=row.result, agent_id=row.agent_id,
            info=row.info, created_at=row.created_at, started_at=row.started_at,
            finished_at=row.finished_at, updated_at=row.updated_at, member=member_of_row(row),
            retry_on=retry_on_of(row.retry_on), retry_at=row.retry_at, interrupted=row.interrupted or 0,
        )
        job.progress = row.progress
        job.progress_message = row.progress_message or ""
        return job

    def to_dict(self, queue_position: int | None = None) -> dict:
        params, resources, extra = self.unpack_all()
        return {
            "id": self.id, "state": str(self.state), "code": self.code, "params": params,
            "resources": resources, "driver": split_target(self.driver)[0], "owner": self.owner, "name": self.name,
            "exit_code": self.exit_code, "result": self.result, "reason": self.reason,
            "queue_position": queue_position, "created_at": iso(self.created_at),
            "started_at": iso(self.started_at), "finished_at": iso(self.finished_at),
            "attempt": self.attempt, "max_retries": self.max_retries, "progress": self.progress,
            "progress_message": self.progress_message, "info": self.info or {},
            # a job sent ahead is queued, and where it waits is the scheduler's business
            "agent_id": None if isinstance(self.placement, Prefetched) else self.agent_id,
            "retry_on": sorted(s.value for s in self.retry_on), "retry_at": iso(self.retry_at),
            **member_view(self.member),
            **extra_view(extra),
        }


def extra_view(extra: dict) -> dict:
    """The API's fields for a job's env, workdir and inputs (absent when it has none)."""
    out: dict = {}
    if extra.get("env"):
        out["env"] = extra["env"]
    if extra.get("workdir"):
        out["workdir"] = extra["workdir"]
    if extra.get("inputs"):
        out["inputs"] = [{"path": path, "size": size} for path, size in extra["inputs"]]
    return out


def member_of_row(row: Any) -> Member:
    if row.workflow_id is not None:
        return WorkflowMember(row.workflow_id, row.workflow_job or "", row.workflow_run or 1)
    if row.array_id is not None:
        return ArrayMember(row.array_id, row.array_index or 0, row.array_cap or 0)
    return None


def member_view(member: Member) -> dict:
    """The API's fields for what a job belongs to (absent for a lone job)."""
    if isinstance(member, WorkflowMember):
        return {"workflow_id": member.workflow_id, "workflow_job": member.name, "workflow_run": member.run}
    if isinstance(member, ArrayMember):
        return {"array_id": member.array_id, "array_index": member.index, "array_cap": member.cap or None}
    return {}


@functools.lru_cache(maxsize=64)  # a few distinct sets, shared by every job that has one
def retry_on_of(column: str | None) -> frozenset[JobState]:
    """The `retry_on` column ("failed,timed_out", or null) -> the states that retry (lost always)."""
    if not column:
        return RETRY_LOST
    return RETRY_LOST | frozenset(JobState(name) for name in column.split(","))


def retry_on_column(states: frozenset[JobState]) -> str | None:
    """What the `retry_on` column keeps: the states besides `lost`, or null for none."""
    extra = sorted(s.value for s in states if s is not JobState.LOST)
    return ",".join(extra) or None
