"""The agent process: `python -m agent`.

Reads `JOBVISOR_AGENT_ID`, `JOBVISOR_AGENT_TOKEN` and `JOBVISOR_AGENT_URL` from the environment
and removes the token from it at once, so no job inherits it. Tunables come from the `[agent]`
section of the configuration (`jobvisor.config`). Exit codes: 0 when stopped or idle without a
supervisor, 2 for a bad environment or configuration, 3 when the supervisor refuses the token.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field

from jobvisor import env_names
from jobvisor.config import AgentConfig, Config, load_config
from jobvisor.errors import ConfigError
from jobvisor.job_limits import probe
from jobvisor.limits import MAX_MESSAGE_BYTES
from jobvisor.logs import setup_logging

from agent.connection import Connection
from agent.core import AgentCore
from agent.local import LocalBackend
from agent.job_limits import JobLimits
from agent.oom import OomCounter
from agent.runner import Runner

logger = logging.getLogger(__name__)

ENV_ID = env_names.AGENT_ID
ENV_TOKEN = env_names.AGENT_TOKEN
ENV_URL = env_names.AGENT_URL
ENV_KIND = env_names.AGENT_KIND  # SLURM_KIND: jobs are submitted to Slurm (see agent/slurm)
EXIT_USAGE = 2
STOP_REPORT_TIMEOUT = 3.0  # seconds to flush the last reports when stopping


@dataclass(frozen=True)
class AgentSettings:
    agent_id: str
    url: str
    token: str = field(repr=False)
    config: AgentConfig = field(default_factory=AgentConfig)
    max_message_bytes: int = MAX_MESSAGE_BYTES
    io_timeout: float = 30.0
    hostname: str = field(default_factory=socket.gethostname)


def take_token(environ: MutableMapping[str, str]) -> str:
    """Remove the agent token from `environ` (so jobs never inherit it) and return it."""
    return environ.pop(ENV_TOKEN, "")


def settings_from(environ: MutableMapping[str, str], token: str, config: Config) -> AgentSettings:
    missing = [name for name, value in ((ENV_ID, environ.get(ENV_ID)), (ENV_TOKEN, token), (ENV_URL, environ.get(ENV_URL))) if not value]
    if missing:
        raise ConfigError(f"the agent needs {', '.join(missing)} in its environment")
    url = environ[ENV_URL]
    if not url.startswith(("ws://", "wss://")):
        raise ConfigError(f"{ENV_URL} must be a ws:// or wss:// URL, not {url!r}")
    return AgentSettings(
        agent_id=environ[ENV_ID],
        url=url,
        token=token,
        config=config.agent,
        max_message_bytes=config.supervisor.max_message_bytes,
        io_timeout=config.supervisor.io_timeout,
    )


class Agent:
    """Wires the connection, the core and its backend (the runner's processes, or Slurm), and
    runs until stopped."""

    def __init__(self, settings: AgentSettings, job_env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.job_env = dict(os.environ if job_env is None else job_env)
        self.job_env.pop(ENV_TOKEN, None)
        self.connection = Connection(settings)
        self.connection.on_stop = self.request_stop
        self.runner: Runner | None = None  # local jobs only
        self.local: LocalBackend | None = None
        self.core: AgentCore | None = None
        self._stopping = False
        self._keep_jobs = False  # KillAgent(cancel_jobs=False): leave the jobs running
        self.oom = OomCounter.for_environment(self.job_env)  # in a container: name OOM kills
        # the local driver's agents enforce each job's memory and cpus ([local] limits, passed on)
        setting = os.environ.get(env_names.config_name("local", "limits"))
        self.limits = JobLimits(probe(setting)) if setting and setting != "none" else None
        if self.limits is not None:
            logger.info("agent %s: job limits by %s (%s)", settings.agent_id, self.limits.kind, self.limits.mode.why)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        if os.environ.get(ENV_KIND) == env_names.SLURM_KIND:  # jobs run under Slurm: its backend and queue
            from agent.slurm.app import build

            self.core = build(self, loop)
        else:
            self.runner = Runner(loop, self.job_env, on_exit=self._on_exit, spawn_threads=self.settings.config.spawn_threads)
            self.local = LocalBackend(self.runner, self.settings.config.cancel_grace, oom=self.oom, limits=self.limits)
            self.core = AgentCore(
                self.settings.agent_id, self.settings.config, self.connection, self.local,
                io_timeout=self.settings.io_timeout, max_message_bytes=self.settings.max_message_bytes,
                op_env=self.job_env,
            )
        self.connection.core = self.core
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, "agent stopped", True)
        logger.info("agent %s: started (pid %d), supervisor %s", self.settings.agent_id, os.getpid(), self.settings.url)
        poller = loop.create_task(self._poll_loop())
        try:
            code = await self.connection.run()
            if code and self.core.has_running():  # refused: nobody will ever hear of these jobs
                await self._stop_jobs("the agent could not authenticate")
            return code
        finally:
            poller.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            if self.core.has_running() and not self._keep_jobs:
                self.core.kill_all()
            if self.runner is not None:
                self.runner.close()
            logger.info("agent %s: exiting", self.settings.agent_id)

    def _on_exit(self, job, returncode: int) -> None:
        self.local.on_exit(job, returncode)

    def request_stop(self, reason: str, cancel_jobs: bool) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._keep_jobs = not cancel_jobs
        logger.info("agent %s: stopping (%s)", self.settings.agent_id, reason)
        asyncio.get_running_loop().create_task(self._shutdown(reason, cancel_jobs))

    async def _shutdown(self, reason: str, cancel_jobs: bool) -> None:
        try:
            if cancel_jobs:
                await self._stop_jobs(reason)
                await self._wait(lambda: not self.connection.connected or self.core.all_reported(), STOP_REPORT_TIMEOUT)
            await self.connection.flushed(STOP_REPORT_TIMEOUT)
        finally:
            await self.connection.close()

    async def _stop_jobs(self, reason: str) -> None:
        self.core.cancel_all(reason)
        await self._wait(lambda: not self.core.has_running(), self.settings.config.cancel_grace + 2.0)
        self.core.poll()

    async def _wait(self, condition: Callable[[], bool], timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def _poll_loop(self) -> None:
        interval = self.settings.config.log_poll_interval
        while True:
            await asyncio.sleep(interval)
            try:
                self.core.poll()
            except Exception:
                logger.exception("agent %s: log poll failed", self.settings.agent_id)


def main() -> None:
    token = take_token(os.environ)  # first of all: nothing started from here may see it
    try:
        config = load_config()
        settings = settings_from(os.environ, token, config)
    except ConfigError as exc:
        print(f"jobvisor agent: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    setup_logging(config.logging.level)
    sys.exit(asyncio.run(Agent(settings).run()))
