"""The one place that knows every message type of the wire protocol.

Here each channel's closed set is named (`ToAgent`, `FromAgent`, `GatewayRequest`), every
type is registered with the codec, and each receiving edge finds the tags it decodes with
(`ALLOWED_*`). Every edge decodes with one of those sets, so importing them is what
registers the types: no module needs to remember to.

A new message is declared in its channel's module (see `jobvisor.protocol`) and named here,
in its channel's set; one that only travels inside another goes in `PARTS`.
"""

from __future__ import annotations

from typing import Union

from jobvisor.codec import register, union_members
from jobvisor.protocol.agent_wire import (
    Ack, AnalysisRequest, CancelJob, ErrorMessage, ForgetJobs, Hello, HelloAck, InputChunk, InputFile, IoRequest,
    JobReport, KillAgent, LogChunk, OpReply, Progress, RunJob, StartPrefetched, StatusRequest, StatusUpdate,
)
from jobvisor.protocol.common import Caller, Reply, WireError
from jobvisor.protocol.events import Event, ListEvents, PushEvent
from jobvisor.protocol.job_requests import (
    CancelJobRequest, GetJob, JobSpec, ListFiles, ListJobs, ReadFile, ReadLog, ResubmitJob, RunAnalysis, SubmitJobs,
    UploadInput,
)
from jobvisor.protocol.system_requests import (
    CancelAgentJobs, CancelAll, ClearQueue, ClusterLogin, ClusterLogout, GetAgents, GetQueue, GetStatus, ListClusters,
    ShutdownAgent, ShutdownServer,
)
from jobvisor.protocol.workflow_requests import (
    CancelWorkflow, CreateTimer, DeleteTimer, DeleteWorkflow, ExecuteWorkflow, GetWorkflow, ListTimers, ListWorkflows,
    PublishWorkflow, WorkflowHistory, WorkflowStatus,
)

# supervisor -> agent, and agent -> supervisor (`agent_wire`)
ToAgent = Union[
    RunJob, InputChunk, StartPrefetched, CancelJob, StatusRequest, AnalysisRequest, IoRequest, KillAgent, ForgetJobs,
    HelloAck, ErrorMessage,
]
FromAgent = Union[Hello, Ack, StatusUpdate, Progress, LogChunk, OpReply, ErrorMessage]

# gateway -> supervisor, each answered by a `Reply`
GatewayRequest = Union[
    # job_requests
    SubmitJobs, ResubmitJob, UploadInput, ListJobs, GetJob, CancelJobRequest, ReadLog, ListFiles, ReadFile, RunAnalysis,
    # system_requests
    GetQueue, GetAgents, GetStatus, ClusterLogin, ClusterLogout, ListClusters,
    ClearQueue, CancelAgentJobs, ShutdownAgent, CancelAll, ShutdownServer,
    # workflow_requests
    PublishWorkflow, ListWorkflows, GetWorkflow, ExecuteWorkflow, CancelWorkflow, WorkflowStatus, WorkflowHistory,
    DeleteWorkflow, CreateTimer, ListTimers, DeleteTimer,
    # events
    ListEvents, PushEvent,
]

# supervisor -> gateway: the answer to a request, and the committed events it streams
ToGateway = Union[Reply, Event]

# messages that travel only inside others
PARTS = (JobReport, InputFile, WireError, Caller, JobSpec)

register(
    *union_members(ToAgent), *union_members(FromAgent), *union_members(GatewayRequest), *union_members(ToGateway),
    *PARTS,
)

ALLOWED_FROM_AGENT = frozenset(c.TYPE for c in union_members(FromAgent))
ALLOWED_TO_AGENT = frozenset(c.TYPE for c in union_members(ToAgent))
ALLOWED_GATEWAY_REQUESTS = frozenset(c.TYPE for c in union_members(GatewayRequest))
ALLOWED_REPLY = frozenset({Reply.TYPE})  # what the gateway reads back from /internal/op
ALLOWED_EVENTS = frozenset({Event.TYPE})  # what the gateway reads on /internal/events
