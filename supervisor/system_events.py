"""`system` events: what an admin action or a timer did, on the event stream beside the jobs'
transitions (a user sees those of their own jobs and timers; admins see all).

The store's `emit` (persisted events, with ids) is built beside this module; until it is
there, the event is logged only. That guard lives here alone.
"""

from __future__ import annotations

import enum
import logging
from typing import Any

from jobvisor.ids import UserId

log = logging.getLogger(__name__)


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


def emit_system(store: Any, owner: UserId, action: SystemAction, data: dict, *, workflow_id: str | None = None) -> None:
    """Record a `system` event in the store's next commit (published after it)."""
    payload = {"action": str(action), **data}
    emit = getattr(store, "emit", None)
    if emit is None:
        log.info("system event for %s: %s", owner, payload)
        return
    from jobvisor.protocol import EventKind  # type: ignore[attr-defined]  # lands with the store's emit

    emit(EventKind.SYSTEM, owner, payload, workflow_id=workflow_id)
