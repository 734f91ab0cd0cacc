"""Ended jobs whose log is still on its way: an agent reports a job's end at once, with the
log's final size, and the bytes it had not sent yet follow the end (a job that printed 150 MB
in a second would otherwise stay `running` until they all arrived).

A tail is kept from the end until the log store holds the final size, and is given up when
its agent is gone for good. While it is kept, log bytes from that agent for that attempt are
taken although the job has ended, a reconnecting agent is told where the log goes on, and the
log route knows the final size it waits for (`supervisor.requests.read_log`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from jobvisor.ids import AgentId, JobId

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Tail:
    job_id: JobId
    agent_id: AgentId
    attempt: int
    final_size: int  # what the agent reported with the end
    stored: int  # what the log store holds (committed)


class LogTails:
    def __init__(self) -> None:
        self._tails: dict[JobId, Tail] = {}

    def __len__(self) -> int:
        return len(self._tails)

    def expect(self, job_id: JobId, agent_id: AgentId, attempt: int, final_size: int, stored: int) -> None:
        """A job ended with `final_size` bytes of log, of which the store holds `stored`."""
        if final_size > stored:
            self._tails[job_id] = Tail(job_id, agent_id, attempt, final_size, stored)
        else:
            self._tails.pop(job_id, None)

    def of(self, job_id: JobId, agent_id: AgentId, attempt: int) -> Tail | None:
        """The tail of that attempt, if `agent_id` is the agent it comes from."""
        tail = self._tails.get(job_id)
        if tail is None or tail.agent_id != agent_id or tail.attempt != attempt:
            return None
        return tail

    def pending(self, job_id: JobId) -> Tail | None:
        return self._tails.get(job_id)

    def grew(self, job_id: JobId, size: int) -> Tail | None:
        """The store wrote the job's log up to `size`; the tail if that completed it."""
        tail = self._tails.get(job_id)
        if tail is None:
            return None
        tail.stored = max(tail.stored, size)
        if tail.stored < tail.final_size:
            return None
        del self._tails[job_id]
        return tail

    def drop_agent(self, agent_id: AgentId) -> list[JobId]:
        """The agent is gone for good: the rest of its jobs' logs will never come."""
        gone = [tail for tail in self._tails.values() if tail.agent_id == agent_id]
        for tail in gone:
            del self._tails[tail.job_id]
            log.warning("job %s attempt %d: agent %s is gone; its log stops at %d of %d bytes",
                        tail.job_id, tail.attempt, agent_id, tail.stored, tail.final_size)
        return [tail.job_id for tail in gone]
