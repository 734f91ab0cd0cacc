"""Every driver error says whether to retry: a backend that does not answer is retryable
(DriverUnavailable), a request that cannot work as configured is permanent (DriverRefused).
Checked against real backends: an engine socket that is not there, the real engine with an
image it lacks, an SSH port nobody listens on, a key file that does not exist (an engine that
accepts connections but does not answer: test_docker.py)."""

from __future__ import annotations

import asyncio
import errno
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from drivers.docker.engine import Engine, EngineUnavailable, ImageMissing
from drivers.sbatch.ssh import connect
from jobvisor.config import SbatchConfig
from jobvisor.errors import DriverError, DriverRefused, DriverUnavailable, driver_os_error
from tests.drivers import dockerbed


def test_the_classes_fix_their_classification():
    assert DriverUnavailable("x").retryable and not DriverUnavailable("x").permanent
    assert DriverRefused("x").permanent and not DriverRefused("x").retryable
    assert DriverError("x").retryable and DriverError("x", permanent=True).permanent
    assert issubclass(EngineUnavailable, DriverUnavailable) and issubclass(ImageMissing, DriverRefused)


@pytest.mark.parametrize("number, retryable", [
    (errno.EAGAIN, True), (errno.ENOMEM, True), (errno.ENOSPC, True), (errno.ECONNREFUSED, True),
    (errno.ENOENT, False), (errno.EACCES, False), (errno.EROFS, False),
])
def test_os_errors_of_drivers(number, retryable):
    error = driver_os_error("cannot start a local agent", OSError(number, "why"))
    assert error.retryable is retryable and error.detail == "cannot start a local agent: why"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_an_ssh_port_nobody_listens_on_is_retryable():
    cfg = SbatchConfig(cluster="c", login_host="127.0.0.1", login_port=_free_port(), connect_timeout=5)
    with pytest.raises(DriverUnavailable, match=f"127.0.0.1:{cfg.login_port}"):
        await connect(cfg, "alice", password="x")


async def test_a_key_file_that_is_not_there_is_permanent(tmp_path):
    cfg = SbatchConfig(cluster="c", login_host="127.0.0.1", login_port=_free_port(), connect_timeout=5)
    with pytest.raises(DriverRefused):
        await connect(cfg, "alice", key_file=str(tmp_path / "no-such-key"))


async def test_an_engine_socket_that_is_not_there_is_retryable_and_named(tmp_path):
    """Also: the failed first call leaves no socket open (the warnings filter makes one an error)."""
    url = f"unix://{tmp_path / 'no-engine.sock'}"
    with ThreadPoolExecutor(1) as executor:
        engine = Engine(url, executor, api_timeout=2)
        with pytest.raises(EngineUnavailable, match=f"docker engine {url} unavailable: not reachable") as caught:
            await engine.containers("a=b")
        engine.close()
    assert caught.value.retryable


async def test_an_image_the_engine_lacks_is_permanent():
    missing = dockerbed.missing()
    if missing is not None:
        pytest.skip(missing)
    with ThreadPoolExecutor(1) as executor:
        engine = Engine("", executor, api_timeout=20)
        try:
            with pytest.raises(ImageMissing) as caught:
                await engine.run("jobvisor-agent:no-such-tag", {"command": ["true"]}, {})
        finally:
            await asyncio.get_running_loop().run_in_executor(executor, engine.close)
    assert caught.value.permanent and "no-such-tag" in caught.value.detail
