"""Real processes on loopback for integration tests: `jobvisor up` in a subprocess on free
ports, and a small async client of its HTTP API. Everything started here is stopped by PID
in teardown, and every wait is bounded."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JobvisorProcess:
    """`jobvisor up` on free ports with its own state dir."""

    def __init__(self, state_dir: Path, env: dict[str, str] | None = None, args: list[str] | None = None) -> None:
        self.state_dir = state_dir
        self.args = list(args or [])  # more options of `up`, e.g. --config FILE
        self.port = free_port()
        self.supervisor_port = free_port()
        self.env = {
            **os.environ,
            "JOBVISOR_SUPERVISOR_RECONNECT_GRACE": "10",
            "JOBVISOR_SUPERVISOR_AGENT_LOST_GRACE": "10",
            "JOBVISOR_SUPERVISOR_SHUTDOWN_TIMEOUT": "5",
            "JOBVISOR_LOCAL_STOP_TIMEOUT": "2",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.token: str | None = None
        self.output: list[str] = []
        self.log_path = state_dir / "up.log"

    def start(self, timeout: float = 30.0) -> "JobvisorProcess":
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jobvisor", "up", "--state-dir", str(self.state_dir),
                 "--port", str(self.port), "--supervisor-port", str(self.supervisor_port), *self.args],
                stdout=subprocess.PIPE, stderr=log_file, env=self.env, cwd=REPO,
            )
        fd = self.proc.stdout.fileno()
        os.set_blocking(fd, False)
        deadline = time.monotonic() + timeout
        pending = b""
        while time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
                continue
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.decode()
                self.output.append(line)
                if line.startswith("JOBVISOR_TOKEN="):
                    self.token = line.split("=", 1)[1]
                if line.startswith("JOBVISOR_URL="):
                    self.url = line.split("=", 1)[1]
            if self.url:
                os.set_blocking(fd, True)
                return self
        self.kill()
        raise RuntimeError(f"jobvisor up did not start: {self.output}\n{self.log_path.read_text()[-4000:]}")

    def restart(self, timeout: float = 30.0) -> "JobvisorProcess":
        """Start again on the same ports and state dir (after `kill` or `stop`)."""
        self.url = ""
        self.token = None
        return self.start(timeout)

    def kill(self) -> None:
        """SIGKILL: like a crash. Agents (own sessions) survive."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc is not None and self.proc.stdout and not self.proc.stdout.closed:
            self.proc.stdout.close()

    def stop(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        if self.proc.stdout:
            self.output.extend(self.proc.stdout.read().decode().splitlines())
            self.proc.stdout.close()
        return rc

    def agent_pids(self) -> list[int]:
        """Agents whose environment points at this supervisor (they run in their own sessions)."""
        marker = f"JOBVISOR_AGENT_URL=ws://127.0.0.1:{self.supervisor_port}/agent".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
        return pids

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.stop(20)
            except subprocess.TimeoutExpired:
                self.kill()
        for pid in self.agent_pids():
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class Api:
    """The gateway's HTTP API as a test sees it."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/") + "/api/v1"
        self.token = token
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))

    async def close(self) -> None:
        await self.session.close()

    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def request(self, method: str, path: str, **kw) -> Any:
        headers = {**self._headers(), **kw.pop("headers", {})}
        async with self.session.request(method, self.url + path, headers=headers, **kw) as resp:
            body = await resp.read()
            if resp.content_type in ("application/json", "application/problem+json"):
                data = json.loads(body) if body else None
            else:
                data = body
            if resp.status >= 400:
                raise ApiError(resp.status, data)
            return data

    async def submit(self, job: dict | list) -> Any:
        return await self.request("POST", "/jobs", json=job)

    async def job(self, job_id: str) -> dict:
        return await self.request("GET", f"/jobs/{job_id}")

    async def cancel(self, job_id: str) -> dict:
        return await self.request("POST", f"/jobs/{job_id}/cancel")

    async def log(self, job_id: str) -> bytes:
        return await self.request("GET", f"/jobs/{job_id}/log")

    async def wait_state(self, job_id: str, states: set[str] | str, timeout: float = 30.0) -> dict:
        states = {states} if isinstance(states, str) else states
        deadline = time.monotonic() + timeout
        while True:
            job = await self.job(job_id)
            if job["state"] in states:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} is {job['state']} ({job['reason']}), not {states}, after {timeout} s")
            await asyncio.sleep(0.05)


def job_form(job: Any, files: dict[str, bytes]) -> aiohttp.FormData:
    """A multipart POST /jobs: the `job` part and a `file` part per input (its path as filename)."""
    data = aiohttp.FormData()
    data.add_field("job", json.dumps(job), content_type="application/json")
    for path, content in files.items():
        data.add_field("file", io.BytesIO(content), filename=path, content_type="application/octet-stream")
    return data
