"""Which `jobvisor up` runs on this machine, and with which state dir.

`up` records itself in a file of this user's runtime dir, one file per gateway port, and
removes it when it stops. The commands that write a state dir directly (`user add`,
`token create` without an API token) look the server they would talk to up there, so they
write the state dir it reads instead of a new one whose tokens it would refuse (401).

The file holds no secret: the gateway's URL, the pid, the state dir and the supervisor's URL
(so that an `up` that finds a port taken can say which `up` holds it).
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from drivers.process_watch import pid_alive

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0", "::", ""})


@dataclass(frozen=True, slots=True)
class RunningServer:
    url: str
    pid: int
    state_dir: Path
    supervisor_url: str = ""


def registry_dir() -> Path:
    """$XDG_RUNTIME_DIR/jobvisor, else a directory of this user's own in the temp dir."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "jobvisor"
    return Path(tempfile.gettempdir()) / f"jobvisor-{os.getuid()}"


def _entry(port: int) -> Path:
    return registry_dir() / f"up-{port}.json"


def _port_of(url: str) -> int | None:
    parts = urllib.parse.urlsplit(url)
    if (parts.hostname or "") not in LOOPBACK:
        return None  # another machine's server: its state dir is not ours to find
    try:
        return parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None


def record(url: str, state_dir: Path, supervisor_url: str = "") -> Path | None:
    """`up` (this process) serves `url` from `state_dir`: say so; the file to remove at stop.
    None when it cannot be written (the commands then simply do not find this server)."""
    port = _port_of(url)
    if port is None:
        return None
    path = _entry(port)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"url": url, "pid": os.getpid(), "state_dir": str(state_dir),
                                  "supervisor_url": supervisor_url}))
        os.replace(tmp, path)
    except OSError:
        return None
    return path


def forget(path: Path | None) -> None:
    if path is None:
        return
    try:
        data = json.loads(path.read_text())
        if data.get("pid") == os.getpid():  # a newer `up` on the same port may have replaced it
            path.unlink()
    except (OSError, ValueError):
        pass


def running_at(url: str) -> RunningServer | None:
    """The `up` of this user that serves `url` on this machine, if one does."""
    port = _port_of(url)
    return None if port is None else _read(_entry(port))


def running_on_port(port: int) -> RunningServer | None:
    """The `up` of this user on this machine whose gateway or supervisor listens on `port`."""
    try:
        paths = sorted(registry_dir().glob("up-*.json"))
    except OSError:
        return None
    for path in paths:
        server = _read(path)
        if server is not None and port in (_port_of(server.url), server.supervisor_url and _port_of(server.supervisor_url)):
            return server
    return None


def _read(path: Path) -> RunningServer | None:
    """An entry of this user whose process is alive."""
    try:
        if path.stat().st_uid != os.getuid():
            return None
        data = json.loads(path.read_text())
        server = RunningServer(str(data["url"]), int(data["pid"]), Path(data["state_dir"]),
                               str(data.get("supervisor_url") or ""))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return server if pid_alive(server.pid) else None
