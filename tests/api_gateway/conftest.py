"""Fixtures: the real gateway in front of the fake supervisor."""

from __future__ import annotations

from typing import AsyncIterator

import aiohttp
import pytest

from gateway_env import GatewayEnv, start_env


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
