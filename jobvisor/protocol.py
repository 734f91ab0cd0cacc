"""The wire protocol: every message that crosses a process boundary, declared as a type.

Two channels use it:

* supervisor <-> agent: websocket binary frames. A frame is a msgpack array of messages, so
  many status updates or run ops travel in one frame (batching is what makes thousands of
  short jobs per second possible). `ToAgent` and `FromAgent` are the closed sets per direction.
* gateway -> supervisor: one HTTP request per `GatewayRequest` (msgpack body), answered by a
  `Reply`; committed events flow back on a long-lived stream of `Event`s.

Messages are frozen dataclasses with a `TYPE` tag. They are decoded only at the socket edge
(`decode_frame`, `decode_request`); the rest of the code never sees raw dicts. A message that
is malformed, of an unknown type or larger than the limit raises `ProtocolError`, which the
edge turns into an `ErrorMessage` reply: the peer stays up.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from jobvisor.codec import (  # noqa: F401  (the codec's names, as the protocol's users import them)
    DEFAULT_MAX_MESSAGE_BYTES, Message, decode, decode_frame, encode, encode_frame, from_wire, pack,
    register, to_wire, union_members, unpack,
)
from jobvisor.errors import ErrorKind, OpError
from jobvisor.ids import AgentId, JobId, OpId, UserId
from jobvisor.states import JobState
from jobvisor.isotime import iso
from jobvisor.limits import IO_CHUNK_BYTES

PROTOCOL_VERSION = 2
AGENT_PATH = "/agent"  # the supervisor's websocket for agents
AGENT_ID_HEADER = "X-Jobvisor-Agent"  # the connecting agent's id (its token is the bearer)


# --------------------------------------------------------------------------- shared parts


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
class WireError(Message):
    """How an op failed, as it crosses the wire (in `OpReply` and `Reply`): the receiving side
    raises it again as the `OpError` of that kind, which the gateway maps to an HTTP status."""

    TYPE: ClassVar[str] = "op_error"
    kind: ErrorKind
    detail: str
    field: str | None = None

    @classmethod
    def of(cls, exc: OpError) -> "WireError":
        return cls(exc.kind, exc.detail, exc.field)

    def exception(self) -> OpError:
        return OpError.of_kind(self.kind, self.detail, field=self.field)


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


ToAgent = Union[
    RunJob, InputChunk, StartPrefetched, CancelJob, StatusRequest, AnalysisRequest, IoRequest, KillAgent, ForgetJobs, HelloAck, ErrorMessage,
]
FromAgent = Union[Hello, Ack, StatusUpdate, Progress, LogChunk, OpReply, ErrorMessage]


# --------------------------------------------------------------------------- gateway -> supervisor


@dataclass(frozen=True, slots=True)
class Caller(Message):
    """Who asks: the gateway authenticated them; the supervisor re-checks ownership."""

    TYPE: ClassVar[str] = "caller"
    user: UserId
    is_admin: bool = False


@dataclass(frozen=True, slots=True)
class JobSpec(Message):
    TYPE: ClassVar[str] = "job_spec"
    code: str
    params: Any
    resources: dict = field(default_factory=dict)
    driver: str = ""
    max_retries: int = 0
    name: str = ""
    env: dict = field(default_factory=dict)  # str -> str, set in the job's environment (wins over the code's)
    workdir: str = ""  # run in place there (local driver, a directory `[local] workdirs` allows)
    # end states that start a new attempt while max_retries allows, besides `lost` (always)
    retry_on: list[str] = field(default_factory=list)
    # a job array (`jobvisor.job_arrays` syntax, e.g. "1-100%10"): one job per index
    array: str = ""


@dataclass(frozen=True, slots=True)
class SubmitJobs(Message):
    TYPE: ClassVar[str] = "submit_jobs"
    caller: Caller
    jobs: list[JobSpec]
    upload_id: str = ""  # the files of this upload (UploadInput) become inputs of every job here


@dataclass(frozen=True, slots=True)
class UploadInput(Message):
    """A slice of one file of a multipart submit. The gateway streams each file to the
    supervisor in these (each well under the message limit), which appends them to the
    upload's directory in its state dir; the `SubmitJobs` naming `upload_id` then makes them
    its jobs' inputs. `path` is the file's place in the run dir, checked on both sides.
    The reply: {"size": bytes of that file so far}."""

    TYPE: ClassVar[str] = "upload_input"
    caller: Caller
    upload_id: str
    path: str
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ListJobs(Message):
    TYPE: ClassVar[str] = "list_jobs"
    caller: Caller
    states: list = field(default_factory=list)
    limit: int = 100
    after: str = ""  # paging cursor: the last job id of the previous page
    name: str = ""  # only jobs of this name (exact)
    id_prefix: str = ""  # only jobs whose id starts with this (a short id a person typed)
    array_id: str = ""  # only the elements of this job array


@dataclass(frozen=True, slots=True)
class GetJob(Message):
    TYPE: ClassVar[str] = "get_job"
    caller: Caller
    job_id: JobId


@dataclass(frozen=True, slots=True)
class CancelJobRequest(Message):
    TYPE: ClassVar[str] = "cancel_job"
    caller: Caller
    job_id: JobId


@dataclass(frozen=True, slots=True)
class ResubmitJob(Message):
    """A new job from an old one's spec, with `params` overrides (dotted keys, see
    `jobvisor.job_spec.override_params`). Another user's job is NotFound, as everywhere."""

    TYPE: ClassVar[str] = "resubmit_job"
    caller: Caller
    job_id: JobId
    params: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReadLog(Message):
    TYPE: ClassVar[str] = "read_log"
    caller: Caller
    job_id: JobId
    offset: int = 0
    length: int = IO_CHUNK_BYTES
    wait: float = 0.0  # long-poll: seconds to wait for bytes past `offset` or the job's end


@dataclass(frozen=True, slots=True)
class ListFiles(Message):
    TYPE: ClassVar[str] = "list_files"
    caller: Caller
    job_id: JobId


@dataclass(frozen=True, slots=True)
class ReadFile(Message):
    TYPE: ClassVar[str] = "read_file"
    caller: Caller
    job_id: JobId
    path: str
    offset: int = 0
    length: int = IO_CHUNK_BYTES


@dataclass(frozen=True, slots=True)
class RunAnalysis(Message):
    TYPE: ClassVar[str] = "run_analysis"
    caller: Caller
    job_id: JobId
    args: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GetQueue(Message):
    TYPE: ClassVar[str] = "get_queue"
    caller: Caller


@dataclass(frozen=True, slots=True)
class GetAgents(Message):
    TYPE: ClassVar[str] = "get_agents"
    caller: Caller


@dataclass(frozen=True, slots=True)
class GetStatus(Message):
    TYPE: ClassVar[str] = "get_status"


@dataclass(frozen=True, slots=True)
class ClusterLogin(Message):
    """Log the caller in to a Slurm cluster's login node (the `sbatch_login` op). The password
    and one-time code live only in memory for the SSH connect: never logged, never stored."""

    TYPE: ClassVar[str] = "cluster_login"
    caller: Caller
    cluster: str
    username: str = ""
    password: str = field(default="", repr=False)
    otp: str = field(default="", repr=False)
    use_key: bool = False


@dataclass(frozen=True, slots=True)
class ClusterLogout(Message):
    """Close the caller's SSH connection to a cluster; new agents there need a new login."""

    TYPE: ClassVar[str] = "cluster_logout"
    caller: Caller
    cluster: str


@dataclass(frozen=True, slots=True)
class ListClusters(Message):
    """The configured Slurm clusters and whether the caller is logged in to each."""

    TYPE: ClassVar[str] = "list_clusters"
    caller: Caller


# --------------------------------------------------------------------------- workflows (gateway -> supervisor)
# Every reply is a plain JSON-able dict (times as ISO 8601 UTC strings); another user's
# workflow is NotFound, like a missing one (admins see all).


@dataclass(frozen=True, slots=True)
class PublishWorkflow(Message):
    """Publish a workflow document (the gateway parsed it: `WorkflowDoc.to_json()`). A new name
    makes a workflow at version 1; a name the caller already has publishes its next version
    (Conflict while it runs). With `execute`, a run starts at once."""

    TYPE: ClassVar[str] = "publish_workflow"
    caller: Caller
    document: dict
    message: str = ""
    execute: bool = False


@dataclass(frozen=True, slots=True)
class ListWorkflows(Message):
    TYPE: ClassVar[str] = "list_workflows"
    caller: Caller
    limit: int = 100
    after: str = ""  # paging cursor: the last workflow id of the previous page


@dataclass(frozen=True, slots=True)
class GetWorkflow(Message):
    TYPE: ClassVar[str] = "get_workflow"
    caller: Caller
    workflow_id: str


@dataclass(frozen=True, slots=True)
class ExecuteWorkflow(Message):
    """Start a new run of the workflow's current version (Conflict while one runs)."""

    TYPE: ClassVar[str] = "execute_workflow"
    caller: Caller
    workflow_id: str


@dataclass(frozen=True, slots=True)
class CancelWorkflow(Message):
    """Cancel every unfinished job of the running run."""

    TYPE: ClassVar[str] = "cancel_workflow"
    caller: Caller
    workflow_id: str


@dataclass(frozen=True, slots=True)
class WorkflowStatus(Message):
    TYPE: ClassVar[str] = "workflow_status"
    caller: Caller
    workflow_id: str


@dataclass(frozen=True, slots=True)
class WorkflowHistory(Message):
    TYPE: ClassVar[str] = "workflow_history"
    caller: Caller
    workflow_id: str


@dataclass(frozen=True, slots=True)
class DeleteWorkflow(Message):
    """Delete the workflow and its versions (its jobs stay, as jobs). Conflict while it runs,
    unless `force`, which cancels the run first."""

    TYPE: ClassVar[str] = "delete_workflow"
    caller: Caller
    workflow_id: str
    force: bool = False


WORKFLOW_REQUESTS = (
    PublishWorkflow, ListWorkflows, GetWorkflow, ExecuteWorkflow, CancelWorkflow, WorkflowStatus, WorkflowHistory,
    DeleteWorkflow,
)


# ----------------------------------------------------------- orchestrator: queue, agents, admin, timers


@dataclass(frozen=True, slots=True)
class ClearQueue(Message):
    """Cancel queued and waiting jobs: the caller's, or (admins) everyone's, or `user`'s."""

    TYPE: ClassVar[str] = "clear_queue"
    caller: Caller
    user: str = ""  # admins: only this user's; empty: the caller's (admins: everyone's)


@dataclass(frozen=True, slots=True)
class CancelAgentJobs(Message):
    """Cancel every job placed with one agent (running, starting, sent ahead)."""

    TYPE: ClassVar[str] = "cancel_agent_jobs"
    caller: Caller
    agent_id: AgentId


@dataclass(frozen=True, slots=True)
class ShutdownAgent(Message):
    """Cancel an agent's jobs and stop it through its driver; a new one is acquired when needed."""

    TYPE: ClassVar[str] = "shutdown_agent"
    caller: Caller
    agent_id: AgentId


@dataclass(frozen=True, slots=True)
class CancelAll(Message):
    """Admins: cancel every unfinished job of every user."""

    TYPE: ClassVar[str] = "cancel_all"
    caller: Caller


@dataclass(frozen=True, slots=True)
class ShutdownServer(Message):
    """Admins: stop `jobvisor up` as SIGTERM does, once this request is answered."""

    TYPE: ClassVar[str] = "shutdown_server"
    caller: Caller


@dataclass(frozen=True, slots=True)
class CreateTimer(Message):
    """Execute a workflow once `at` (ISO 8601), `every` interval (seconds or "1h30m"), or on a
    5-field `cron` expression (UTC): exactly one of the three."""

    TYPE: ClassVar[str] = "create_timer"
    caller: Caller
    workflow_id: str
    at: str = ""
    every: str = ""
    cron: str = ""


@dataclass(frozen=True, slots=True)
class ListTimers(Message):
    TYPE: ClassVar[str] = "list_timers"
    caller: Caller


@dataclass(frozen=True, slots=True)
class DeleteTimer(Message):
    TYPE: ClassVar[str] = "delete_timer"
    caller: Caller
    timer_id: str


ORCHESTRATOR_REQUESTS = (
    ClearQueue, CancelAgentJobs, ShutdownAgent, CancelAll, ShutdownServer, CreateTimer, ListTimers, DeleteTimer,
)


@dataclass(frozen=True, slots=True)
class ListEvents(Message):
    """The caller's committed events after id `since`, oldest first (admins: everyone's);
    `job_id`: that job's only. Reply: {"events": [Event.to_json()...], "next": the page's
    last id if more may follow, else None, "last_id": the newest id committed, anyone's
    (where a stream that starts now takes over), "pruned": whether events after `since` were
    pruned already}."""

    TYPE: ClassVar[str] = "list_events"
    caller: Caller
    since: int = 0
    limit: int = 100
    job_id: str = ""


@dataclass(frozen=True, slots=True)
class PushEvent(Message):
    """A user event (POST /events): `data` as given, about one of the caller's jobs or
    workflows if named. Reply: the committed event (Event.to_json())."""

    TYPE: ClassVar[str] = "push_event"
    caller: Caller
    data: dict
    job_id: str = ""
    workflow_id: str = ""


GatewayRequest = Union[
    SubmitJobs, ResubmitJob, UploadInput, ListJobs, GetJob, CancelJobRequest, ReadLog, ListFiles, ReadFile, RunAnalysis,
    GetQueue, GetAgents, GetStatus, ClusterLogin, ClusterLogout, ListClusters, ListEvents, PushEvent,
    PublishWorkflow, ListWorkflows, GetWorkflow, ExecuteWorkflow, CancelWorkflow, WorkflowStatus, WorkflowHistory,
    DeleteWorkflow,
    ClearQueue, CancelAgentJobs, ShutdownAgent, CancelAll, ShutdownServer, CreateTimer, ListTimers, DeleteTimer,
]


@dataclass(frozen=True, slots=True)
class Reply(Message):
    """The supervisor's answer to one `GatewayRequest`: `data` on success, else `error`."""

    TYPE: ClassVar[str] = "reply"
    ok: bool
    data: Any = None
    error: WireError | None = None


class EventKind(enum.StrEnum):
    """What an event is about. Job transitions and progress are made by the store itself;
    the others are emitted (`supervisor.store.Store.emit`) by the part that owns the matter."""

    TRANSITION = "transition"  # a job changed state: data {state, attempt, reason, exit_code}
    PROGRESS = "progress"  # a job reported progress: data {state, attempt, progress, message}
    WORKFLOW = "workflow"  # a workflow changed (state, counts)
    USER = "user"  # posted by a user (POST /events): data is theirs
    SYSTEM = "system"  # timers and admin actions


@dataclass(frozen=True, slots=True)
class Event(Message):
    """One committed event, pushed to the gateway's subscribers and kept in the `events` table.

    `id` is assigned by the store, increasing in commit order and continued across restarts,
    so a stream resumes from the last id it saw; `owner` is whose it is (they and admins see
    it). `at` is Unix seconds here; users see ISO 8601 UTC (`to_json`)."""

    TYPE: ClassVar[str] = "event"
    id: int
    kind: EventKind
    owner: UserId
    at: float
    job_id: JobId | None = None
    workflow_id: str | None = None
    data: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """The event as the API shows it (one shape for every kind)."""
        return {
            "id": self.id, "kind": self.kind.value, "at": iso(self.at), "owner": self.owner,
            "job_id": self.job_id, "workflow_id": self.workflow_id, "data": self.data,
        }


# --------------------------------------------------------------------------- registry

register(
    JobReport, InputFile, InputChunk, RunJob, StartPrefetched, CancelJob, StatusRequest, AnalysisRequest, IoRequest, KillAgent, ForgetJobs, HelloAck,
    Hello, Ack, StatusUpdate, Progress, LogChunk, OpReply, WireError, ErrorMessage, Caller, JobSpec,
    SubmitJobs, UploadInput, ListJobs, GetJob, CancelJobRequest, ReadLog, ListFiles, ReadFile, RunAnalysis,
    GetQueue, GetAgents, GetStatus, Reply, Event, ClusterLogin, ClusterLogout, ListClusters, ListEvents, PushEvent,
    *WORKFLOW_REQUESTS,
    *ORCHESTRATOR_REQUESTS,
    ResubmitJob,
)


ALLOWED_FROM_AGENT = frozenset(c.TYPE for c in union_members(FromAgent))
ALLOWED_TO_AGENT = frozenset(c.TYPE for c in union_members(ToAgent))
ALLOWED_GATEWAY_REQUESTS = frozenset(c.TYPE for c in union_members(GatewayRequest))

