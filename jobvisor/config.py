"""Configuration: one TOML file, overridden by `JOBVISOR_<SECTION>_<KEY>` environment variables.

Every section is a frozen dataclass whose fields carry their default and their meaning (the
`doc` metadata); `etc/jobvisor.example.toml` documents the same keys, and a test keeps the two
in step. Defaults make `jobvisor up` work on a laptop with no file at all.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from jobvisor import env_names
from jobvisor.errors import ConfigError
from jobvisor.job_limits import SETTINGS as LIMIT_SETTINGS
from jobvisor.limits import MAX_MESSAGE_BYTES
from jobvisor.protocol.agent_wire import AGENT_PATH

SECRET_KEY = re.compile(r"(secret|password|token|passphrase)", re.IGNORECASE)


def _doc(text: str, **kwargs: Any) -> Any:
    return field(metadata={"doc": text}, **kwargs)


def default_state_dir() -> Path:
    """Per-user data dir: $XDG_DATA_HOME/jobvisor, else ~/.local/share/jobvisor."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "jobvisor"


@dataclass(frozen=True)
class ServerConfig:
    state_dir: str = _doc("Where the database, secrets, logs and local run dirs live. Empty: the per-user data dir.", default="")
    host: str = _doc("Address the gateway (the public HTTP API) binds to.", default="127.0.0.1")
    port: int = _doc("Port of the gateway.", default=8765)
    supervisor_host: str = _doc("Address the supervisor (internal ops, agent websockets) binds to.", default="127.0.0.1")
    supervisor_port: int = _doc("Port of the supervisor. Fixed, so agents find a restarted supervisor again.", default=8766)
    supervisor_url: str = _doc("URL the gateway uses to reach the supervisor. Empty: derived from supervisor_host/port.", default="")
    agent_url: str = _doc("URL agents connect back to (ws:// or wss://). Empty: derived from supervisor_host/port.", default="")
    in_process: bool = _doc("`jobvisor up` links its gateway to its supervisor in-process (no HTTP between them); false: over HTTP at supervisor_url, as separate hosts would.", default=True)


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = _doc(
        "Where jobs (and the gateway's users and tokens) are stored. Empty: SQLite files in the state dir "
        "(jobvisor.sqlite, gateway.sqlite; WAL). 'postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE' "
        "(or postgresql://...): that PostgreSQL database holds both, for production. `jobvisor up` "
        "creates or upgrades the tables on start (Alembic migrations).",
        default="",
    )
    commit_interval: float = _doc(
        "Seconds between commits under load: after a commit of many updates, the next waits until "
        "this long after it started, so a burst costs fewer, larger commits. A lone job's updates "
        "are committed at once. 0: every commit starts as soon as the previous one ends.",
        default=0.01,
    )
    inline_rows: int = _doc(
        "A SQLite commit of at most this many rows (a lone job's submit, or its start and end) is made "
        "on the supervisor's event loop, where it appends a few pages to the WAL and syncs nothing: far "
        "cheaper than a trip to the writer thread. 0: every commit goes through the writer thread "
        "(a state dir on a slow or network disk).",
        default=16,
    )

    def __post_init__(self) -> None:
        if self.url and _database_scheme(self.url) not in DATABASE_SCHEMES:
            raise ConfigError(
                f"[database] url: {self.url.split('://', 1)[0]!r} is not a database jobvisor stores in; "
                "use postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE, or leave it empty for SQLite"
            )


# the URL schemes [database] url may have, and the async driver each one is used through
DATABASE_SCHEMES = {
    "sqlite": "sqlite+aiosqlite", "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg", "postgresql+asyncpg": "postgresql+asyncpg",
}


def _database_scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


@dataclass(frozen=True)
class SupervisorConfig:
    reconnect_grace: float = _doc("Seconds a restarted supervisor waits for agents to re-announce starting/running jobs before they are reconciled as lost.", default=30.0)
    agent_lost_grace: float = _doc("Seconds an agent whose websocket dropped (but whose process may live) has to reconnect before its jobs are lost.", default=30.0)
    analysis_timeout: float = _doc("Seconds an analysis op may take; on expiry only that op fails.", default=60.0)
    io_timeout: float = _doc("Seconds an io op (list or read files, logs) may take; on expiry only that op fails.", default=30.0)
    max_message_bytes: int = _doc("Largest protocol message accepted on any channel.", default=MAX_MESSAGE_BYTES)
    per_user_cpus: int = _doc("Most cpu slots one user may hold at once per driver; 0: no cap beyond the driver's.", default=0)
    shutdown_timeout: float = _doc("Seconds `up` waits on SIGTERM (Ctrl-C, POST /admin/shutdown) for agents to stop their jobs, which run again as their next attempt when it starts.", default=10.0)
    agent_start_timeout: float = _doc("Seconds a newly started agent has to connect before its jobs fail with the reason.", default=60.0)
    prefetch: int = _doc("Jobs sent ahead to an agent beyond its cpu slots while only one user has jobs waiting for the driver, so a freed slot is reused without a round trip; 0 turns it off.", default=32)
    schedule_debounce: float = _doc("Seconds the scheduler waits after a wake-up so that a burst is scheduled at once.", default=0.0)
    retry_backoff: float = _doc("Seconds before a job's first retry (its attempt ended lost, or as its retry_on allows); doubled for each later retry. 0: retry at once.", default=1.0)
    retry_backoff_max: float = _doc("The longest wait before a retry, however many attempts came before.", default=300.0)
    keep_inputs_days: float = _doc("Days a job's uploaded inputs (and the files a workflow job fetched from another driver) stay in the state dir after the job ends, so that `resubmit` can run it again with them; pruned hourly and at start. 0: deleted as soon as the job ends (a resubmit of it is then refused).", default=7.0)

    def __post_init__(self) -> None:
        if not self.keep_inputs_days >= 0:
            raise ConfigError("[supervisor] keep_inputs_days must be 0 (delete at the job's end) or more")


@dataclass(frozen=True)
class GatewayConfig:
    max_body_bytes: int = _doc("Largest request body accepted (413 above).", default=8 * 1024 * 1024)
    token_cache_seconds: float = _doc("Seconds a validated token is trusted before it is looked up again; revocation takes effect within this time.", default=2.0)
    max_batch: int = _doc("Most jobs one POST /jobs may submit.", default=10_000)
    max_input_bytes: int = _doc("Largest total size of the files one multipart POST /jobs uploads as job inputs (413 above). They are kept in the state dir until their jobs end, and [supervisor] keep_inputs_days after.", default=256 * 1024 * 1024)
    max_array: int = _doc("Most elements of one job array (POST /jobs with `array`, `submit --array`).", default=100_000)


@dataclass(frozen=True)
class WorkflowsConfig:
    max_jobs: int = _doc("Most jobs one workflow document may hold (400 above, naming `jobs`).", default=100_000)
    max_transfer: int = _doc(
        "Largest file (bytes) a workflow job may pass to a job on a driver that shares no file system with "
        "its producer: such a file goes through the supervisor, inside the dependent's run message, so keep it "
        "well under [supervisor] max_message_bytes. 0: files never go through the supervisor, and a document "
        "whose input would have to is refused (400, naming the input). A file found larger at run time fails "
        "its dependent with the reason.",
        default=8 * 1024 * 1024,
    )


@dataclass(frozen=True)
class LocalDriverConfig:
    cpus: int = _doc("CPU slots of the local driver. 0: the machine's cpu count.", default=0)
    idle_timeout: float = _doc("Seconds an agent with no work stays up before it is stopped.", default=300.0)
    run_root: str = _doc("Where run dirs are made (one per user, one per job below). Empty: <state_dir>/runs.", default="")
    stop_timeout: float = _doc("Seconds between SIGTERM and SIGKILL when an agent is stopped.", default=5.0)
    workdirs: str = _doc("Directories (comma separated) under which a job may run in place (`workdir`, `jobvisor submit --workdir`) instead of in its own run dir. Such a job reads and writes there directly, beside whatever else is there, so this leaves the run dir's isolation: empty (the default) allows none.", default="")
    limits: str = _doc("How the local driver enforces a job's memory and cpus: 'auto' (cgroups v2 where this process may make them: root, or a delegated cgroup; else RLIMIT_AS for memory and no cpu limit), 'cgroup', 'rlimit', or 'none'.", default="auto")

    def __post_init__(self) -> None:
        if self.limits not in LIMIT_SETTINGS:
            raise ConfigError(f"[local] limits: {self.limits!r} is not one of {', '.join(LIMIT_SETTINGS)}")


@dataclass(frozen=True)
class DockerDriverConfig:
    hosts: str = _doc("Docker engines the driver places agent containers on, comma separated, each with its cpu slots if given: 'unix:///var/run/docker.sock=4, tcp://build1:2376=16'. Empty: the local engine (DOCKER_HOST, else the default socket).", default="")
    tls_ca_cert: str = _doc("CA certificate (PEM file) that tcp:// engines' certificates must chain to. Empty: no TLS.", default="")
    tls_client_cert: str = _doc("Client certificate (PEM file) presented to tcp:// engines (with tls_client_key).", default="")
    tls_client_key: str = _doc("Private key (PEM file) of the client certificate.", default="")
    api_timeout: float = _doc("Seconds one call to a Docker engine may take; an engine that does not answer in time fails the op with a clear error.", default=10.0)
    slots: int = _doc("CPU slots of a host that gives none in `hosts`. 0: this machine's cpu count.", default=0)
    image: str = _doc("Image of agent containers: etc/docker/Dockerfile builds one; etc/docker/make-local-image.sh makes one without a registry.", default="jobvisor-agent:latest")
    pull: bool = _doc("Pull the image on a host that lacks it; false: fail the jobs with an error naming the image.", default=False)
    agent_command: str = _doc("Command that starts the agent in the container. Empty: 'python -m agent' (with host_runtime: this supervisor's Python).", default="")
    host_runtime: bool = _doc("Bind-mount this machine's /usr, /lib, /bin, /etc, Python and jobvisor read-only into agent containers (for the image of make-local-image.sh; local engine only).", default=False)
    cpus: float = _doc("CPU limit of each agent container (--cpus). 0: no limit beyond the host's.", default=0.0)
    memory: str = _doc("Memory limit of each agent container (--memory, e.g. '4G'; no swap on top). Empty: no limit. Jobs asking for more are refused at submit.", default="")
    user: str = _doc("uid[:gid] the agent and its jobs run as in the container; never root. Empty: the supervisor's own uid, or 65534 (nobody) when the supervisor is root.", default="")
    network: str = _doc("Network of agent containers: 'host' (agents reach the supervisor on loopback) or 'bridge' (or another network name; agents reach the supervisor at the network's gateway).", default="host")
    agent_url: str = _doc("URL agents in containers connect to. Empty: the supervisor's agent URL, with a loopback address replaced by the network's gateway on non-host networks.", default="")
    run_root: str = _doc("Directory of run dirs on the Docker hosts (one per user, mounted into only that user's container at the same path). Empty: <state_dir>/docker-runs.", default="")
    stop_timeout: float = _doc("Seconds a stopped agent container has between SIGTERM and SIGKILL.", default=5.0)
    idle_timeout: float = _doc("Seconds an agent container with no work stays up before it is stopped.", default=300.0)
    watch_interval: float = _doc("Seconds between checks that agent containers still run (a container killed from outside makes its jobs lost).", default=1.0)


@dataclass(frozen=True)
class SbatchConfig:
    cluster: str = _doc("Name of the Slurm cluster this section describes (what users pass to `jobvisor login NAME` and `--cluster NAME`), and the cluster of sbatch jobs that name none.", default="cluster")
    login_host: str = _doc("SSH login node of the cluster. Empty: this section describes no cluster; [sbatch.clusters.NAME] tables may still (see below).", default="")
    login_port: int = _doc("SSH port of the login node.", default=22)
    known_hosts: str = _doc("known_hosts file holding the login node's host key. Empty: ~/.ssh/known_hosts of the user running jobvisor.", default="")
    accept_unknown_host_keys: bool = _doc("TEST ONLY: connect without verifying the login node's host key (open to man-in-the-middle attacks).", default=False)
    key_file: str = _doc("Private key the operator provides for logins with `--key` (each user gives their cluster username). Empty: password logins only.", default="")
    key_user: str = _doc("With key_file: the cluster account every jobvisor user's sbatch jobs run as, without any login (a service account). Empty: each user logs in.", default="")
    work_dir: str = _doc("Remote work dir template, expanded by the login node's shell (agent logs, run dirs runs/USER/JOB).", default="${SCRATCH:-$HOME}/jobvisor")
    agent_command: str = _doc("Command that starts a jobvisor agent on the login node (run by /bin/sh in the work dir).", default="python3 -m agent")
    agent_url: str = _doc("URL agents on this cluster connect back to (ws:// or wss://). Empty: [server] agent_url.", default="")
    partition: str = _doc("Default Slurm partition (--partition) of jobs that name none. Empty: Slurm's default.", default="")
    qos: str = _doc("Default Slurm QOS (--qos). Empty: none.", default="")
    account: str = _doc("Default Slurm account (--account). Empty: the user's default account.", default="")
    sbatch_extra: str = _doc("Site extras: sbatch options added to every job, e.g. '--licenses=scratch --exclusive'.", default="")
    poll_interval: float = _doc("Seconds between two squeue calls of an agent (one call covers all of its jobs).", default=5.0)
    max_queued_jobs: int = _doc("Most jobs one user may have in the Slurm queue at once; more wait in the agent.", default=100)
    cpus: int = _doc("CPU slots the supervisor hands out for this cluster across users (Slurm does the real scheduling).", default=100000)
    connect_timeout: float = _doc("Seconds an SSH connect (and its login) may take.", default=20.0)
    keepalive_interval: float = _doc("Seconds between SSH keepalives on the open connections.", default=30.0)
    command_timeout: float = _doc("Seconds a command on the login node (start an agent, sbatch, squeue) may take.", default=60.0)
    agent_restarts: int = _doc("Times an agent that died on the login node is started again (its Slurm jobs go on) before its jobs are given up.", default=3)
    idle_timeout: float = _doc("Seconds an agent on the login node with no jobs stays up before it is stopped (a new one needs the user's SSH connection, or a new login once it dropped).", default=1800.0)
    stop_timeout: float = _doc("Seconds a stopped agent on the login node has between SIGTERM and SIGKILL.", default=10.0)


@dataclass(frozen=True)
class AgentConfig:
    cancel_grace: float = _doc("Seconds between SIGTERM and SIGKILL of a canceled job's process group.", default=3.0)
    log_poll_interval: float = _doc("Seconds between checks of running jobs' output files for new bytes.", default=0.05)
    max_log_chunk: int = _doc("Most bytes of one job's output sent per poll (the rest follows; the file keeps all).", default=256 * 1024)
    max_backoff: float = _doc("Cap in seconds of the reconnect backoff.", default=5.0)
    give_up_after: float = _doc("Seconds an agent with no running jobs keeps trying to reconnect before it exits.", default=120.0)
    spawn_threads: int = _doc("Worker threads that start jobs (the C library's posix_spawn releases the GIL, so the loop goes on while a job's program is exec'd); 0: on the event loop, which costs the least CPU per job (no hand-offs of the GIL between threads) and measured fastest on a 2-core machine.", default=0)


@dataclass(frozen=True)
class EventsConfig:
    keep_days: float = _doc("Events (job transitions and progress, workflow changes, user and system events) older than this many days are pruned. 0: none is pruned for its age.", default=14.0)
    keep_count: int = _doc("Most events kept: the oldest beyond this many are pruned. 0: none is pruned for their number. The newest event is always kept, so ids go on increasing after a restart.", default=1_000_000)
    prune_interval: float = _doc("Seconds between two prunings, made by the store's writer in the background, a few thousand events at a time.", default=300.0)

    def __post_init__(self) -> None:
        if self.keep_days < 0 or self.keep_count < 0:
            raise ConfigError("[events] keep_days and keep_count must be 0 (no limit) or more")
        if not self.prune_interval > 0:
            raise ConfigError("[events] prune_interval must be more than 0 seconds")


@dataclass(frozen=True)
class LoggingConfig:
    level: str = _doc("Log level: DEBUG, INFO, WARNING, ERROR.", default="INFO")


CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    workflows: WorkflowsConfig = field(default_factory=WorkflowsConfig)
    local: LocalDriverConfig = field(default_factory=LocalDriverConfig)
    sbatch: SbatchConfig = field(default_factory=SbatchConfig)
    docker: DockerDriverConfig = field(default_factory=DockerDriverConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    # more Slurm clusters: the [sbatch.clusters.NAME] tables, each [sbatch] with its own keys
    more_clusters: tuple[SbatchConfig, ...] = ()

    @property
    def clusters(self) -> dict[str, SbatchConfig]:
        """The Slurm clusters the sbatch driver can reach, by name: [sbatch] itself when it
        names a login host, then every [sbatch.clusters.NAME]."""
        found = {self.sbatch.cluster: self.sbatch} if self.sbatch.login_host else {}
        found.update((c.cluster, c) for c in self.more_clusters)
        return found

    @property
    def default_cluster(self) -> str:
        """The cluster of sbatch jobs that name none: [sbatch] cluster when it is one of the
        clusters, else the only cluster; empty when that is ambiguous (jobs must name one)."""
        clusters = self.clusters
        if self.sbatch.cluster in clusters:
            return self.sbatch.cluster
        return next(iter(clusters)) if len(clusters) == 1 else ""

    @property
    def state_dir(self) -> Path:
        return Path(self.server.state_dir).expanduser() if self.server.state_dir else default_state_dir()

    @property
    def database_url(self) -> str:
        """[database] url with its async driver named (postgresql:// is postgresql+asyncpg://),
        else SQLite's file in the state dir."""
        url = self.database.url
        if not url:
            return f"sqlite+aiosqlite:///{self.state_dir / 'jobvisor.sqlite'}"
        scheme = _database_scheme(url)
        return DATABASE_SCHEMES[scheme] + url[len(scheme):]

    @property
    def supervisor_url(self) -> str:
        return self.server.supervisor_url or f"http://{self.server.supervisor_host}:{self.server.supervisor_port}"

    @property
    def agent_url(self) -> str:
        return self.server.agent_url or f"ws://{self.server.supervisor_host}:{self.server.supervisor_port}{AGENT_PATH}"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.server.host}:{self.server.port}"

    def replace(self, section: str, **changes: Any) -> "Config":
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})


SECTIONS: dict[str, type] = {
    f.name: tp for f in dataclasses.fields(Config) if dataclasses.is_dataclass(tp := typing.get_type_hints(Config)[f.name])
}


def _coerce(value: Any, tp: Any, where: str) -> Any:
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
                return value.lower() in {"1", "true", "yes", "on"}
            raise ValueError(value)
        if tp is int:
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if tp is str:
            if not isinstance(value, (str, int, float)):
                raise ValueError(value)
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not a valid {tp.__name__}") from None
    return value


def load_config(path: str | os.PathLike | None = None, environ: dict[str, str] | None = None) -> Config:
    """Read the TOML file (if any), then apply environment overrides; unknown keys are errors."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    path = path or environ.get(env_names.CONFIG_FILE)
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    sections: dict[str, Any] = {}
    more_clusters: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        raw = data.pop(name, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"[{name}] must be a table")
        if name == "sbatch":
            more_clusters = raw.pop("clusters", {})
        sections[name] = cls(**_section_values(cls, raw, f"[{name}]", f"{env_names.CONFIG_PREFIX}{name}_", environ))
    if data:
        raise ConfigError(f"unknown section(s) in config: {', '.join(sorted(data))}")
    return Config(**sections, more_clusters=_more_clusters(sections["sbatch"], more_clusters, environ))


def _section_values(cls: type, raw: dict, where: str, env_prefix: str, environ: Mapping[str, str],
                    base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The keys of one table, checked and coerced, then overridden by `env_prefix + KEY`."""
    hints = typing.get_type_hints(cls)
    values = dict(base or {})
    for key, value in raw.items():
        if key not in hints:
            raise ConfigError(f"unknown key {key!r} in {where}")
        values[key] = _coerce(value, hints[key], f"{where} {key}")
    for key, tp in hints.items():
        env_name = f"{env_prefix}{key}".upper()
        if env_name in environ:
            values[key] = _coerce(environ[env_name], tp, env_name)
    return values


def _more_clusters(sbatch: SbatchConfig, tables: Any, environ: Mapping[str, str]) -> tuple[SbatchConfig, ...]:
    """[sbatch.clusters.NAME] tables: each starts from [sbatch] (shared site settings such as
    agent_command or poll_interval) and overrides what differs; JOBVISOR_SBATCH_CLUSTERS_NAME_KEY
    (NAME upper-cased, '-' and '.' as '_') overrides a key of a cluster the file names."""
    if not isinstance(tables, dict):
        raise ConfigError("[sbatch] clusters must be a table of tables: [sbatch.clusters.NAME]")
    inherited = {f.name: getattr(sbatch, f.name) for f in dataclasses.fields(sbatch)}
    out = []
    for name, raw in tables.items():
        where = f"[sbatch.clusters.{name}]"
        if not CLUSTER_NAME.match(name):
            raise ConfigError(f"{where}: a cluster name is letters, digits, '_', '.' and '-' (at most 64)")
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be a table")
        if "cluster" in raw:
            raise ConfigError(f"{where}: the table's name is the cluster's name; drop its 'cluster' key")
        env_prefix = f"{env_names.CONFIG_PREFIX}SBATCH_CLUSTERS_" + re.sub(r"[^A-Za-z0-9]", "_", name) + "_"
        values = _section_values(SbatchConfig, raw, where, env_prefix, environ, base=inherited)
        values["cluster"] = name
        if not values["login_host"]:
            raise ConfigError(f"{where}: login_host is required")
        if name == sbatch.cluster and sbatch.login_host:
            raise ConfigError(f"{where}: [sbatch] already describes cluster {name!r}; give one of them another name")
        out.append(SbatchConfig(**values))
    if sbatch.login_host and not CLUSTER_NAME.match(sbatch.cluster):
        raise ConfigError("[sbatch] cluster: a cluster name is letters, digits, '_', '.' and '-' (at most 64)")
    return tuple(out)


def masked(value: Any, key: str) -> Any:
    if isinstance(value, str) and value and SECRET_KEY.search(key):
        return "********"
    if isinstance(value, str) and "://" in value and "@" in value:
        return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1********@", value)
    return value


def describe(config: Config) -> dict[str, dict[str, Any]]:
    """The effective configuration with secrets masked: what `jobvisor config show` prints."""
    out: dict[str, dict[str, Any]] = {}
    for name in SECTIONS:
        section = getattr(config, name)
        out[name] = {f.name: masked(getattr(section, f.name), f.name) for f in dataclasses.fields(section)}
    if config.more_clusters:
        out["sbatch"]["clusters"] = {
            c.cluster: {f.name: masked(getattr(c, f.name), f.name) for f in dataclasses.fields(c) if f.name != "cluster"}
            for c in config.more_clusters
        }
    out["server"]["state_dir"] = str(config.state_dir)
    out["database"]["url"] = masked(config.database_url, "url")
    return out


def field_docs() -> dict[str, dict[str, str]]:
    return {
        name: {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}
        for name, cls in SECTIONS.items()
    }
