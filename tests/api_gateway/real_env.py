"""The real gateway in front of the real supervisor, both served by the test's event loop on
loopback ports; the supervisor's local driver starts real agent processes.

`in_process` picks the link `jobvisor up` uses by default (the typed messages handed over in
this process) or HTTP + msgpack to `/internal/op` (as on two hosts): a value that cannot cross
the wire fails differently on each, so the tests that care run on both.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp

from api_gateway.app import GatewayHandle, start_gateway
from api_session import ApiSession
from api_gateway.context import SUPERVISOR
from jobvisor.config import Config, load_config
from supervisor.app import RunningSupervisor, start_supervisor
from tests.harness import free_port

MAX_BODY = 64 * 1024
USERS = (("alice", False), ("bob", False), ("root", True))


@dataclass
class RealEnv(ApiSession):
    config: Config
    supervisor: RunningSupervisor
    gateway: GatewayHandle
    http: aiohttp.ClientSession
    tokens: dict[str, str]
    requests: list[Any]  # every op the gateway sent, in order (a spy on its supervisor client)

    async def wait_state(self, job_id: str, states: set[str] | str, user: str = "alice", timeout: float = 20.0) -> dict:
        states = {states} if isinstance(states, str) else states
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            status, job, _ = await self.call("GET", f"/jobs/{job_id}", user)
            assert status == 200, job
            if job["state"] in states:
                return job
            assert loop.time() < deadline, f"job {job_id} is {job['state']} ({job['reason']}), not {states}"
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.http.close()
        await self.gateway.close()
        await self.supervisor.close()


def real_config(tmp_path, **env: str) -> Config:
    port = free_port()
    return load_config(environ={
        "JOBVISOR_SERVER_STATE_DIR": str(tmp_path / "real-state"),  # beside a fake's `state`
        "JOBVISOR_SERVER_SUPERVISOR_PORT": str(port),
        "JOBVISOR_GATEWAY_MAX_BODY_BYTES": str(MAX_BODY),
        "JOBVISOR_GATEWAY_TOKEN_CACHE_SECONDS": "0",
        "JOBVISOR_SUPERVISOR_SHUTDOWN_TIMEOUT": "5",
        "JOBVISOR_LOCAL_STOP_TIMEOUT": "2",
        **env,
    })


async def start_real_env(tmp_path, *, in_process: bool = False, **env: str) -> RealEnv:
    config = real_config(tmp_path, **env)
    supervisor = await start_supervisor(config)
    try:
        link = supervisor.local_link() if in_process else None
        gateway = await start_gateway(config, "127.0.0.1", 0, link=link)
    except BaseException:
        await supervisor.close()
        raise
    tokens = {}
    for user, admin in USERS:
        await gateway.store.add_user(user, is_admin=admin)
        tokens[user] = (await gateway.store.create_token(user)).token
    client = gateway.app[SUPERVISOR]
    await asyncio.wait_for(client.events_connected.wait(), 10)
    requests: list[Any] = []
    send = client.op

    async def recorded(message: Any) -> Any:
        requests.append(message)
        return await send(message)

    client.op = recorded  # type: ignore[method-assign]
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    return RealEnv(config=config, supervisor=supervisor, gateway=gateway, http=http, tokens=tokens, requests=requests)
