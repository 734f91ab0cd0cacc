"""Job states, exactly as in DESIGN.md, and the transitions allowed between them.

    waiting -> queued -> starting -> running -> completed | failed | canceled | timed_out | lost

Any non-terminal state may also go straight to `canceled` (user cancel), `failed` (an error
before the run began, such as an unknown code) or `lost` (the agent vanished). `queued` is
re-entered by a retry, which starts a new attempt, and from `starting` by a run its agent
said it never got (or holds in its queue, not started).
"""

from __future__ import annotations

import enum


class JobState(enum.StrEnum):
    WAITING = "waiting"
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    TIMED_OUT = "timed_out"
    LOST = "lost"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def is_active(self) -> bool:
        """Sent to an agent and not yet finished: the agent is the one who knows the truth."""
        return self in (JobState.STARTING, JobState.RUNNING)


TERMINAL_STATES = frozenset(
    {JobState.COMPLETED, JobState.FAILED, JobState.CANCELED, JobState.TIMED_OUT, JobState.LOST}
)

# The end states a job may be retried from (a job's `retry_on`); `lost` is always retried
# while `max_retries` allows: the job itself had no part in it.
RETRY_ON_STATES = frozenset({JobState.LOST, JobState.FAILED, JobState.TIMED_OUT})

_ENDINGS = frozenset({JobState.CANCELED, JobState.FAILED, JobState.LOST})

ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.WAITING: frozenset({JobState.QUEUED}) | _ENDINGS,
    JobState.QUEUED: frozenset({JobState.STARTING}) | _ENDINGS,
    JobState.STARTING: frozenset({JobState.RUNNING, JobState.QUEUED}) | TERMINAL_STATES,
    JobState.RUNNING: TERMINAL_STATES,
}


def can_transition(current: JobState, new: JobState) -> bool:
    return new in ALLOWED_TRANSITIONS.get(current, frozenset())


class WorkflowState(enum.StrEnum):
    """A workflow as a whole (DESIGN.md): published and not executing (`draft`), executing
    (`running`), or its last run's outcome. A run ends `completed` when every job completed,
    `failed` when any did not (failed, timed out, lost, or canceled by a failed dependency),
    `canceled` when the workflow itself was canceled."""

    DRAFT = "draft"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_finished(self) -> bool:
        return self in (WorkflowState.COMPLETED, WorkflowState.FAILED, WorkflowState.CANCELED)
