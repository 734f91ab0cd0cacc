"""CLI tests run `python -m jobvisor.cli.main` as a subprocess against the real gateway in
front of the fake supervisor (both served by the test's event loop)."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "api_gateway"))  # the shared fake supervisor

from gateway_env import start_env  # noqa: E402,F401  (re-exported for the CLI tests)

from api_gateway.app import GatewayHandle  # noqa: E402
from api_gateway.context import HUB  # noqa: E402
from fake_supervisor import FakeSupervisor  # noqa: E402


def cli_environ(state_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBVISOR_")}
    env["JOBVISOR_SERVER_STATE_DIR"] = str(state_dir)
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def last_line(self) -> str:
        return self.out.strip().splitlines()[-1]


async def run_cli(*args: str, env: dict[str, str], timeout: float = 30.0, stdin: bytes | None = None,
                  cwd: Path | None = None) -> Result:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jobvisor.cli.main", *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else None,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=str(cwd or ROOT),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return Result(proc.returncode, out.decode(), err.decode())


@dataclass
class CliEnv:
    gateway: GatewayHandle
    fake: FakeSupervisor | None  # None: the real supervisor
    state_dir: Path
    tokens: dict[str, str]

    def environ(self, user: str | None = "alice", **extra: str) -> dict[str, str]:
        values = {"JOBVISOR_URL": self.gateway.url, **extra}
        if user is not None:
            values["JOBVISOR_TOKEN"] = self.tokens[user]
        return cli_environ(self.state_dir, **values)

    async def run(self, *args: str, user: str | None = "alice", timeout: float = 30.0, cwd: Path | None = None,
                  stdin: bytes | None = None, **extra: str) -> Result:
        return await run_cli(*args, env=self.environ(user, **extra), timeout=timeout, cwd=cwd, stdin=stdin)

    def start(self, *args: str, user: str = "alice") -> "asyncio.Task[Result]":
        return asyncio.ensure_future(self.run(*args, user=user))

    async def wait_for_subscribers(self, count: int, timeout: float = 15.0) -> None:
        hub = self.gateway.app[HUB]

        async def poll() -> None:
            while hub.subscriber_count < count:
                await asyncio.sleep(0.02)

        await asyncio.wait_for(poll(), timeout)
