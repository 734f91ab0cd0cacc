"""What `jobvisor up` says when a port of its is taken: which option moves it, and who holds it.

"Address already in use" alone leaves a new user guessing whether a jobvisor of theirs is
already running (then the thing to do is to use it, or stop it) or some other program took
the port (then another port is the way). The holder is found, in order: an `up` of this user
on this machine that recorded the port (`jobvisor.cli.running`: its pid, URL and state dir);
else whatever answers on the port, asked as jobvisor's gateway (`GET /api/v1/status`) or
supervisor (`GET /internal/health`) would answer.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request

from jobvisor.cli import running
from jobvisor.errors import ListenError

PROBE_TIMEOUT = 2.0
# what each server's port is set with
OPTIONS = {
    "gateway": "--port ([server] port)",
    "supervisor": "--supervisor-port ([server] supervisor_port)",
}
HOSTS = {
    "gateway": "--host ([server] host)",
    "supervisor": "[server] supervisor_host",
}
# a path that each jobvisor server answers without a token, and how its answer is recognized
PROBES = {
    "gateway": ("/api/v1/status", lambda data: isinstance(data.get("gateway"), dict) and "version" in data["gateway"]),
    "supervisor": ("/internal/health", lambda data: data == {"ok": True}),
}


def explain(exc: ListenError) -> str:
    """The one line `up` prints for a port it cannot bind."""
    if not exc.in_use:  # an address not of this machine, a privileged port...
        return f"{exc}; give another {HOSTS.get(exc.what, '--host')} or {OPTIONS.get(exc.what, '--port')}"
    option = OPTIONS.get(exc.what, "--port")
    server = running.running_on_port(exc.port)
    if server is not None:
        return (f"{exc}: another jobvisor up uses it (pid {server.pid}, {server.url}, state dir {server.state_dir}); "
                f"use that one, stop it first, or give another {option}")
    if answers_as_jobvisor(exc.what, exc.host, exc.port):
        return f"{exc}: another jobvisor {exc.what} answers there; use it, stop it first, or give another {option}"
    return f"{exc}: another program (not a jobvisor {exc.what}) holds it; give another {option}"


def answers_as_jobvisor(what: str, host: str, port: int) -> bool:
    """Whether a jobvisor `what` (gateway, supervisor) answers on host:port."""
    probe = PROBES.get(what)
    if probe is None:
        return False
    path, looks_like = probe
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    url_host = f"[{host}]" if ":" in host else host
    try:
        with urllib.request.urlopen(f"http://{url_host}:{port}{path}", timeout=PROBE_TIMEOUT) as resp:
            data = json.loads(resp.read(65536))
    except (OSError, ValueError, http.client.HTTPException):
        return False
    return isinstance(data, dict) and bool(looks_like(data))
