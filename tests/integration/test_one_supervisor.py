"""One supervisor per database, with real `jobvisor up` processes: a second `up` on the same
state dir (SQLite) or the same database (PostgreSQL) stops at once with one line naming the
first, which goes on unharmed; a first one killed with SIGKILL leaves no lock behind; a port
taken says which option moves it and who holds it."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import REPO, Api, JobvisorProcess, free_port

pytestmark = pytest.mark.integration


def second_up(state_dir: Path, port: int, supervisor_port: int, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`jobvisor up` expected to refuse: it must end by itself, quickly."""
    return subprocess.run(
        [sys.executable, "-m", "jobvisor", "up", "--state-dir", str(state_dir),
         "--port", str(port), "--supervisor-port", str(supervisor_port)],
        capture_output=True, text=True, timeout=60, cwd=REPO, env={**os.environ, **(env or {})},
    )


async def _job_completes(api: Api, argv: list[str], output: bytes) -> None:
    job = await api.submit({"code": "shell", "params": {"argv": argv}})
    done = await api.wait_state(job["id"], {"completed", "failed", "lost", "canceled"}, timeout=60)
    assert done["state"] == "completed", done
    assert await api.log(job["id"]) == output


def _refused_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "jobvisor is up" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.startswith("jobvisor: ")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


async def test_second_up_on_the_same_state_dir_is_refused_and_the_first_goes_on(server, database, api):
    running = await api.submit({"code": "shell", "params": {"argv": ["sh", "-c", "sleep 2; echo first"]}})
    await api.wait_state(running["id"], "running", timeout=30)
    refused = second_up(server.state_dir, free_port(), free_port())
    assert _refused_line(refused) == (
        f"jobvisor: the state dir {server.state_dir} is in use by another jobvisor up "
        f"(pid {server.proc.pid}, {server.url}); stop it first, or give another --state-dir")
    # the first is unharmed: the job it ran ends well, with its log, and a new one runs
    ended = await api.wait_state(running["id"], {"completed", "failed", "lost", "canceled"}, timeout=60)
    assert ended["state"] == "completed", ended
    assert await api.log(running["id"]) == b"first\n"
    await _job_completes(api, ["echo", "ok"], b"ok\n")
    assert server.proc.poll() is None


async def test_second_up_on_the_same_postgresql_database_is_refused(tmp_path, postgres_database, monkeypatch):
    """Another state dir, the same database: the database's lock refuses it."""
    monkeypatch.setenv("JOBVISOR_DATABASE_URL", postgres_database.url)
    first = JobvisorProcess(tmp_path / "first").start()
    try:
        api = Api(first.url, first.token)
        try:
            refused = second_up(tmp_path / "second", free_port(), free_port())
            shown = postgres_database.url.replace("postgresql+asyncpg", "postgresql")
            assert _refused_line(refused) == (
                f"jobvisor: the database {shown} is in use by another jobvisor up (pid {first.proc.pid}, {first.url}); "
                "stop it first, or give another [database] url")
            assert not (tmp_path / "second" / "internal_secret").exists()  # it stopped before making anything
            await _job_completes(api, ["echo", "ok"], b"ok\n")
        finally:
            await api.close()
    finally:
        first.cleanup()


async def test_up_after_a_sigkill_of_the_first_starts(server, database, api):
    """The lock dies with its process (flock, PostgreSQL's session), while the agents the
    killed `up` started, which outlive it, hold none of it."""
    job = await api.submit({"code": "shell", "params": {"argv": ["sh", "-c", "sleep 2; echo survived"]}})
    await api.wait_state(job["id"], "running", timeout=30)
    assert server.agent_pids()
    server.kill()
    server.restart()
    again = Api(server.url, api.token)
    try:
        ended = await again.wait_state(job["id"], {"completed", "failed", "lost", "canceled"}, timeout=60)
        assert ended["state"] == "completed", ended
        assert await again.log(job["id"]) == b"survived\n"
        await _job_completes(again, ["echo", "ok"], b"ok\n")
    finally:
        await again.close()


def test_supervisor_port_of_another_up_names_it_and_the_option(tmp_path):
    first = JobvisorProcess(tmp_path / "first").start()
    try:
        refused = second_up(tmp_path / "second", free_port(), first.supervisor_port)
        assert _refused_line(refused) == (
            f"jobvisor: the supervisor cannot listen on 127.0.0.1:{first.supervisor_port}: Address already in use: "
            f"another jobvisor up uses it (pid {first.proc.pid}, {first.url}, state dir {first.state_dir}); "
            "use that one, stop it first, or give another --supervisor-port ([server] supervisor_port)")
        # the gateway's port of the same `up`
        refused = second_up(tmp_path / "second", first.port, free_port())
        assert re.search(rf"^jobvisor: the gateway cannot listen on 127.0.0.1:{first.port}: Address already in use: "
                         rf"another jobvisor up uses it \(pid {first.proc.pid}, .*--port \(\[server\] port\)$",
                         _refused_line(refused))
    finally:
        first.cleanup()


def test_a_port_held_by_another_program_says_so(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = second_up(tmp_path / "state", port, free_port())
        assert _refused_line(refused) == (
            f"jobvisor: the gateway cannot listen on 127.0.0.1:{port}: Address already in use: another program "
            "(not a jobvisor gateway) holds it; give another --port ([server] port)")
        refused = second_up(tmp_path / "state", free_port(), port)
        assert _refused_line(refused).endswith(
            "another program (not a jobvisor supervisor) holds it; give another --supervisor-port ([server] supervisor_port)")
    # nothing of it started: the state dir holds no database and no lock held
    assert not (tmp_path / "state" / "jobvisor.sqlite").exists()


def test_an_address_not_of_this_machine_names_the_host_option(tmp_path):
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "jobvisor", "up", "--state-dir", str(tmp_path / "state"), "--host", "192.0.2.1",
         "--port", str(port), "--supervisor-port", str(free_port())],
        capture_output=True, text=True, timeout=60, cwd=REPO)
    assert _refused_line(proc) == (
        f"jobvisor: the gateway cannot listen on 192.0.2.1:{port}: Cannot assign requested address; "
        "give another --host ([server] host) or --port ([server] port)")


def test_a_database_that_does_not_answer_is_named_without_its_password(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "jobvisor", "up", "--state-dir", str(tmp_path / "state"),
         "--port", str(free_port()), "--supervisor-port", str(free_port())],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, "JOBVISOR_DATABASE_URL": f"postgresql://jv:hunter2@127.0.0.1:{free_port()}/jobs"})
    line = _refused_line(proc)
    assert line.startswith("jobvisor: cannot open the database postgresql://jv:***@127.0.0.1:"), line
    assert "hunter2" not in proc.stderr
