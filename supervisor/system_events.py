"""`system` events: what an admin action or a timer did, persisted and on the event stream
beside the jobs' transitions (a user sees those of their own jobs and timers; admins see all)."""

from __future__ import annotations

import enum

from jobvisor.ids import UserId
from jobvisor.protocol.events import EventKind
from supervisor.store import Store


class SystemAction(enum.StrEnum):
    """What a `system` event reports (its data's `action`)."""

    QUEUE_CLEAR = "queue_clear"
    AGENT_CANCEL = "agent_cancel"
    AGENT_SHUTDOWN = "agent_shutdown"
    CANCEL_ALL = "cancel_all"
    SHUTDOWN = "shutdown"
    TIMER_FIRED = "timer_fired"
    TIMER_SKIPPED = "timer_skipped"
    TIMER_FAILED = "timer_failed"


def emit_system(store: Store, owner: UserId, action: SystemAction, data: dict, *, workflow_id: str | None = None) -> None:
    """Record a `system` event in the store's next commit (published after it)."""
    store.emit(EventKind.SYSTEM, owner, {"action": str(action), **data}, workflow_id=workflow_id)
