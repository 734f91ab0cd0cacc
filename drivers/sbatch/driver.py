"""SbatchDriver: one agent per user on a cluster's login node, started over SSH.

One driver instance serves one cluster ([sbatch] or an [sbatch.clusters.NAME] table); the
supervisor makes one per cluster that jobs name, so each user has one SSH connection and one
agent per cluster. Clusters may share a file system: each keeps its agents and run dirs under
its own name in the work dir.

The agent is a detached process there (it survives the SSH session and a supervisor restart)
that submits the user's jobs with `sbatch` and connects back to the supervisor's websocket
like every agent. This driver only logs users in, starts, watches and stops agents; Slurm
does the scheduling, so its cpu slots are a large configurable number.

An agent that dies on the login node is noticed at once (a watch channel on the user's SSH
connection ends) and started again with the same id and token, up to `agent_restarts` times:
it finds its Slurm jobs again in their run dirs, so they are not lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass

import asyncssh

from drivers.base import AgentSpec, DriverBase, Logins, agent_env, agent_settings_env
from drivers.sbatch import remote
from drivers.sbatch.errors import LoginFailed, LoginRequired, login_required_reason
from drivers.sbatch.ssh import Connection, connect
from jobvisor import env_names, sbatch_keys
from jobvisor.errors import DriverError, DriverRefused, DriverUnavailable, InvalidRequest, NotFound
from jobvisor.ids import AgentId, JobId, UserId
from jobvisor.resources import Resources

log = logging.getLogger(__name__)

EXTRA_KEYS = sbatch_keys.EXTRA_KEYS  # resources beyond cpus/memory/gpus/walltime/nodes (the agent's #SBATCH options)


@dataclass(eq=False)
class RemoteAgent:
    agent_id: AgentId
    user: UserId
    spec: AgentSpec | None = None  # None for an agent adopted after a supervisor restart
    pid: int | None = None  # its process group on the login node
    restarts: int = 0
    stopping: bool = False
    watcher: asyncio.Task | None = None


class SbatchDriver(DriverBase):
    kind = env_names.SLURM_KIND  # what the agent reads in JOBVISOR_AGENT_KIND to submit to Slurm
    instance_resource = sbatch_keys.CLUSTER_RESOURCE

    def __init__(self, config, host, instance: str = "") -> None:
        super().__init__(config, host, instance)
        name = instance or config.default_cluster or config.sbatch.cluster
        # a cluster no longer configured (jobs of it found after a restart): not configured
        self._cfg = config.clusters.get(name) or dataclasses.replace(config.sbatch, cluster=name, login_host="")
        self._conns: dict[UserId, Connection] = {}
        self._locks: dict[UserId, asyncio.Lock] = {}
        self._agents: dict[AgentId, RemoteAgent] = {}

    # ------------------------------------------------------------------ DriverBase

    @property
    def cpus_total(self) -> int:
        return max(1, self._cfg.cpus)

    @classmethod
    def instance_for(cls, config, resources: Resources) -> str:
        clusters = config.clusters
        if not clusters:
            raise InvalidRequest("the sbatch driver is not configured on this server (no [sbatch] login_host and "
                                 "no [sbatch.clusters.NAME])", field="driver")
        name = (resources.extra or {}).get("cluster") or config.default_cluster
        if not name:
            raise InvalidRequest(f"name the cluster: this jobvisor knows {_names(clusters)}", field="resources.cluster")
        if not isinstance(name, str) or name not in clusters:
            raise InvalidRequest(f"no cluster {name!r}: this jobvisor knows {_names(clusters)}", field="resources.cluster")
        return name

    @property
    def idle_timeout(self) -> float:
        return self._cfg.idle_timeout

    def run_dir(self, user: UserId, job_id: JobId) -> str:
        return remote.run_dir(self._cfg.cluster, user, job_id)  # relative to the agent's work dir

    def validate(self, resources: Resources) -> None:
        if not self._cfg.login_host:
            raise InvalidRequest(f"cluster {self._cfg.cluster!r} is not configured on this server", field="driver")
        super().validate(resources)
        extra = resources.extra or {}
        for key, value in extra.items():
            if key not in EXTRA_KEYS:
                raise InvalidRequest(f"unknown resource {key!r} for the sbatch driver; it knows "
                                     f"{', '.join(sorted(EXTRA_KEYS))} besides cpus, memory, gpus, walltime, nodes",
                                     field=f"resources.{key}")
            if key == "sbatch_args":
                if not isinstance(value, list) or not all(isinstance(a, str) and a.startswith("-") and "\n" not in a for a in value):
                    raise InvalidRequest("sbatch_args must be a list of sbatch options such as ['--exclusive']",
                                         field="resources.sbatch_args")
            elif key == "ntasks":
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise InvalidRequest("ntasks must be a whole number >= 1", field="resources.ntasks")
            elif not isinstance(value, str) or not value or "\n" in value or "\r" in value:
                raise InvalidRequest(f"{key} must be a non-empty single-line string", field=f"resources.{key}")

    def login_required(self, user: UserId) -> str | None:
        """Why a new agent of `user` cannot be started now, or None when it can."""
        if self._service_account():
            return None
        conn = self._conns.get(user)
        if conn is not None and (conn.alive or conn.method == "key"):
            return None
        return login_required_reason(self._cfg.cluster)

    async def start_agent(self, spec: AgentSpec) -> dict:
        conn = await self._connection(spec.user)
        agent = RemoteAgent(spec.agent_id, spec.user, spec=spec)
        self._agents[spec.agent_id] = agent
        try:
            await self._launch(agent, conn)
        except DriverError:
            self._agents.pop(spec.agent_id, None)
            raise
        return {"pid": agent.pid, "host": self._cfg.login_host, "cluster": self._cfg.cluster,
                "username": conn.username, "log": f"{conn.work_dir}/{remote.agent_log(self._cfg.cluster, spec.user)}"}

    async def stop_agent(self, agent_id: AgentId) -> None:
        agent = self._agents.pop(agent_id, None)
        if agent is None or agent.pid is None:
            return
        agent.stopping = True
        if agent.watcher is not None:
            agent.watcher.cancel()
        try:
            conn = await self._connection(agent.user)
            script = remote.stop_script(pid=agent.pid, agent_id=agent_id, timeout=self._cfg.stop_timeout)
            await conn.run("/bin/sh -s", stdin=script, timeout=self._cfg.command_timeout)
        except DriverError as exc:  # no connection: the supervisor's KillAgent went over the websocket
            log.info("agent %s of user %s: not stopped over SSH (%s)", agent_id, agent.user, exc.detail)

    def adopt_agent(self, agent_id: AgentId, user: UserId, pid: int, hostname: str) -> None:
        if agent_id in self._agents:
            return
        log.info("adopting sbatch agent %s of user %s on cluster %s (pid %d on %s)",
                 agent_id, user, self._cfg.cluster, pid, hostname)
        agent = RemoteAgent(agent_id, user, pid=pid)
        self._agents[agent_id] = agent
        conn = self._conns.get(user)
        if conn is not None and conn.alive:
            self._start_watch(agent)

    async def close(self) -> None:
        for agent in self._agents.values():
            agent.stopping = True
            if agent.watcher is not None:
                agent.watcher.cancel()
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    # ------------------------------------------------------------------ login

    @property
    def logins(self) -> Logins:
        """Users log in to the cluster (SSH) before an agent of theirs can start."""
        return self

    def _service_account(self) -> bool:
        return bool(self._cfg.key_user and self._cfg.key_file)

    async def login(self, user: UserId, cluster: str, username: str, password: str | None = None,
                    otp: str | None = None, use_key: bool = False) -> dict:
        """Open the user's SSH connection to the cluster with these credentials (kept only for
        the connect). LoginFailed when refused: then nothing is kept."""
        if cluster != self._cfg.cluster or not self._cfg.login_host:
            raise NotFound(f"no cluster {cluster!r}: this jobvisor knows {_names(self.config.clusters)}")
        username = username or (self._cfg.key_user if use_key else "")
        if not username:
            raise InvalidRequest("a cluster username is required", field="username")
        if use_key:
            if not self._cfg.key_file:
                raise InvalidRequest(f"cluster {cluster!r} has no key configured ([sbatch] key_file); log in with a password",
                                     field="method")
            conn = await connect(self._cfg, username, key_file=self._cfg.key_file)
        else:
            if not password:
                raise InvalidRequest("a password is required (or use the operator's key)", field="password")
            conn = await connect(self._cfg, username, password=password, otp=otp or None)
        password = otp = None  # noqa: F841 - nothing of them is kept
        try:
            await self._resolve_work_dir(conn)
        except DriverError:
            conn.close()
            raise
        old = self._conns.get(user)
        self._conns[user] = conn
        if old is not None and old is not conn:
            old.close()
        for agent in self._agents.values():  # adopted agents can be watched now
            if agent.user == user and agent.watcher is None and agent.pid is not None:
                self._start_watch(agent)
        log.info("user %s logged in to cluster %s as %s (%s)", user, cluster, username, conn.method)
        return self.session(user)

    def session(self, user: UserId) -> dict:
        """What the user's login to this cluster looks like now (no secrets in it)."""
        conn = self._conns.get(user)
        if self._service_account() and (conn is None or not conn.alive):
            return {"cluster": self._cfg.cluster, "logged_in": True, "username": self._cfg.key_user,
                    "method": "service account", "work_dir": conn.work_dir if conn else None}
        if conn is None or not (conn.alive or conn.method == "key"):
            return {"cluster": self._cfg.cluster, "logged_in": False, "username": None, "method": None, "work_dir": None}
        return {"cluster": self._cfg.cluster, "logged_in": True, "username": conn.username, "method": conn.method,
                "work_dir": conn.work_dir}

    def logout(self, user: UserId) -> bool:
        """Close the user's SSH connection: new agents need a new login. A running agent goes
        on with its Slurm jobs (it talks to the supervisor, not over this connection)."""
        conn = self._conns.pop(user, None)
        if conn is None:
            return False
        for agent in self._agents.values():
            if agent.user == user and agent.watcher is not None:
                agent.watcher.cancel()
                agent.watcher = None
        conn.close()
        log.info("user %s logged out of cluster %s", user, self._cfg.cluster)
        return True

    async def _connection(self, user: UserId) -> Connection:
        """The user's live connection: reopened when it dropped and a key can open it again;
        LoginRequired when only the user's password could."""
        conn = self._conns.get(user)
        if conn is not None and conn.alive:
            return conn
        lock = self._locks.setdefault(user, asyncio.Lock())
        async with lock:
            conn = self._conns.get(user)
            if conn is not None and conn.alive:
                return conn
            if conn is not None and conn.method == "key" and self._cfg.key_file:
                username = conn.username
            elif self._service_account():
                username = self._cfg.key_user
            else:
                self._conns.pop(user, None)
                raise LoginRequired(self._cfg.cluster)
            try:
                fresh = await connect(self._cfg, username, key_file=self._cfg.key_file)
            except LoginFailed as exc:
                raise DriverRefused(exc.detail) from None
            try:
                await self._resolve_work_dir(fresh)
            except DriverError:
                fresh.close()
                raise
            self._conns[user] = fresh
            return fresh

    async def _resolve_work_dir(self, conn: Connection) -> None:
        try:
            script = remote.resolve_work_dir(self._cfg.work_dir)
        except ValueError as exc:
            raise DriverRefused(str(exc)) from None
        result = await conn.run("/bin/sh -s", stdin=script, timeout=self._cfg.command_timeout)
        work_dir = (result.stdout or "").strip()
        if _interrupted(result):
            raise DriverUnavailable(f"the login node {self._cfg.login_host} closed the session while the work dir "
                                    f"was resolved")
        if result.exit_status != 0 or not work_dir.startswith("/"):  # the template does not make a path
            raise DriverRefused(f"cannot resolve the work dir {self._cfg.work_dir!r} on the login node: "
                                f"{(result.stderr or '').strip()[-300:] or work_dir!r}")
        conn.work_dir = work_dir

    # ------------------------------------------------------------------ agents

    def _agent_env(self, spec: AgentSpec) -> dict[str, str]:
        env = agent_env(spec, self._cfg.agent_url or spec.url)
        env[env_names.AGENT_KIND] = self.kind  # not the target ("sbatch:NAME"): the agent's backend
        env.update(agent_settings_env(self.config))
        for key in sbatch_keys.AGENT_KEYS:
            env[env_names.config_name("sbatch", key)] = str(getattr(self._cfg, key))
        return env

    async def _launch(self, agent: RemoteAgent, conn: Connection) -> None:
        spec = agent.spec
        assert spec is not None
        try:
            script = remote.start_script(work_dir=conn.work_dir, cluster=self._cfg.cluster, user=spec.user,
                                         command=self._cfg.agent_command, env=self._agent_env(spec), token=spec.token)
        except ValueError as exc:
            raise DriverRefused(str(exc)) from None
        result = await conn.run("/bin/sh -s", stdin=script, timeout=self._cfg.command_timeout)
        pid = remote.parse_pid(result.stdout or "")
        if result.exit_status != 0 or pid is None:
            detail = (result.stderr or result.stdout or "").strip()[-500:]
            message = f"starting the agent on {self._cfg.login_host} failed (exit {result.exit_status}): {detail}"
            if _interrupted(result):
                raise DriverUnavailable(message)
            if result.exit_status in remote.WORK_DIR_EXITS:  # the work dir cannot be made or entered
                raise DriverRefused(message)
            raise DriverError(message)  # anything else of the login node (no fork, no memory): retried
        agent.pid = pid
        log.info("agent %s of user %s started on cluster %s (%s) as %s (process group %d, work dir %s)",
                 spec.agent_id, spec.user, self._cfg.cluster, self._cfg.login_host, conn.username, pid, conn.work_dir)
        self._start_watch(agent)

    def _start_watch(self, agent: RemoteAgent) -> None:
        if agent.watcher is not None and not agent.watcher.done():
            agent.watcher.cancel()
        agent.watcher = asyncio.ensure_future(self._watch(agent))
        agent.watcher.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _watch(self, agent: RemoteAgent) -> None:
        """Until the agent's process is gone (then start it again) or it is stopped."""
        pid = agent.pid
        while not agent.stopping and self._agents.get(agent.agent_id) is agent:
            try:
                conn = await self._connection(agent.user)
            except DriverError:
                return  # no way to look: the websocket's silence will tell the supervisor
            try:
                result = await conn.conn.run(remote.watch_command(pid), check=False)
            except (asyncssh.Error, OSError):
                await asyncio.sleep(1.0)
                continue
            if agent.stopping or self._agents.get(agent.agent_id) is not agent:
                return
            if result.exit_status != 0:
                await asyncio.sleep(1.0)
                continue
            await self._agent_died(agent)
            return

    async def _agent_died(self, agent: RemoteAgent) -> None:
        reason = "the agent process on the login node exited"
        if agent.spec is not None and agent.restarts < self._cfg.agent_restarts:
            agent.restarts += 1
            log.warning("agent %s of user %s died on the login node; starting it again (%d of %d)",
                        agent.agent_id, agent.user, agent.restarts, self._cfg.agent_restarts)
            try:
                await self._launch(agent, await self._connection(agent.user))
                return
            except DriverError as exc:
                reason += f" and could not be started again: {exc.detail}"
        elif agent.spec is not None:
            reason += f" ({agent.restarts} restarts already)"
        self._agents.pop(agent.agent_id, None)
        self.host.agent_exited(agent.agent_id, reason)


def _interrupted(result) -> bool:
    """The command did not finish on its own (the session closed, a signal): no exit status."""
    return result.exit_status is None or result.exit_status < 0


def _names(clusters) -> str:
    return ", ".join(repr(name) for name in clusters) or "none"
