"""The docker driver: each (user, kind) agent runs in its own container, on the least-loaded of
the configured Docker engines; every job of that user runs inside it.

A container carries the labels `jobvisor.instance` (which supervisor: a hash of its state
dir), `jobvisor.user`, `jobvisor.kind` and `jobvisor.agent_id`, and a deterministic name. It
runs `python -m agent` as a non-root uid with `--init`, no new privileges, no capabilities, a
read-only root file system, the configured cpu and memory limits, and one writable mount: that
user's run root, at the same path as on the host, so `run_dir()` is also the path the agent sees.

The driver polls its engines (off the loop, bounded) for containers that stopped running and
reports their agents as exited; after a supervisor restart it adopts the containers whose agents
reconnect and removes the ones whose agents do not.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from drivers.base import AgentSpec, DriverBase, agent_env, agent_settings_env
from drivers.docker import spec as rules
from drivers.docker.engine import ContainerMissing, Engine, EngineUnavailable, ImageMissing, NameConflict
from jobvisor import env_names
from jobvisor.errors import DriverError, DriverRefused, DriverUnavailable, InvalidRequest, driver_os_error
from jobvisor.ids import AgentId, JobId, UserId
from jobvisor.code_names import installed_codes
from jobvisor.resources import Resources, parse_memory
from jobvisor.tasks import Tasks

log = logging.getLogger(__name__)

ALIVE = ("running", "restarting", "paused")
FILE_TIMEOUT = 10.0  # seconds for preparing a run root on this machine
PULL_TIMEOUT = 600.0


@dataclass(eq=False)
class _Container:
    agent_id: AgentId
    user: str
    engine: Engine
    container_id: str
    name: str


class DockerDriver(DriverBase):
    kind = "docker"

    def __init__(self, config, host, instance: str = "") -> None:
        super().__init__(config, host, instance)
        cfg = self._cfg = config.docker
        self.supervisor_id = rules.instance_id(config.state_dir)
        self._uid, self._gid = rules.container_user(cfg.user, os.getuid(), os.getgid())
        try:
            self._memory = parse_memory(cfg.memory) if cfg.memory.strip() else None
        except InvalidRequest as exc:
            raise DriverRefused(f"[docker] memory: {exc.detail}") from None
        if cfg.cpus < 0:
            raise DriverRefused("[docker] cpus must be >= 0")
        hosts = rules.parse_hosts(cfg.hosts, cfg.slots or os.cpu_count() or 1)
        tls = rules.tls_settings(cfg.tls_ca_cert, cfg.tls_client_cert, cfg.tls_client_key)
        self._executor = ThreadPoolExecutor(max_workers=min(32, 4 + 2 * len(hosts)), thread_name_prefix="docker-driver")
        self.engines: list[Engine] = []
        self._slots: dict[Engine, int] = {}
        for url, slots in hosts:
            secure = url.startswith(("tcp://", "https://")) and tls is not None
            engine = Engine(url, self._executor, cfg.api_timeout, tls if secure else None)
            if url.startswith(("tcp://", "http://")) and not secure:
                log.warning("docker host %s is used without TLS: whoever reaches its port controls it", url)
            self.engines.append(engine)
            self._slots[engine] = slots
        self._mounts: list[str] = []
        if cfg.host_runtime:
            prefixes = [sys.base_prefix, sys.prefix, os.path.dirname(os.path.dirname(sys.executable))]
            self._mounts = rules.host_runtime_mounts(self.run_root, prefixes, rules.own_package_roots())
        self._command = rules.agent_command(cfg.agent_command, cfg.host_runtime)
        self._containers: dict[AgentId, _Container] = {}
        self._launching: set[AgentId] = set()  # started but not yet in _containers
        self._adopting: set[AgentId] = set()
        self._adopted: set[AgentId] = set()
        self._starting: dict[Engine, int] = defaultdict(int)
        self._gateways: dict[Engine, str | None] = {}
        self._removals: dict[str, asyncio.Task] = {}
        self._tasks = Tasks(log, "docker driver")
        self._watcher: asyncio.Task | None = None
        self._closed = False
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # made outside a loop (a unit test of the pure parts): no background work
        self._spawn(self._sweep())

    # ------------------------------------------------------------------ DriverBase

    @property
    def idle_timeout(self) -> float:
        return self._cfg.idle_timeout

    @property
    def cpus_total(self) -> int:
        return sum(self._slots.values())

    @property
    def run_root(self) -> Path:
        return Path(self._cfg.run_root).expanduser() if self._cfg.run_root else self.config.state_dir / "docker-runs"

    def run_dir(self, user: UserId, job_id: JobId) -> str:
        return str(self.run_root / user / job_id)

    def known_codes(self) -> frozenset[str] | None:
        """With host_runtime the containers run this machine's jobvisor and its codes; an image
        may bring codes of its own, which only its agent knows."""
        return installed_codes() if self._cfg.host_runtime else None

    def validate(self, resources: Resources) -> None:
        biggest = max(self._slots.values())
        if resources.cpus > biggest:
            raise InvalidRequest(f"the job asks for {resources.cpus} cpus but no docker host has more than {biggest} slots",
                                 field="resources.cpus")
        if self._cfg.cpus and resources.cpus > self._cfg.cpus:
            raise InvalidRequest(f"the job asks for {resources.cpus} cpus but agent containers are limited to "
                                 f"{self._cfg.cpus:g} ([docker] cpus)", field="resources.cpus")
        if self._memory and resources.memory and resources.memory > self._memory:
            raise InvalidRequest(f"the job asks for {rules.format_bytes(resources.memory)} of memory but agent containers "
                                 f"are limited to {rules.format_bytes(self._memory)} ([docker] memory)", field="resources.memory")
        super().validate(resources)

    async def start_agent(self, spec: AgentSpec) -> dict:
        if self._closed:
            raise DriverUnavailable("the docker driver is shut down (the supervisor is stopping)")
        rules.check_user_name(spec.user)
        user_dir = self.run_root / spec.user
        await self._in_thread(_prepare_run_root, user_dir, self._uid, self._gid)
        engine = await self._choose_host()
        name = rules.container_name(self.supervisor_id, spec.kind, spec.user)
        self._starting[engine] += 1
        self._launching.add(spec.agent_id)
        try:
            url = await self._agent_url(engine, spec.url)
            container_id = await self._run(engine, spec, name, url, user_dir)
            self._containers[spec.agent_id] = _Container(spec.agent_id, spec.user, engine, container_id, name)
        finally:
            self._starting[engine] -= 1
            self._launching.discard(spec.agent_id)
        self._ensure_watcher()
        log.info("agent %s of user %s started in container %s (%s) on %s", spec.agent_id, spec.user, name, container_id[:12], engine.name)
        return {"host": engine.name, "container": container_id[:12], "name": name}

    async def stop_agent(self, agent_id: AgentId) -> None:
        rec = self._containers.get(agent_id)
        if rec is None:
            return
        try:
            await rec.engine.stop(rec.container_id, self._cfg.stop_timeout)
        except ContainerMissing:
            pass
        except DriverError as exc:
            log.warning("agent %s: cannot stop container %s: %s", agent_id, rec.name, exc.detail)
            return
        await self._gone(rec, f"agent container {rec.name} was stopped")

    def adopt_agent(self, agent_id: AgentId, user: UserId, pid: int, hostname: str) -> None:
        if self._closed or agent_id in self._containers or agent_id in self._adopting or agent_id in self._launching:
            return
        self._adopting.add(agent_id)
        self._spawn(self._adopt(agent_id, user))

    async def close(self) -> None:
        self._closed = True
        for task in [*self._tasks, *([self._watcher] if self._watcher else [])]:
            task.cancel()
        for engine in self.engines:
            self._executor.submit(engine.close)
        self._executor.shutdown(wait=False)

    # ------------------------------------------------------------------ starting

    async def _in_thread(self, fn, *args):
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._executor, fn, *args), FILE_TIMEOUT)
        except asyncio.TimeoutError:
            raise DriverUnavailable(f"preparing {args[0]} took longer than {FILE_TIMEOUT:g} s") from None
        except OSError as exc:
            raise driver_os_error(f"cannot prepare {args[0]}", exc) from exc

    async def _choose_host(self) -> Engine:
        """The least-loaded engine (agents per slot); engines that do not answer are skipped."""
        if len(self.engines) == 1:
            return self.engines[0]
        label = f"{rules.LABEL_INSTANCE}={self.supervisor_id}"
        found = await asyncio.gather(*(e.containers(label) for e in self.engines), return_exceptions=True)
        loads, skipped = [], []
        for index, (engine, listing) in enumerate(zip(self.engines, found)):
            if isinstance(listing, DriverError):
                log.warning("docker host %s skipped for a new agent: %s", engine.name, listing.detail)
                skipped.append(listing.detail)
                continue
            if isinstance(listing, BaseException):
                raise listing
            running = sum(1 for c in listing if c.get("State") in ALIVE)
            loads.append(rules.HostLoad(index, running + self._starting[engine], self._slots[engine]))
        choice = rules.pick_host(loads)
        if choice is None:
            raise EngineUnavailable("no docker engine answers: " + "; ".join(skipped))
        return self.engines[choice]

    async def _agent_url(self, engine: Engine, url: str) -> str:
        url = self._cfg.agent_url or url
        network = self._cfg.network
        if not rules.needs_gateway(url, network):
            return url
        if engine not in self._gateways:
            self._gateways[engine] = await engine.gateway(network)
        return rules.agent_url_for(url, network, self._gateways[engine])

    async def _run(self, engine: Engine, spec: AgentSpec, name: str, url: str, user_dir: Path) -> str:
        cfg = self._cfg
        create = {
            "command": self._command,
            "name": name,
            "labels": rules.labels(self.supervisor_id, spec.kind, spec.user, spec.agent_id),
            "environment": self._environment(spec, url, user_dir),
            "user": f"{self._uid}:{self._gid}",
            "working_dir": str(user_dir),
            "detach": True,
        }
        binds = {path: {"bind": path, "mode": "ro"} for path in self._mounts}
        binds[str(user_dir)] = {"bind": str(user_dir), "mode": "rw"}
        host_config = {
            "binds": binds,
            "init": True,
            "security_opt": ["no-new-privileges"],
            "cap_drop": ["ALL"],
            "read_only": True,
            "tmpfs": {"/tmp": "rw,nosuid,nodev,mode=1777"},
            "network_mode": cfg.network,
            "log_config": {"type": "json-file", "config": {"max-size": "10m", "max-file": "2"}},
        }
        if cfg.cpus:
            host_config["nano_cpus"] = int(cfg.cpus * 1e9)
        if self._memory:
            host_config["mem_limit"] = self._memory
            host_config["memswap_limit"] = self._memory  # no swap on top: the limit is the limit
        pulled, conflicts = False, 0
        while True:
            try:
                return await engine.run(cfg.image, create, host_config)
            except NameConflict:
                conflicts += 1
                if conflicts > 2:
                    raise
                await self._remove_stale(engine, name, spec.agent_id)
            except ImageMissing:
                if not cfg.pull or pulled:
                    raise DriverRefused(
                        f"the docker image {cfg.image!r} is not on {engine.name}: build it (etc/docker/Dockerfile, or "
                        "etc/docker/make-local-image.sh on a machine without a registry) or set [docker] pull = true",
                    ) from None
                pulled = True
                log.info("pulling %s on %s", cfg.image, engine.name)
                await engine.pull(cfg.image, PULL_TIMEOUT)

    async def _remove_stale(self, engine: Engine, name: str, agent_id: AgentId) -> None:
        """A container of that name is left from an agent the supervisor gave up on."""
        try:
            info = await engine.inspect(name)
        except ContainerMissing:
            return
        old = (info.get("Config") or {}).get("Labels") or {}
        if old.get(rules.LABEL_INSTANCE) != self.supervisor_id:
            raise DriverRefused(f"a container named {name} that this supervisor did not start is in the way on {engine.name}")
        log.info("removing container %s of agent %s, replaced by agent %s", name, old.get(rules.LABEL_AGENT), agent_id)
        await self._remove(engine, info["Id"])

    def _environment(self, spec: AgentSpec, url: str, user_dir: Path) -> dict[str, str]:
        env = {
            **agent_env(spec, url),
            env_names.AGENT_TOKEN: spec.token,
            env_names.CONTAINER: "docker",  # the agent then tells out-of-memory kills apart
            "HOME": str(user_dir),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        env.update(agent_settings_env(self.config))  # no configuration file in the container
        if self._cfg.host_runtime:
            env["PATH"] = f"{os.path.dirname(sys.executable)}:{rules.DEFAULT_PATH}"
        return env

    # ------------------------------------------------------------------ watching

    def _spawn(self, coro) -> asyncio.Task:
        return self._tasks.spawn(coro)

    def _ensure_watcher(self) -> None:
        if not self._closed and (self._watcher is None or self._watcher.done()):
            self._watcher = asyncio.get_running_loop().create_task(self._watch_loop(), name="docker-watch")

    async def _watch_loop(self) -> None:
        unreachable: set[Engine] = set()
        while not self._closed:
            await asyncio.sleep(self._cfg.watch_interval)
            by_engine: dict[Engine, list[_Container]] = defaultdict(list)
            for rec in self._containers.values():
                by_engine[rec.engine].append(rec)
            await asyncio.gather(*(self._check(engine, recs, unreachable) for engine, recs in by_engine.items()))

    async def _check(self, engine: Engine, recs: list[_Container], unreachable: set[Engine]) -> None:
        try:
            listing = await engine.containers(f"{rules.LABEL_INSTANCE}={self.supervisor_id}")
        except DriverError as exc:
            if engine not in unreachable:
                unreachable.add(engine)
                log.warning("cannot check the %d agent containers on %s: %s", len(recs), engine.name, exc.detail)
            return
        if engine in unreachable:
            unreachable.discard(engine)
            log.info("docker host %s answers again", engine.name)
        states = {c["Id"]: c.get("State") for c in listing}
        for rec in recs:
            if states.get(rec.container_id) not in ALIVE:
                self._spawn(self._gone(rec))

    async def _gone(self, rec: _Container, reason: str | None = None) -> None:
        """The container no longer runs: report its agent as exited (once), then remove it."""
        if self._containers.get(rec.agent_id) is not rec:
            return
        del self._containers[rec.agent_id]
        if reason is None:
            reason = await self._why(rec)
        log.warning("agent %s of user %s: %s", rec.agent_id, rec.user, reason)
        self.host.agent_exited(rec.agent_id, reason)
        await self._remove(rec.engine, rec.container_id)

    async def _why(self, rec: _Container) -> str:
        try:
            info = await rec.engine.inspect(rec.container_id)
        except ContainerMissing:
            return rules.exit_reason(rec.name, None)
        except DriverError as exc:
            return f"agent container {rec.name} stopped running ({exc.detail})"
        state = info.get("State") or {}
        reason = rules.exit_reason(rec.name, state, self._memory)
        if state.get("ExitCode") not in (0, 137, 143, None) and not state.get("OOMKilled"):
            try:
                tail = (await rec.engine.log_tail(rec.container_id, 3)).strip().splitlines()
            except DriverError:
                tail = []
            if tail:
                reason += f"; its log ends: {tail[-1][-300:]}"
        return reason

    async def _adopt(self, agent_id: AgentId, user: UserId) -> None:
        """An agent reconnected that this driver did not start: find its container by label."""
        labels = (f"{rules.LABEL_INSTANCE}={self.supervisor_id}", f"{rules.LABEL_AGENT}={agent_id}")
        try:
            for attempt in range(3):
                found = await asyncio.gather(*(e.containers(*labels) for e in self.engines), return_exceptions=True)
                for engine, listing in zip(self.engines, found):
                    if isinstance(listing, BaseException):
                        continue
                    for c in listing:
                        if c.get("State") in ALIVE and agent_id not in self._containers:
                            name = (c.get("Names") or [c["Id"][:12]])[0].lstrip("/")
                            self._containers[agent_id] = _Container(agent_id, user, engine, c["Id"], name)
                            self._adopted.add(agent_id)
                            log.info("adopting agent %s of user %s: container %s on %s", agent_id, user, name, engine.name)
                            self._ensure_watcher()
                            return
                if not any(isinstance(f, BaseException) for f in found):
                    break
                await asyncio.sleep(1.0 + attempt)
            log.warning("agent %s of user %s connected, but no running container of this supervisor holds it", agent_id, user)
        finally:
            self._adopting.discard(agent_id)

    async def _sweep(self) -> None:
        """Containers left by an earlier supervisor of this state dir: the exited ones are
        removed now, the running ones whose agent does not reconnect after the grace."""
        label = f"{rules.LABEL_INSTANCE}={self.supervisor_id}"
        found = await asyncio.gather(*(e.containers(label) for e in self.engines), return_exceptions=True)
        suspects: list[tuple[Engine, dict]] = []
        for engine, listing in zip(self.engines, found):
            if isinstance(listing, BaseException):
                log.info("docker host %s: cannot look for containers of an earlier supervisor: %s", engine.name,
                         getattr(listing, "detail", listing))
                continue
            for c in listing:
                agent_id = (c.get("Labels") or {}).get(rules.LABEL_AGENT)
                if agent_id in self._containers or agent_id in self._launching:
                    continue
                if c.get("State") in ("exited", "dead"):
                    log.info("removing exited agent container %s of agent %s", c["Id"][:12], agent_id)
                    await self._remove(engine, c["Id"])
                elif c.get("State") in ALIVE:
                    suspects.append((engine, c))
        if not suspects:
            return
        grace = self.config.supervisor.reconnect_grace + 2 * self._cfg.watch_interval
        log.info("%d agent containers of an earlier supervisor run; those whose agent does not reconnect within %g s "
                 "are removed", len(suspects), grace)
        await asyncio.sleep(grace)
        for engine, c in suspects:
            labels = c.get("Labels") or {}
            agent_id = labels.get(rules.LABEL_AGENT)
            if agent_id in self._containers or agent_id in self._adopted:
                continue
            log.warning("removing orphan agent container %s of user %s: its agent %s did not reconnect",
                        c["Id"][:12], labels.get(rules.LABEL_USER), agent_id)
            await self._remove(engine, c["Id"])

    def _remove(self, engine: Engine, container_id: str) -> asyncio.Future:
        """Remove a container (once, however many ask); failures are logged, not raised."""
        task = self._removals.get(container_id)
        if task is None:
            task = self._removals[container_id] = self._spawn(self._remove_now(engine, container_id))
            task.add_done_callback(lambda _: self._removals.pop(container_id, None))
        return asyncio.shield(task)

    async def _remove_now(self, engine: Engine, container_id: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._cfg.api_timeout
        try:
            await engine.remove(container_id)
            return
        except ContainerMissing:
            return
        except NameConflict:  # the engine is removing it already (e.g. it was `docker rm`ed)
            pass
        except DriverError as exc:
            log.warning("cannot remove container %s: %s", container_id[:12], exc.detail)
            return
        while loop.time() < deadline:
            await asyncio.sleep(0.1)
            try:
                await engine.inspect(container_id)
            except ContainerMissing:
                return
            except DriverError:
                break
        log.warning("container %s is still being removed after %g s", container_id[:12], self._cfg.api_timeout)


def _prepare_run_root(path: Path, uid: int, gid: int) -> None:
    """The user's run root on this machine, owned by the containers' uid (0700)."""
    path.mkdir(parents=True, exist_ok=True)
    st = path.stat()
    if (st.st_uid, st.st_gid) != (uid, gid):
        try:
            os.chown(path, uid, gid)
        except PermissionError:
            raise DriverRefused(f"cannot give {path} to uid {uid}: run the supervisor as root, or set [docker] user to "
                              "the supervisor's own uid") from None
    os.chmod(path, 0o700)
