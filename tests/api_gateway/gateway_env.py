"""The real gateway on a free loopback port, in front of the fake supervisor (shared by the
gateway and the CLI tests)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from jobvisor.config import Config, load_config
from jobvisor.secrets import internal_secret_path, load_or_create_secret

from api_gateway.app import GatewayHandle, start_gateway
from api_session import ApiSession
from api_gateway.context import SUPERVISOR
from fake_supervisor import FakeSupervisor

MAX_BODY = 64 * 1024


@dataclass
class GatewayEnv(ApiSession):
    config: Config
    gateway: GatewayHandle
    fake: FakeSupervisor
    http: aiohttp.ClientSession
    tokens: dict[str, str]


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
