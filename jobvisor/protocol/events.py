"""Events: what the supervisor commits and streams to the gateway (`Event`), and the gateway's
requests that read past events and post a user's own."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar

from jobvisor.codec import Message
from jobvisor.ids import JobId, UserId
from jobvisor.isotime import iso
from jobvisor.protocol.common import Caller


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
