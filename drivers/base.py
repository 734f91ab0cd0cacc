"""The driver interface shared by local, docker and sbatch, and the registry of drivers.

A driver owns three things: how to start and stop one agent for a (user, target) pair, its cpu
slots, and the run dir layout on its compute side. Everything else (queues, fairness, job
state, websockets) belongs to the supervisor, so a new driver is a few async methods.

A *target* is one instance of a driver: its own queue, slots and agents. Most drivers have one
(target "local", "docker"); the sbatch driver has one per configured Slurm cluster
("sbatch:perlmutter"), so each user gets one agent and one SSH login per cluster.

Optional abilities are declared, never probed: a driver whose users log in before their agents
start returns its `Logins` from `DriverBase.logins` (None otherwise), and the driver that serves
the configured clusters is the installed one whose `instance_resource` is CLUSTER_RESOURCE
(`kind_serving`). Nothing here names a concrete driver.

Making an instance is cheap and does no I/O (background work such as the docker driver's sweep
of old containers is started as a task): the supervisor makes one whenever a job, a login or a
reconnecting agent names its target. It raises DriverError only, for a configuration it cannot
work with.
"""

from __future__ import annotations

import abc
import importlib.metadata
import logging
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

from jobvisor import env_names
from jobvisor.suggest import unknown_name
from jobvisor.config import Config
from jobvisor.errors import DriverRefused, InvalidRequest
from jobvisor.ids import AgentId, JobId, UserId
from jobvisor.resources import Resources
from jobvisor.sbatch_keys import CLUSTER_RESOURCE

log = logging.getLogger(__name__)


TARGET_SEP = ":"


def target_name(kind: str, instance: str = "") -> str:
    """The supervisor's name of a driver instance, as jobs and agents store it."""
    return f"{kind}{TARGET_SEP}{instance}" if instance else kind


def split_target(target: str) -> tuple[str, str]:
    """(kind, instance) of a target name; the instance is empty for single-instance drivers."""
    kind, _, instance = target.partition(TARGET_SEP)
    return kind, instance


def agent_settings_env(config: Config) -> dict[str, str]:
    """What an agent reads of the configuration, as the JOBVISOR_<SECTION>_<KEY> variables that
    override any file: an agent has no file of its own (in a container, on a cluster), or not
    the one `up` was given with --config."""
    env = {}
    for section in ("agent", "logging"):
        values = getattr(config, section)
        for f in dataclasses.fields(values):
            env[env_names.config_name(section, f.name)] = str(getattr(values, f.name))
    env[env_names.config_name("supervisor", "max_message_bytes")] = str(config.supervisor.max_message_bytes)
    env[env_names.config_name("supervisor", "io_timeout")] = str(config.supervisor.io_timeout)
    return env


def agent_env(spec: "AgentSpec", url: str) -> dict[str, str]:
    """Who the agent is and where it connects, as it reads them (see `agent.app`). The token
    is not in it: each driver hands it over its own way (environment, or a script on stdin)."""
    return {env_names.AGENT_ID: spec.agent_id, env_names.AGENT_URL: url, env_names.AGENT_USER: spec.user,
            env_names.AGENT_KIND: spec.kind}


@dataclass(frozen=True)
class AgentSpec:
    """Everything a driver needs to start one agent. The token is a secret: drivers pass it
    in the agent's environment or on its stdin, never on a command line, and never log it."""

    agent_id: AgentId
    user: UserId
    kind: str  # the driver's target name (see target_name)
    token: str = field(repr=False)
    url: str  # where the agent connects back to (ws:// or wss://)


class DriverHost(Protocol):
    """What the supervisor offers a driver."""

    def agent_exited(self, agent_id: AgentId, reason: str) -> None:
        """The agent's process (container, ssh session) is gone: its jobs are lost."""


class Logins(Protocol):
    """The logins of a driver instance whose users must log in before an agent of theirs can
    start (the sbatch driver: one SSH connection per user and cluster). Credentials are used for
    the login only and never kept."""

    async def login(self, user: UserId, cluster: str, username: str, password: str | None = None,
                    otp: str | None = None, use_key: bool = False) -> dict:
        """Log `user` in (their session, as `session` says); LoginFailed (an OpError) when
        refused, InvalidRequest for missing credentials, DriverError when the far side fails."""

    def logout(self, user: UserId) -> bool:
        """Drop the user's login (running agents go on); False when there was none."""

    def session(self, user: UserId) -> dict:
        """The user's login as it stands (no secrets): cluster, logged_in, username, method,
        work_dir."""


class DriverBase(abc.ABC):
    kind: ClassVar[str]
    # the resource that names a job's instance of this driver (CLUSTER_RESOURCE for the driver
    # of the configured clusters); the supervisor writes the chosen instance there, so a job
    # shows where it runs
    instance_resource: ClassVar[str] = ""

    def __init__(self, config: Config, host: DriverHost, instance: str = "") -> None:
        self.config = config
        self.host = host
        self.instance = instance

    @property
    def target(self) -> str:
        """This driver instance's name: the key of its queue and of its users' agents."""
        return target_name(self.kind, self.instance)

    @property
    def idle_timeout(self) -> float:
        """Seconds an agent of this driver with no work stays up before it is stopped."""
        return self.config.local.idle_timeout

    @classmethod
    def instance_for(cls, config: Config, resources: Resources) -> str:
        """Which instance of this driver a job with these resources goes to (sbatch: the
        cluster it names, else the default one). Raises InvalidRequest when there is none."""
        return ""

    @property
    @abc.abstractmethod
    def cpus_total(self) -> int:
        """CPU slots this driver hands out across all users."""

    @abc.abstractmethod
    def run_dir(self, user: UserId, job_id: JobId) -> str:
        """The job's run dir as the agent sees it."""

    @abc.abstractmethod
    async def start_agent(self, spec: AgentSpec) -> dict:
        """Start an agent; return facts worth showing (pid, host, container id).

        Raises DriverUnavailable when the backend does not answer (retried), DriverRefused when
        retrying cannot help (a missing image, a bad setting, refused credentials)."""

    @abc.abstractmethod
    async def stop_agent(self, agent_id: AgentId) -> None:
        """Stop an agent: polite first (SIGTERM), then forceful after the driver's timeout."""

    def adopt_agent(self, agent_id: AgentId, user: UserId, pid: int, hostname: str) -> None:
        """An agent this driver instance did not start (a supervisor restart) reconnected:
        watch it from now on so its death is noticed."""

    @property
    def logins(self) -> Logins | None:
        """This instance's logins, when its users must log in before an agent starts; None
        for a driver that needs no login (the default)."""
        return None

    def login_required(self, user: UserId) -> str | None:
        """Why a new agent of `user` cannot be started until the user logs in (sbatch), or
        None. The supervisor keeps such a user's jobs `queued` with this reason meanwhile."""
        return None

    def status(self) -> dict:
        """Facts about this driver instance for `GET /status` (the local driver: how it enforces
        jobs' memory and cpus)."""
        return {}

    def input_source(self, stored: Path) -> str | None:
        """Where this driver's agents see a file the supervisor keeps (an uploaded input), or
        None when they cannot (another host: the supervisor sends its bytes)."""
        return None

    def known_codes(self) -> frozenset[str] | None:
        """The codes this driver's agents can run, when the supervisor knows them (the local
        driver: those installed here); None when only the agent knows (an image, a cluster)."""
        return None

    def check_workdir(self, workdir: str) -> str:
        """A job's `workdir` as it will be used; InvalidRequest (field `workdir`) where this
        driver runs every job in its own run dir."""
        raise InvalidRequest(f"the {self.kind} driver runs every job in its own run dir; workdir is for the "
                             "local driver", field="workdir")

    def validate(self, resources: Resources) -> None:
        if resources.cpus > self.cpus_total:
            raise InvalidRequest(
                f"the job asks for {resources.cpus} cpus but the {self.target} driver has {self.cpus_total}",
                field="resources.cpus",
            )

    async def close(self) -> None:
        """Release what the driver holds (not the agents: the supervisor stops those)."""


def available_drivers() -> dict[str, type[DriverBase]]:
    """Drivers are plugins of the entry-point group `jobvisor.drivers` (local is built in)."""
    found: dict[str, type[DriverBase]] = {}
    for ep in importlib.metadata.entry_points(group="jobvisor.drivers"):
        try:
            found[ep.name] = ep.load()
        except Exception as exc:  # a broken plugin must not stop the others
            log.warning("driver plugin %s cannot be loaded: %s", ep.name, exc)
    if "local" not in found:
        from drivers.local import LocalDriver

        found["local"] = LocalDriver
    return found


def kind_serving(instance_resource: str = CLUSTER_RESOURCE) -> str | None:
    """The installed driver whose instances jobs name with `instance_resource` (by default the
    driver of the configured Slurm clusters), or None when no installed driver serves it."""
    for kind, cls in sorted(available_drivers().items()):
        if cls.instance_resource == instance_resource:
            return kind
    return None


def driver_class(kind: str) -> type[DriverBase]:
    drivers = available_drivers()
    if kind not in drivers:
        raise DriverRefused(unknown_name("driver", kind, sorted(drivers), "installed drivers"))
    return drivers[kind]


def make_driver(target: str, config: Config, host: DriverHost) -> DriverBase:
    kind, instance = split_target(target)
    return driver_class(kind)(config, host, instance)
