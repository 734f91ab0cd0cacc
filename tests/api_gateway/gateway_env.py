"""The real gateway on a free loopback port, in front of the fake supervisor (shared by the
gateway and the CLI tests)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from jobvisor.config import Config, load_config
from jobvisor.secrets import internal_secret_path, load_or_create_secret

from api_gateway.app import GatewayHandle, start_gateway
from api_gateway.context import SUPERVISOR
from fake_supervisor import FakeSupervisor

MAX_BODY = 64 * 1024


@dataclass
class GatewayEnv:
    config: Config
    gateway: GatewayHandle
    fake: FakeSupervisor
    http: aiohttp.ClientSession
    tokens: dict[str, str]

    @property
    def api(self) -> str:
        return self.gateway.url + "/api/v1"

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    async def call(self, method: str, path: str, user: str | None = "alice", **kwargs: Any) -> tuple[int, Any, Any]:
        """(status, parsed body, headers) of one request to the API."""
        headers = dict(kwargs.pop("headers", {}))
        if user is not None:
            headers.update(self.auth(user))
        async with self.http.request(method, self.api + path, headers=headers, **kwargs) as resp:
            raw = await resp.read()
            ctype = resp.headers.get("Content-Type", "")
            body: Any = raw
            if "json" in ctype:
                body = json.loads(raw)
            return resp.status, body, resp.headers

    async def submit(self, user: str = "alice", **job: Any) -> dict:
        job = {"code": "shell", "params": {"argv": ["true"]}, **job}
        status, body, _ = await self.call("POST", "/jobs", user, json=job)
        assert status == 201, body
        return body


def make_config(tmp_path, supervisor_url: str, **env: str) -> Config:
    environ = {
        "JOBVISOR_SERVER_STATE_DIR": str(tmp_path / "state"),
        "JOBVISOR_SERVER_SUPERVISOR_URL": supervisor_url,
        "JOBVISOR_GATEWAY_MAX_BODY_BYTES": str(MAX_BODY),
        "JOBVISOR_GATEWAY_TOKEN_CACHE_SECONDS": "0",
        **env,
    }
    return load_config(environ=environ)


async def start_env(tmp_path, **env: str) -> tuple[GatewayHandle, FakeSupervisor, Config, dict[str, str]]:
    probe = make_config(tmp_path, "http://127.0.0.1:1", **env)
    secret = load_or_create_secret(internal_secret_path(probe.state_dir))
    fake = await FakeSupervisor(secret).start()
    config = make_config(tmp_path, fake.url, **env)
    gateway = await start_gateway(config, "127.0.0.1", 0)
    store = gateway.store
    tokens = {}
    for user, admin in (("alice", False), ("bob", False), ("root", True)):
        await store.add_user(user, is_admin=admin)
        tokens[user] = (await store.create_token(user)).token
    await asyncio.wait_for(gateway.app[SUPERVISOR].events_connected.wait(), 10)
    return gateway, fake, config, tokens
