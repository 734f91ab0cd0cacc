"""The real Docker engine as the docker tests use it: whether it is here (and how to get it),
the driver settings of a `jobvisor up` under test, and clean-up of what a test left."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
from pathlib import Path

from drivers.docker.spec import LABEL_AGENT, LABEL_INSTANCE, instance_id

IMAGE = "jobvisor-agent:local"
ENABLE = "run etc/testbed/start-docker.sh as root (it installs and starts dockerd and makes the image)"


def client():
    import docker

    return docker.from_env(version="auto", timeout=20)


def _unix_socket_refuses() -> str | None:
    """Why the engine's unix socket (the default, or DOCKER_HOST's) takes no connection, or None.
    Checked with a plain socket first: the SDK leaves its socket unclosed when a stale socket
    file refuses it, and the tests treat an unclosed socket as an error."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if not host.startswith("unix://"):
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5)
        try:
            probe.connect(host[len("unix://"):])
        except OSError as exc:
            return exc.strerror or type(exc).__name__
    return None


def missing() -> str | None:
    """None when the engine answers and the local agent image is there, else what to do."""
    try:
        import docker
    except ImportError:
        return "the docker SDK is not installed (pip install -e '.[test]')"
    refused = _unix_socket_refuses()
    if refused:
        return f"no Docker engine answers ({refused}): {ENABLE}"
    try:
        engine = client()
    except Exception as exc:  # any failure means: no usable engine
        return f"no Docker engine answers ({type(exc).__name__}): {ENABLE}"
    try:
        engine.ping()
    except Exception as exc:
        engine.close()  # its socket, or a later test's warnings filter sees it unclosed
        return f"no Docker engine answers ({type(exc).__name__}): {ENABLE}"
    try:
        engine.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        return f"the image {IMAGE} is missing: {ENABLE}, or etc/docker/make-local-image.sh"
    finally:
        engine.close()
    return None


def server_env(**overrides: str) -> dict[str, str]:
    """Settings of the docker driver in a `jobvisor up` under test: the local image with this
    machine's runtime mounted, host networking (the supervisor stays on 127.0.0.1)."""
    env = {
        "JOBVISOR_DOCKER_IMAGE": IMAGE,
        "JOBVISOR_DOCKER_HOST_RUNTIME": "true",
        "JOBVISOR_DOCKER_NETWORK": "host",
        "JOBVISOR_DOCKER_STOP_TIMEOUT": "2",
        "JOBVISOR_DOCKER_WATCH_INTERVAL": "0.3",
    }
    env.update({f"JOBVISOR_DOCKER_{k.upper()}": v for k, v in overrides.items()})
    return env


def containers(state_dir: Path, *labels: str) -> list:
    engine = client()
    try:
        wanted = [f"{LABEL_INSTANCE}={instance_id(state_dir)}", *labels]
        return engine.containers.list(all=True, filters={"label": wanted}, ignore_removed=True)
    finally:
        engine.close()


def container_of(state_dir: Path, agent_id: str):
    (found,) = containers(state_dir, f"{LABEL_AGENT}={agent_id}")
    return found


def kill_agent(agent: dict) -> None:
    """`docker kill` of the agent's container (agent ids are unique), as an operator would."""
    engine = client()
    try:
        (found,) = engine.containers.list(filters={"label": f"{LABEL_AGENT}={agent['id']}"}, ignore_removed=True)
        found.kill()
    finally:
        engine.close()


def remove_containers(state_dir: Path) -> None:
    """Remove what a test's supervisor left (by its instance label), and its run roots."""
    for container in containers(state_dir):
        try:
            container.remove(force=True)
        except Exception:  # gone meanwhile
            pass
    shutil.rmtree(state_dir / "docker-runs", ignore_errors=True)


async def until(predicate, timeout: float, what: str) -> None:
    """Wait until `predicate()` (a blocking check: the Docker SDK, /proc) holds, asking it off
    the loop every 0.2 s; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {what}")
        await asyncio.sleep(0.2)
