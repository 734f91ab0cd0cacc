"""Fixtures for CLI subprocesses: the real gateway in front of the real supervisor and agents
(`real_cli`), or in front of the fake supervisor (`cli`: for what a real run cannot show on
demand)."""

from __future__ import annotations

from typing import AsyncIterator

import pytest

from cli_env import CliEnv, start_env
from real_env import RealEnv, start_real_env


@pytest.fixture
async def cli(tmp_path) -> AsyncIterator[CliEnv]:
    gateway, fake, config, tokens = await start_env(tmp_path)
    try:
        yield CliEnv(gateway=gateway, fake=fake, state_dir=config.state_dir, tokens=tokens)
    finally:
        await gateway.close()
        await fake.close()


@pytest.fixture
async def real(tmp_path) -> AsyncIterator[RealEnv]:
    env = await start_real_env(tmp_path)
    try:
        yield env
    finally:
        await env.close()


@pytest.fixture
def real_cli(real: RealEnv) -> CliEnv:
    return CliEnv(gateway=real.gateway, fake=None, state_dir=real.config.state_dir, tokens=real.tokens)
