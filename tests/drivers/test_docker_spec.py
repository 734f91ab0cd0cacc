"""The docker driver's pure rules and its configuration checks, without an engine."""

from __future__ import annotations

import pytest

from drivers.docker import spec
from drivers.docker.driver import DockerDriver
from jobvisor.config import load_config
from jobvisor.errors import DriverError, InvalidRequest
from jobvisor.resources import Resources


def test_names_are_deterministic_and_valid_for_docker():
    assert spec.container_name("abc", "docker", "alice") == "jobvisor-abc-docker-alice"
    odd = spec.container_name("abc", "docker", "al ice/x")
    assert odd == spec.container_name("abc", "docker", "al ice/x")
    assert odd.startswith("jobvisor-abc-docker-al_ice_x_") and " " not in odd
    assert odd != spec.container_name("abc", "docker", "al_ice_x")


def test_instance_is_a_hash_of_the_resolved_state_dir(tmp_path):
    (tmp_path / "a").mkdir()
    assert spec.instance_id(tmp_path / "a") == spec.instance_id(tmp_path / "a" / ".." / "a")
    assert spec.instance_id(tmp_path / "a") != spec.instance_id(tmp_path / "b")


def test_the_container_user_is_never_root():
    assert spec.container_user("", 0, 0) == (65534, 65534)
    assert spec.container_user("", 1000, 100) == (1000, 100)
    assert spec.container_user("1234", 0, 0) == (1234, 1234)
    assert spec.container_user("1234:55", 0, 0) == (1234, 55)
    for bad in ("0", "0:0", "root", "-1"):
        with pytest.raises(DriverError):
            spec.container_user(bad, 0, 0)


def test_hosts_with_and_without_slots():
    assert spec.parse_hosts("", 4) == [("", 4)]
    assert spec.parse_hosts("unix:///var/run/docker.sock, tcp://b:2376=16", 4) == [
        ("unix:///var/run/docker.sock", 4), ("tcp://b:2376", 16)]
    with pytest.raises(DriverError):
        spec.parse_hosts("tcp://b:2376=0", 4)


def test_the_least_loaded_host_takes_a_new_agent():
    loads = [spec.HostLoad(0, agents=4, slots=4), spec.HostLoad(1, agents=3, slots=16), spec.HostLoad(2, agents=0, slots=2)]
    assert spec.pick_host(loads) == 2
    assert spec.pick_host(loads[:2]) == 1
    assert spec.pick_host([spec.HostLoad(0, 1, 2), spec.HostLoad(1, 2, 4)]) == 0  # a tie: the first
    assert spec.pick_host([]) is None


def test_agent_url_on_host_and_bridge_networks():
    url = "ws://127.0.0.1:8766/agent"
    assert spec.agent_url_for(url, "host", None) == url
    assert spec.agent_url_for(url, "bridge", "10.9.0.1") == "ws://10.9.0.1:8766/agent"
    assert spec.agent_url_for("wss://localhost/agent", "bridge", "fd00::1") == "wss://[fd00::1]/agent"
    assert spec.agent_url_for("ws://sup.example:8766/agent", "bridge", "10.9.0.1") == "ws://sup.example:8766/agent"
    assert spec.needs_gateway(url, "bridge") and not spec.needs_gateway(url, "host")
    with pytest.raises(DriverError, match="agent_url"):
        spec.agent_url_for(url, "isolated", None)


def test_exit_reasons_say_what_happened():
    assert spec.exit_reason("c", None) == "agent container c was removed"
    assert spec.exit_reason("c", {"Status": "exited", "ExitCode": 137}) == "agent container c exited with code 137 (SIGKILL)"
    assert spec.exit_reason("c", {"Status": "exited", "ExitCode": 2, "Error": "boom"}) == "agent container c exited with code 2: boom"
    oom = spec.exit_reason("c", {"Status": "exited", "ExitCode": 137, "OOMKilled": True}, 256 * 1024**2)
    assert oom == "agent container c was killed by the kernel: out of memory (its limit is 256 MiB)"


def test_host_runtime_mounts_never_expose_run_dirs(tmp_path):
    code = tmp_path / "checkout"
    (code / "venv").mkdir(parents=True)
    mounts = spec.host_runtime_mounts(tmp_path / "runs", [str(code / "venv")], [str(code)])
    assert str(code) in mounts and str(code / "venv") not in mounts  # covered by the checkout
    assert "/usr" in mounts
    with pytest.raises(DriverError, match="run_root"):
        spec.host_runtime_mounts(code / "state" / "docker-runs", [], [str(code)])


def _driver(tmp_path, **settings) -> DockerDriver:
    env = {"JOBVISOR_SERVER_STATE_DIR": str(tmp_path), **{f"JOBVISOR_DOCKER_{k.upper()}": v for k, v in settings.items()}}
    return DockerDriver(load_config(environ=env), host=None)


def test_the_driver_checks_its_configuration_and_jobs(tmp_path):
    driver = _driver(tmp_path, hosts="unix:///a.sock=2,unix:///b.sock=3", memory="1G", cpus="2")
    assert driver.cpus_total == 5
    assert driver.run_dir("bob", "j1") == str(tmp_path / "docker-runs" / "bob" / "j1")
    driver.validate(Resources(cpus=2, memory=512 * 1024**2))
    with pytest.raises(InvalidRequest, match="1 GiB") as info:
        driver.validate(Resources(memory=2 * 1024**3))
    assert info.value.field == "resources.memory"
    with pytest.raises(InvalidRequest, match=r"\[docker\] cpus"):
        driver.validate(Resources(cpus=3))
    with pytest.raises(InvalidRequest, match="3 slots"):
        _driver(tmp_path, hosts="unix:///a.sock=2,unix:///b.sock=3").validate(Resources(cpus=4))
    for bad in ({"user": "0"}, {"memory": "lots"}, {"tls_client_cert": "c.pem"}):
        with pytest.raises(DriverError):
            _driver(tmp_path, **bad)


def test_the_token_travels_in_the_environment_only(tmp_path):
    from drivers.base import AgentSpec

    driver = _driver(tmp_path, host_runtime="true", run_root=str(tmp_path / "runs"))
    agent = AgentSpec("a1", "bob", "docker", "jva_secret", "ws://127.0.0.1:1/agent")
    env = driver._environment(agent, agent.url, tmp_path / "runs" / "bob")
    assert env["JOBVISOR_AGENT_TOKEN"] == "jva_secret"
    assert "jva_secret" not in " ".join(driver._command)
    assert driver._command[1:] == ["-m", "agent"]
    assert env["JOBVISOR_AGENT_CANCEL_GRACE"] and env["JOBVISOR_CONTAINER"] == "docker"


def test_tls_settings():
    assert spec.tls_settings("", "", "") is None
    assert spec.tls_settings("ca.pem", "", "") == {"verify": "ca.pem", "ca_cert": "ca.pem"}
    assert spec.tls_settings("", "c.pem", "k.pem") == {"verify": False, "client_cert": ("c.pem", "k.pem")}
    with pytest.raises(DriverError) as caught:
        spec.tls_settings("ca.pem", "c.pem", "")
    assert caught.value.permanent
