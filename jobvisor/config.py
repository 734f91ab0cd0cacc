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
from typing import Any

from jobvisor.errors import ConfigError

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


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = _doc("SQLAlchemy async URL. Empty: SQLite file jobvisor.sqlite in the state dir (WAL).", default="")
    commit_interval: float = _doc("Seconds status updates may wait to be committed together with others.", default=0.0)


@dataclass(frozen=True)
class SupervisorConfig:
    reconnect_grace: float = _doc("Seconds a restarted supervisor waits for agents to re-announce starting/running jobs before they are reconciled as lost.", default=30.0)
    agent_lost_grace: float = _doc("Seconds an agent whose websocket dropped (but whose process may live) has to reconnect before its jobs are lost.", default=30.0)
    analysis_timeout: float = _doc("Seconds an analysis op may take; on expiry only that op fails.", default=60.0)
    io_timeout: float = _doc("Seconds an io op (list or read files, logs) may take; on expiry only that op fails.", default=30.0)
    max_message_bytes: int = _doc("Largest protocol message accepted on any channel.", default=16 * 1024 * 1024)
    per_user_cpus: int = _doc("Most cpu slots one user may hold at once per driver; 0: no cap beyond the driver's.", default=0)
    shutdown_timeout: float = _doc("Seconds `up` waits on SIGTERM for agents to stop their jobs.", default=10.0)
    agent_start_timeout: float = _doc("Seconds a newly started agent has to connect before its jobs fail with the reason.", default=60.0)
    schedule_debounce: float = _doc("Seconds the scheduler waits after a wake-up so that a burst is scheduled at once.", default=0.0)


@dataclass(frozen=True)
class GatewayConfig:
    max_body_bytes: int = _doc("Largest request body accepted (413 above).", default=8 * 1024 * 1024)
    token_cache_seconds: float = _doc("Seconds a validated token is trusted before it is looked up again; revocation takes effect within this time.", default=2.0)
    max_batch: int = _doc("Most jobs one POST /jobs may submit.", default=10_000)


@dataclass(frozen=True)
class LocalDriverConfig:
    cpus: int = _doc("CPU slots of the local driver. 0: the machine's cpu count.", default=0)
    idle_timeout: float = _doc("Seconds an agent with no work stays up before it is stopped.", default=300.0)
    run_root: str = _doc("Where run dirs are made (one per user, one per job below). Empty: <state_dir>/runs.", default="")
    stop_timeout: float = _doc("Seconds between SIGTERM and SIGKILL when an agent is stopped.", default=5.0)


@dataclass(frozen=True)
class AgentConfig:
    cancel_grace: float = _doc("Seconds between SIGTERM and SIGKILL of a canceled job's process group.", default=3.0)
    log_poll_interval: float = _doc("Seconds between checks of running jobs' output files for new bytes.", default=0.05)
    max_log_chunk: int = _doc("Most bytes of one job's output sent per poll (the rest follows; the file keeps all).", default=256 * 1024)
    max_backoff: float = _doc("Cap in seconds of the reconnect backoff.", default=5.0)
    give_up_after: float = _doc("Seconds an agent with no running jobs keeps trying to reconnect before it exits.", default=120.0)


@dataclass(frozen=True)
class LoggingConfig:
    level: str = _doc("Log level: DEBUG, INFO, WARNING, ERROR.", default="INFO")


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    local: LocalDriverConfig = field(default_factory=LocalDriverConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    @property
    def state_dir(self) -> Path:
        return Path(self.server.state_dir).expanduser() if self.server.state_dir else default_state_dir()

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite+aiosqlite:///{self.state_dir / 'jobvisor.sqlite'}"

    @property
    def supervisor_url(self) -> str:
        return self.server.supervisor_url or f"http://{self.server.supervisor_host}:{self.server.supervisor_port}"

    @property
    def agent_url(self) -> str:
        return self.server.agent_url or f"ws://{self.server.supervisor_host}:{self.server.supervisor_port}/agent"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.server.host}:{self.server.port}"

    def replace(self, section: str, **changes: Any) -> "Config":
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})


SECTIONS: dict[str, type] = {f.name: typing.get_type_hints(Config)[f.name] for f in dataclasses.fields(Config)}


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
    path = path or environ.get("JOBVISOR_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        raw = data.pop(name, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"[{name}] must be a table")
        hints = typing.get_type_hints(cls)
        values = {}
        for key, value in raw.items():
            if key not in hints:
                raise ConfigError(f"unknown key {key!r} in [{name}]")
            values[key] = _coerce(value, hints[key], f"[{name}] {key}")
        for key, tp in hints.items():
            env_name = f"JOBVISOR_{name}_{key}".upper()
            if env_name in environ:
                values[key] = _coerce(environ[env_name], tp, env_name)
        sections[name] = cls(**values)
    if data:
        raise ConfigError(f"unknown section(s) in config: {', '.join(sorted(data))}")
    return Config(**sections)


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
    out["server"]["state_dir"] = str(config.state_dir)
    out["database"]["url"] = masked(config.database_url, "url")
    return out


def field_docs() -> dict[str, dict[str, str]]:
    return {
        name: {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}
        for name, cls in SECTIONS.items()
    }
