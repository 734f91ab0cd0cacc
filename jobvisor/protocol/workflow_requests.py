"""Gateway -> supervisor requests about workflows, and the timers that execute them.

Every reply is a plain JSON-able dict (times as ISO 8601 UTC strings); another user's
workflow is NotFound, like a missing one (admins see all)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from jobvisor.codec import Message
from jobvisor.protocol.common import Caller


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


# --------------------------------------------------------------------------- timers


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
