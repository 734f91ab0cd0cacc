"""Fixtures: the real gateway in front of the real supervisor (`real`: real agents too) or in
front of the fake one (`env`: for what a real run cannot show on demand)."""

from __future__ import annotations

from typing import AsyncIterator

import aiohttp
import pytest

from gateway_env import GatewayEnv, start_env
from real_env import RealEnv, start_real_env


@pytest.fixture
async def env(tmp_path) -> AsyncIterator[GatewayEnv]:
    gateway, fake, config, tokens = await start_env(tmp_path)
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
    try:
        yield GatewayEnv(config=config, gateway=gateway, fake=fake, http=http, tokens=tokens)
    finally:
        await http.close()
        await gateway.close()
        await fake.close()


@pytest.fixture
async def real(tmp_path) -> AsyncIterator[RealEnv]:
    """Gateway and supervisor over HTTP + msgpack, as on two hosts (the wire the fake speaks)."""
    env = await start_real_env(tmp_path)
    try:
        yield env
    finally:
        await env.close()
