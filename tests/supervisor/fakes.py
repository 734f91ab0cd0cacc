"""A recording fake agent side for unit tests of the supervisor core (no sockets, no
processes): the fake driver "starts" an agent by connecting a FakeLink that records what the
supervisor sends. The real drivers are exercised by the integration and contract suites."""

from __future__ import annotations

import asyncio

from drivers.base import AgentSpec, DriverBase
from jobvisor.config import Config, load_config
from jobvisor.codec import Message
from jobvisor.protocol.agent_wire import Hello, JobReport, OpReply, RunJob, StatusUpdate
from jobvisor.states import JobState
from supervisor.core import Supervisor


class FakeLink:
    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.closed = False

    def send(self, messages: list[Message]) -> None:
        self.sent.extend(messages)

    def close(self, reason: str) -> None:
        self.closed = True

    def of(self, cls: type) -> list:
        return [m for m in self.sent if isinstance(m, cls)]


class FakeDriver(DriverBase):
    kind = "fake"

    def __init__(self, config: Config, host: Supervisor, cpus: int = 1) -> None:
        super().__init__(config, host)
        self.core = host
        self.cpus = cpus
        self.links: dict[str, FakeLink] = {}
        self.started: list[AgentSpec] = []
        self.connect_automatically = True

    @property
    def cpus_total(self) -> int:
        return self.cpus

    def run_dir(self, user, job_id) -> str:
        return f"/runs/{user}/{job_id}"

    async def start_agent(self, spec: AgentSpec) -> dict:
        self.started.append(spec)
        if self.connect_automatically:
            asyncio.get_running_loop().call_soon(self.connect, spec.agent_id)
        return {"pid": 4242}

    def connect(self, agent_id: str, jobs: list[JobReport] | None = None, pid: int = 4242) -> FakeLink:
        """The agent says hello; a `pid` other than the last one is a process restarted under its id."""
        agent = self.core.agents.by_id[agent_id]
        link = FakeLink()
        self.links[agent_id] = link
        self.core.on_agent_connected(agent, link, Hello(agent_id, 1, pid, "fakehost", jobs or []))
        return link

    async def stop_agent(self, agent_id) -> None:
        pass


def make_config(tmp_path, **supervisor) -> Config:
    config = load_config(environ={})
    config = config.replace("server", state_dir=str(tmp_path))
    # no sending ahead unless a test asks for it: queued jobs stay queued, as the races need
    defaults = dict(reconnect_grace=0.5, agent_lost_grace=0.3, analysis_timeout=0.3, io_timeout=0.3, shutdown_timeout=0.3,
                    prefetch=0)
    defaults.update(supervisor)
    return config.replace("supervisor", **defaults)


async def eventually(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def report(job_id: str, state: str | JobState, attempt: int = 1, **kw) -> StatusUpdate:
    return StatusUpdate(JobReport(job_id=job_id, attempt=attempt, state=JobState(state), **kw))


def runs(link: FakeLink) -> list[RunJob]:
    return link.of(RunJob)


def replies_for(link: FakeLink, cls: type) -> list:
    return link.of(cls)


__all__ = ["FakeDriver", "FakeLink", "make_config", "eventually", "report", "runs", "OpReply"]
