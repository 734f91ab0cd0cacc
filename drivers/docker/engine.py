"""One Docker engine as the driver sees it: every call to the `docker` SDK runs on the driver's
own threads (never on the event loop), bounded by a timeout, and every failure comes back as a
`DriverError` that names the engine and what was asked of it.

    DriverError                   (jobvisor.errors)
    ├── DriverUnavailable         retryable
    │   └── EngineUnavailable     the engine does not answer, or not in time (names its URL)
    ├── DriverRefused             permanent: the engine refuses the request as asked (HTTP 400,
    │   │                         403, 404 of something other than a container: a bad mount,
    │   │                         a missing network, an invalid option)
    │   └── ImageMissing          the image is not on that engine
    ├── ContainerMissing          the container is gone (retryable: what is asked of it is moot)
    ├── NameConflict              a container of that name exists already (retryable: the
    │                             driver removes its own stale one and tries again)
    └── DriverError               any other failure of the engine (HTTP 5xx): retryable
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import threading
from concurrent.futures import Executor
from typing import Any, Callable

from jobvisor.errors import DriverError, DriverRefused, DriverUnavailable

log = logging.getLogger(__name__)

LOCAL = ""  # the engine named by DOCKER_HOST, else the default socket


class EngineUnavailable(DriverUnavailable):
    pass


class ImageMissing(DriverRefused):
    pass


class ContainerMissing(DriverError):
    pass


class NameConflict(DriverError):
    pass


class Engine:
    def __init__(self, url: str, executor: Executor, api_timeout: float, tls: dict | None = None) -> None:
        self.url = url
        self.name = url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        self._executor = executor
        self._timeout = api_timeout
        self._tls = tls
        self._api = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ plumbing

    async def call(self, what: str, fn: Callable[..., Any], *args: Any, timeout: float | None = None,
                   missing: type[DriverError] = DriverRefused, **kwargs: Any) -> Any:
        """Run `fn(api, *args, **kwargs)` off the loop; DriverError on any failure. `missing`:
        what a 404 means (ContainerMissing for a call about one container: it is gone; else the
        request names something that is not there, a network or a volume, which is permanent)."""
        limit = self._timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        job = functools.partial(self._invoke, what, fn, args, kwargs, missing)
        try:
            # The SDK's own socket timeout usually fires first; this bound holds even if not.
            return await asyncio.wait_for(loop.run_in_executor(self._executor, job), limit + 1.0)
        except asyncio.TimeoutError:
            raise EngineUnavailable(f"docker engine {self.name} unavailable: it did not answer within {limit:g} s ({what})") from None

    def _invoke(self, what: str, fn: Callable[..., Any], args: tuple, kwargs: dict, missing: type[DriverError]) -> Any:
        import docker.errors
        import requests.exceptions

        try:
            return fn(self._client(), *args, **kwargs)
        except docker.errors.ImageNotFound as exc:
            raise ImageMissing(f"docker engine {self.name}: {_explain(exc)}") from exc
        except docker.errors.NotFound as exc:
            raise missing(f"docker engine {self.name}: {what}: {_explain(exc)}") from exc
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise NameConflict(f"docker engine {self.name}: {what}: {_explain(exc)}") from exc
            if exc.status_code in (400, 401, 403, 404, 422):  # the request as configured is wrong
                raise DriverRefused(f"docker engine {self.name}: {what} refused: {_explain(exc)}") from exc
            raise DriverError(f"docker engine {self.name}: {what} failed: {_explain(exc)}") from exc
        except (requests.exceptions.RequestException, docker.errors.DockerException, OSError) as exc:
            if _timed_out(exc):
                raise EngineUnavailable(
                    f"docker engine {self.name} unavailable: it did not answer within {self._timeout:g} s ({what})") from exc
            raise EngineUnavailable(f"docker engine {self.name} unavailable: not reachable ({what}): {_short(exc)}") from exc

    def _client(self):
        """The SDK's low-level client, made on first use, its API version negotiated with the
        engine (a call). Negotiated here rather than by the SDK (version="auto"): when the
        engine does not answer, the SDK's half-made client is lost with its socket open."""
        with self._lock:
            if self._api is None:
                if self.name.startswith("unix://"):
                    self._probe(self.name[len("unix://"):])
                from docker.constants import DEFAULT_DOCKER_API_VERSION as newest
                from docker.utils import version_lt

                client = self._make(newest)  # a version given: no call yet
                try:
                    server = client.api.version(api_version=False)["ApiVersion"]
                except BaseException:
                    client.close()
                    raise
                if version_lt(server, newest):  # an older engine: speak its version
                    client.close()
                    client = self._make(server)
                self._api = client.api
            return self._api

    def _probe(self, path: str) -> None:
        """OSError unless the engine's unix socket takes a connection: the SDK leaves its own
        socket unclosed when a connect to a missing or refusing socket file fails."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(self._timeout)
            probe.connect(path)

    def _make(self, version: str):
        import docker

        if self.url == LOCAL and not self._tls:
            return docker.DockerClient.from_env(version=version, timeout=self._timeout)
        tls = docker.tls.TLSConfig(**self._tls) if self._tls else False
        return docker.DockerClient(base_url=self.url or None, version=version, timeout=self._timeout, tls=tls)

    def close(self) -> None:
        with self._lock:
            if self._api is not None:
                self._api.close()
                self._api = None

    # ------------------------------------------------------------------ what the driver asks

    async def containers(self, *labels: str) -> list[dict]:
        """Containers (running or not) with every one of `labels` (k=v): Id, Names, State, Labels."""
        return await self.call("list containers", lambda api: api.containers(all=True, filters={"label": list(labels)}))

    async def log_tail(self, container_id: str, lines: int) -> str:
        data = await self.call("read a container's log", lambda api: api.logs(container_id, tail=lines), missing=ContainerMissing)
        return data.decode(errors="replace") if isinstance(data, bytes) else str(data)

    async def inspect(self, container_id: str) -> dict:
        return await self.call("inspect a container", lambda api: api.inspect_container(container_id), missing=ContainerMissing)

    async def run(self, image: str, create: dict, host_config: dict) -> str:
        """Create and start a container; a container that fails to start is removed again."""

        def run(api) -> str:
            config = api.create_host_config(**host_config)
            container_id = api.create_container(image, host_config=config, **create)["Id"]
            try:
                api.start(container_id)
            except BaseException:
                try:
                    api.remove_container(container_id, force=True)
                except Exception:  # the start error is the one worth reporting
                    log.warning("docker engine %s: cannot remove container %s that failed to start", self.name, container_id[:12])
                raise
            return container_id

        return await self.call("start a container", run, timeout=self._timeout * 3)

    async def stop(self, container_id: str, grace: float) -> None:
        await self.call("stop a container", lambda api: api.stop(container_id, timeout=int(max(grace, 0) + 0.999)),
                        timeout=grace + self._timeout, missing=ContainerMissing)

    async def remove(self, container_id: str) -> None:
        await self.call("remove a container", lambda api: api.remove_container(container_id, force=True),
                        missing=ContainerMissing)

    async def pull(self, image: str, timeout: float) -> None:
        repo, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
        await self.call(f"pull {image}", lambda api: api.pull(repo, tag=tag), timeout=timeout)

    async def gateway(self, network: str) -> str | None:
        info = await self.call(f"inspect network {network}", lambda api: api.inspect_network(network))
        for entry in (info.get("IPAM") or {}).get("Config") or []:
            if entry.get("Gateway"):
                return entry["Gateway"]
        return None


def _timed_out(exc: BaseException | None) -> bool:
    """Whether a timeout is at the root of `exc` (the SDK wraps them in its own errors)."""
    import requests.exceptions

    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (requests.exceptions.Timeout, TimeoutError)) or "timed out" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _explain(exc: Exception) -> str:
    return str(getattr(exc, "explanation", None) or exc)


def _short(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."
