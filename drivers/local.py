"""The local driver: each (user, kind) agent is a subprocess of the supervisor's machine.

Agents run in their own session so a Ctrl-C meant for `jobvisor up` does not reach them and a
supervisor killed with SIGKILL leaves them running: they reconnect to its successor. An agent
that dies takes its jobs with it (drivers.leftovers), before its death is reported.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from drivers.base import AgentSpec, DriverBase, agent_env, agent_settings_env
from drivers.leftovers import stop_leftovers
from drivers.process_watch import PidWatch, pid_alive
from jobvisor import env_names
from jobvisor.code_names import installed_codes
from jobvisor.job_limits import LimitMode, probe
from jobvisor.errors import InvalidRequest, driver_os_error
from jobvisor.ids import AgentId, JobId, UserId

log = logging.getLogger(__name__)


class LocalDriver(DriverBase):
    kind = "local"

    def __init__(self, config, host, instance: str = "") -> None:
        super().__init__(config, host, instance)
        self._cfg = config.local
        self._watches: dict[AgentId, PidWatch] = {}
        self._pids: dict[AgentId, int] = {}
        self._children: dict[AgentId, asyncio.subprocess.Process] = {}
        self._exits: set[asyncio.Future] = set()
        self._cpus = self._cfg.cpus or os.cpu_count() or 1  # os.cpu_count() reads a file each call
        self._run_root: str | None = None
        self._limits: LimitMode | None = None
        self._run_dev: int | None = None  # the file system of the run dirs (input_source)

    @property
    def cpus_total(self) -> int:
        return self._cpus

    @property
    def run_root(self) -> Path:
        return Path(self._cfg.run_root) if self._cfg.run_root else self.config.state_dir / "runs"

    def run_dir(self, user: UserId, job_id: JobId) -> str:
        if self._run_root is None:  # asked once per job sent: joined as strings
            self._run_root = str(self.run_root)
        return os.path.join(self._run_root, user, job_id)

    @property
    def limits(self) -> LimitMode:
        """How this machine enforces jobs' memory and cpus (probed once; `jobvisor status`)."""
        if self._limits is None:
            self._limits = probe(self._cfg.limits)
        return self._limits

    def status(self) -> dict:
        return self.limits.view()

    def input_source(self, stored: Path) -> str | None:
        """The agent runs on this machine: it hard-links the file when the run dirs are on the
        same file system. Elsewhere its bytes go in slices (a copy by the agent would hold its
        loop for as long as the copy takes)."""
        try:
            return str(stored) if os.stat(stored).st_dev == self._run_device() else None
        except OSError:
            return str(stored)  # gone: the agent says which input it could not place

    def _run_device(self) -> int:
        if self._run_dev is None:
            where = self.run_root
            while not where.exists() and where != where.parent:
                where = where.parent
            self._run_dev = os.stat(where).st_dev
        return self._run_dev

    def known_codes(self) -> frozenset[str] | None:
        return installed_codes()  # the agent runs this very installation

    def check_workdir(self, workdir: str) -> str:
        """Allowed only under a directory of `[local] workdirs` (none by default): the job then
        works beside whatever else is there, outside its run dir's isolation."""
        allowed = [os.path.realpath(os.path.expanduser(d.strip())) for d in self._cfg.workdirs.split(",") if d.strip()]
        if not allowed:
            raise InvalidRequest("running a job in place is off on this server: its admin allows directories "
                                 "with [local] workdirs = \"/path/a,/path/b\" (or JOBVISOR_LOCAL_WORKDIRS) and a "
                                 "restart of up", field="workdir")
        if not isinstance(workdir, str) or not os.path.isabs(workdir):
            raise InvalidRequest("workdir must be an absolute path", field="workdir")
        real = os.path.realpath(workdir)
        if not any(real == root or real.startswith(root + os.sep) for root in allowed):
            raise InvalidRequest(f"workdir {workdir!r} is not under a directory the local driver's workdirs "
                                 f"setting allows ({', '.join(allowed)})", field="workdir")
        if not os.path.isdir(real):
            raise InvalidRequest(f"workdir {workdir!r} is not a directory", field="workdir")
        return real

    async def start_agent(self, spec: AgentSpec) -> dict:
        log_dir = self.config.state_dir / "agents"
        env = dict(os.environ)
        env.update(agent_settings_env(self.config))  # as `up` read them, --config included
        env.update(agent_env(spec, spec.url))
        env[env_names.config_name("local", "limits")] = self._cfg.limits  # its jobs' memory and cpus
        env[env_names.AGENT_TOKEN] = spec.token
        log_path = log_dir / f"{spec.agent_id}.log"
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            with open(log_path, "ab") as log_file:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "agent",
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                    start_new_session=True,
                )
        except OSError as exc:
            raise driver_os_error("cannot start a local agent", exc) from exc
        self._children[spec.agent_id] = proc
        self._watch(spec.agent_id, proc.pid)
        log.info("agent %s started for user %s (pid %d, log %s)", spec.agent_id, spec.user, proc.pid, log_path)
        return {"pid": proc.pid, "host": os.uname().nodename, "log": str(log_path)}

    def _watch(self, agent_id: AgentId, pid: int) -> None:
        self._pids[agent_id] = pid

        def exited() -> None:
            self._watches.pop(agent_id, None)
            self._pids.pop(agent_id, None)
            child = self._children.pop(agent_id, None)
            task = asyncio.ensure_future(self._after_exit(agent_id, pid, child))
            self._exits.add(task)
            task.add_done_callback(self._exits.discard)

        self._watches[agent_id] = PidWatch(pid, exited)

    async def _after_exit(self, agent_id: AgentId, pid: int, child: asyncio.subprocess.Process | None) -> None:
        """Reap the agent, stop what it left running, then report it gone: the supervisor may
        start a job's next attempt at once, and it must not run beside the last one."""
        code = await child.wait() if child is not None else None
        try:
            stopped = await asyncio.to_thread(stop_leftovers, agent_id)
        except OSError as exc:
            log.error("agent %s (pid %d) exited; cannot look for the jobs it left: %s", agent_id, pid, exc)
        else:
            if stopped:
                log.warning("agent %s (pid %d) exited with %d job processes still running: killed them (pids %s)",
                            agent_id, pid, len(stopped), " ".join(map(str, stopped[:20])))
        self.host.agent_exited(agent_id, "agent process exited" + (f" with code {code}" if code is not None else ""))

    def adopt_agent(self, agent_id: AgentId, user: UserId, pid: int, hostname: str) -> None:
        if agent_id in self._watches or hostname != os.uname().nodename:
            return
        log.info("adopting agent %s of user %s (pid %d) started by an earlier supervisor", agent_id, user, pid)
        self._watch(agent_id, pid)

    async def stop_agent(self, agent_id: AgentId) -> None:
        pid = self._pids.get(agent_id)
        if pid is None:
            return
        self._signal(pid, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._cfg.stop_timeout
        while pid_alive(pid) and loop.time() < deadline:
            child = self._children.get(agent_id)
            if child is not None and child.returncode is not None:
                break
            await asyncio.sleep(0.05)
        if pid_alive(pid) and agent_id in self._pids:
            log.warning("agent %s (pid %d) ignored SIGTERM for %.0f s; sending SIGKILL", agent_id, pid, self._cfg.stop_timeout)
            self._signal(pid, signal.SIGKILL)

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    async def close(self) -> None:
        for watch in self._watches.values():
            watch.cancel()
        self._watches.clear()
