"""The supervisor <-> agent channel: the messages of the agents' websocket.

A frame is a msgpack array of these, in either direction; `ToAgent` and `FromAgent`
(`jobvisor.protocol.registry`) are the closed sets per direction. A message of a new kind of
agent (a runner, a pilot) goes here, in its direction's section.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar

from jobvisor.codec import Message
from jobvisor.ids import AgentId, JobId, OpId
from jobvisor.limits import IO_CHUNK_BYTES
from jobvisor.protocol.common import WireError
from jobvisor.states import JobState

AGENT_PATH = "/agent"  # the supervisor's websocket for agents
AGENT_ID_HEADER = "X-Jobvisor-Agent"  # the connecting agent's id (its token is the bearer)


# --------------------------------------------------------------------------- job reports (in Hello, StatusUpdate)


@dataclass(frozen=True, slots=True)
class JobReport(Message):
    """What an agent knows about one job: sent in `Hello` so a restarted supervisor can
    reconcile, and in `StatusUpdate` for every change."""

    TYPE: ClassVar[str] = "job_report"
    job_id: JobId
    attempt: int
    state: JobState
    reason: str = ""
    exit_code: int | None = None
    result: Any = None
    at: float = 0.0
    log_size: int = 0
    info: dict = field(default_factory=dict)  # driver facts: pid, slurm_job_id, slurm_state...
    # When the attempt started running, if it did. A terminal report carries it so that a
    # start and an end queued for the same frame can travel as the end alone (the agent's
    # outbox folds them): the supervisor records the start from it first.
    started_at: float | None = None
    # Sent ahead (RunJob.prefetched) and not started: it waits in the agent's FIFO.
    prefetched: bool = False


# --------------------------------------------------------------------------- supervisor -> agent


@dataclass(frozen=True, slots=True)
class InputFile(Message):
    """A file the agent places in the job's run dir at `path` (relative, inside the run dir)
    before the job starts: `data` is written; `source` (a path the agent can see: the same host,
    a mount, a shared file system) is hard-linked, or copied where a link is not possible.
    With neither, the file was sent ahead in `InputChunk` messages (too big for one message)
    and the agent only checks that it is there. An input that cannot be placed fails the job
    with a reason naming the file."""

    TYPE: ClassVar[str] = "input_file"
    path: str
    data: bytes | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class InputChunk(Message):
    """Bytes `offset`.. of an input too big to travel inside its `RunJob` (the chunks of a
    file arrive in order, before the run that names it): the agent writes them into the run
    dir, creating the file at offset 0."""

    TYPE: ClassVar[str] = "input_chunk"
    job_id: JobId
    attempt: int
    run_dir: str
    path: str
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class RunJob(Message):
    """Run a job. With `prefetched`, the agent keeps it in a FIFO and starts the oldest
    prefetched job whenever one of its started jobs ends: the supervisor sends work ahead, so
    a freed cpu slot is reused at once instead of after a round trip. The agent reports the
    start (`running`) in the same frame as the end that made room, and the supervisor moves
    the freed slot to it; `StartPrefetched` starts a prefetched job when a slot is free elsewhere."""

    TYPE: ClassVar[str] = "run"
    job_id: JobId
    attempt: int
    code: str
    params: Any
    resources: dict
    run_dir: str
    prefetched: bool = False
    inputs: list[InputFile] = field(default_factory=list)  # placed in the run dir before the start
    env: dict = field(default_factory=dict)  # the job's own variables (JobSpec.env), over the code's
    workdir: str = ""  # run in this directory instead of the run dir (a local job, where allowed)
    array_index: int | None = None  # an array's element: the job sees it as JOBVISOR_ARRAY_INDEX


@dataclass(frozen=True, slots=True)
class StartPrefetched(Message):
    """A slot is free for this prefetched job: start it now (nothing if it already started or ended)."""

    TYPE: ClassVar[str] = "start_prefetched"
    job_id: JobId


@dataclass(frozen=True, slots=True)
class CancelJob(Message):
    TYPE: ClassVar[str] = "cancel"
    job_id: JobId
    reason: str = "canceled by user"


@dataclass(frozen=True, slots=True)
class StatusRequest(Message):
    TYPE: ClassVar[str] = "status"
    op_id: OpId


@dataclass(frozen=True, slots=True)
class AnalysisRequest(Message):
    TYPE: ClassVar[str] = "analysis"
    op_id: OpId
    job_id: JobId
    code: str
    run_dir: str
    args: dict = field(default_factory=dict)
    timeout: float = 60.0


class IoAction(enum.StrEnum):
    LIST = "list"  # every file of the run dir, with sizes
    READ = "read"  # a slice of one file


@dataclass(frozen=True, slots=True)
class IoRequest(Message):
    """Read from a run dir."""

    TYPE: ClassVar[str] = "io"
    op_id: OpId
    job_id: JobId
    run_dir: str
    action: IoAction
    path: str = ""
    offset: int = 0
    length: int = IO_CHUNK_BYTES


@dataclass(frozen=True, slots=True)
class KillAgent(Message):
    TYPE: ClassVar[str] = "kill"
    reason: str = ""
    cancel_jobs: bool = True


@dataclass(frozen=True, slots=True)
class ForgetJobs(Message):
    """The supervisor committed these jobs' terminal states: the agent may drop its copies.

    Until then an agent keeps every terminal report and re-sends it in its next `Hello`, so a
    status that was in flight when a connection or the supervisor died is never lost."""

    TYPE: ClassVar[str] = "forget"
    job_ids: list[JobId]


@dataclass(frozen=True, slots=True)
class HelloAck(Message):
    """Sent after `Hello`: tells the agent from which byte to resend each job's log, and
    which of its jobs the supervisor no longer wants (finished or unknown)."""

    TYPE: ClassVar[str] = "hello_ack"
    log_offsets: dict = field(default_factory=dict)
    forget: list[JobId] = field(default_factory=list)


# --------------------------------------------------------------------------- agent -> supervisor


@dataclass(frozen=True, slots=True)
class Hello(Message):
    TYPE: ClassVar[str] = "hello"
    agent_id: AgentId
    protocol_version: int
    pid: int
    hostname: str
    jobs: list[JobReport] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Ack(Message):
    """The agent has the run. Its first report acknowledges a run as well, so an Ack is sent
    only where that report may take a while (the Slurm agent's, until sbatch answers) and in
    answer to a run received again (with the run's state). The local agent reports a start at
    once: an Ack per run there was one message more per job for both sides under a burst.
    The supervisor waits for neither."""

    TYPE: ClassVar[str] = "ack"
    job_id: JobId
    attempt: int


@dataclass(frozen=True, slots=True)
class StatusUpdate(Message):
    TYPE: ClassVar[str] = "status_update"
    report: JobReport


@dataclass(frozen=True, slots=True)
class Progress(Message):
    TYPE: ClassVar[str] = "progress"
    job_id: JobId
    attempt: int
    fraction: float
    message: str = ""


@dataclass(frozen=True, slots=True)
class LogChunk(Message):
    """Bytes `offset`..`offset+len(data)` of the job's output log (the file in its run dir)."""

    TYPE: ClassVar[str] = "log"
    job_id: JobId
    attempt: int
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class OpReply(Message):
    TYPE: ClassVar[str] = "op_reply"
    op_id: OpId
    ok: bool
    data: Any = None
    error: WireError | None = None


@dataclass(frozen=True, slots=True)
class ErrorMessage(Message):
    """A message the peer sent could not be handled; the connection stays open."""

    TYPE: ClassVar[str] = "error"
    detail: str
    ref_type: str = ""
