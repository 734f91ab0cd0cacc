"""Pure rules of the docker driver: names, labels, the container's user, limits and mounts,
where the agent connects to, which host takes a new agent, and why a container ended.

Nothing here talks to an engine, so each rule has a small unit test.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from jobvisor.errors import DriverRefused

LABEL_USER = "jobvisor.user"
LABEL_KIND = "jobvisor.kind"
LABEL_AGENT = "jobvisor.agent_id"
LABEL_INSTANCE = "jobvisor.instance"

NOBODY = "65534:65534"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What a container made by etc/docker/make-local-image.sh needs from this machine (read-only).
# Not /sbin: Docker mounts its init at /sbin/docker-init (/usr/sbin is there through /usr).
HOST_RUNTIME_DIRS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/etc")
# jobvisor's own packages: with an editable install they live in the checkout, not the venv.
OWN_PACKAGES = ("jobvisor", "agent", "job_cmd", "drivers")

_NAME_SAFE = re.compile(r"[^a-zA-Z0-9_.-]")


def instance_id(state_dir: Path) -> str:
    """Which supervisor a container belongs to: a short hash of its state dir."""
    return hashlib.sha256(str(Path(state_dir).expanduser().resolve()).encode()).hexdigest()[:12]


def container_name(instance: str, kind: str, user: str) -> str:
    """Deterministic: `jobvisor-<instance>-<kind>-<user>` (a user name that is not a valid
    container name part gets its unsafe characters replaced and a hash added)."""
    safe = _NAME_SAFE.sub("_", user)
    if safe != user:
        safe = f"{safe}_{hashlib.sha256(user.encode()).hexdigest()[:8]}"
    return f"jobvisor-{instance}-{kind}-{safe}"


def labels(instance: str, kind: str, user: str, agent_id: str) -> dict[str, str]:
    return {LABEL_INSTANCE: instance, LABEL_KIND: kind, LABEL_USER: user, LABEL_AGENT: agent_id}


def check_user_name(user: str) -> None:
    """A user's run root is one path component below the driver's run root."""
    if not user or user in (".", "..") or "/" in user or "\0" in user:
        raise DriverRefused(f"user name {user!r} cannot name a directory")


def container_user(configured: str, own_uid: int, own_gid: int) -> tuple[int, int]:
    """The (uid, gid) agents run as: configured `uid[:gid]`, else our own ids, else nobody."""
    text = configured.strip()
    if not text:
        text = f"{own_uid}:{own_gid}" if own_uid != 0 else NOBODY
    uid_text, _, gid_text = text.partition(":")
    try:
        uid = int(uid_text)
        gid = int(gid_text) if gid_text else uid
    except ValueError:
        raise DriverRefused(f"[docker] user must be numeric uid[:gid], not {configured!r}") from None
    if uid == 0:
        raise DriverRefused("[docker] user must not be root (uid 0): agents and jobs run unprivileged")
    if uid < 0 or gid < 0:
        raise DriverRefused(f"[docker] user {configured!r} is not a valid uid[:gid]")
    return uid, gid


def agent_command(configured: str, host_runtime: bool, python: str = sys.executable) -> list[str]:
    import shlex

    if configured.strip():
        return shlex.split(configured)
    return [python if host_runtime else "python", "-m", "agent"]


def host_runtime_mounts(run_root: Path, python_prefixes: list[str], package_dirs: list[str]) -> list[str]:
    """Directories to bind-mount read-only at the same path for a host-runtime image: the
    system's, Python's and jobvisor's. Refuses a layout where they would expose run dirs."""
    wanted = [d for d in HOST_RUNTIME_DIRS if os.path.lexists(d)]
    for path in [*python_prefixes, *package_dirs]:
        if path and os.path.isdir(path):
            wanted.append(os.path.realpath(path))
    mounts: list[str] = []
    for path in wanted:
        if not any(_within(path, m) for m in mounts):
            mounts = [m for m in mounts if not _within(m, path)] + [path]
    root = os.path.realpath(run_root)
    for mount in mounts:
        if _within(root, mount):
            raise DriverRefused(
                f"the docker run root {root} is inside {mount}, which host_runtime mounts into every "
                "container: users would see each other's files; set [docker] run_root elsewhere",
            )
    return mounts


def _within(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def own_package_roots() -> list[str]:
    """Where Python finds jobvisor's own packages (the checkout for an editable install)."""
    import importlib.util

    roots = []
    for name in OWN_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            roots.append(str(Path(spec.origin).resolve().parent.parent))
    return sorted(set(roots))


def parse_hosts(text: str, default_slots: int) -> list[tuple[str, int]]:
    """`URL[=SLOTS], ...` -> [(url, slots)]; empty: the local engine ("") with the default."""
    hosts = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        url, sep, slots = item.rpartition("=")
        if sep and slots.strip().isdigit() and url.strip():
            count = int(slots)
            if count < 1:
                raise DriverRefused(f"[docker] hosts: {item!r} has no slots")
            hosts.append((url.strip(), count))
        else:
            hosts.append((item, default_slots))
    return hosts or [("", default_slots)]


def needs_gateway(url: str, network: str) -> bool:
    return network != "host" and _is_loopback(urlsplit(url).hostname or "")


def agent_url_for(url: str, network: str, gateway: str | None) -> str:
    """On a network other than `host`, a loopback address in the supervisor's agent URL means
    nothing inside the container: the supervisor is reached at the network's gateway."""
    if network == "host":
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not _is_loopback(host):
        return url
    if not gateway:
        raise DriverRefused(
            f"agents on docker network {network!r} cannot reach {url}: the network has no gateway; "
            "set [docker] agent_url",
        )
    netloc = gateway if ":" not in gateway else f"[{gateway}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class HostLoad:
    index: int  # order in the configuration: ties go to the first host
    agents: int
    slots: int


def pick_host(loads: list[HostLoad]) -> int | None:
    """The least-loaded host (agents per slot) among those that answered."""
    if not loads:
        return None
    return min(loads, key=lambda h: (h.agents / max(h.slots, 1), h.index)).index


def format_bytes(value: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= size:
            number = value / size
            return f"{number:.0f} {unit}" if number == int(number) else f"{number:.1f} {unit}"
    return f"{value} bytes"


def exit_reason(name: str, state: dict | None, memory: int | None = None) -> str:
    """Why an agent container is no longer running, from `State` of its inspection."""
    if state is None:
        return f"agent container {name} was removed"
    if state.get("OOMKilled"):
        limit = f" (its limit is {format_bytes(memory)})" if memory else ""
        return f"agent container {name} was killed by the kernel: out of memory{limit}"
    code = state.get("ExitCode")
    status = state.get("Status", "")
    if status in ("running", "restarting"):
        return f"agent container {name} is {status}"
    reason = f"agent container {name} exited"
    if code is not None:
        reason += f" with code {code}"
        if isinstance(code, int) and code > 128:
            try:
                reason += f" ({signal.Signals(code - 128).name})"
            except ValueError:
                pass
    if state.get("Error"):
        reason += f": {state['Error']}"
    return reason


def tls_settings(ca_cert: str, client_cert: str, client_key: str) -> dict | None:
    """The SDK's TLS settings for tcp:// engines from [docker] tls_*, or None when none is set."""
    if not (ca_cert or client_cert):
        return None
    if bool(client_cert) != bool(client_key):
        raise DriverRefused("[docker] tls_client_cert and tls_client_key go together")
    tls: dict = {"verify": ca_cert or False}
    if ca_cert:
        tls["ca_cert"] = ca_cert
    if client_cert:
        tls["client_cert"] = (client_cert, client_key)
    return tls
