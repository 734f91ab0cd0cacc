"""Fixtures: the real gateway in front of the fake supervisor, for CLI subprocesses."""

from __future__ import annotations

from typing import AsyncIterator

import pytest

from cli_env import CliEnv, start_env


@pytest.fixture
async def cli(tmp_path) -> AsyncIterator[CliEnv]:
    gateway, fake, config, tokens = await start_env(tmp_path)
    try:
        yield CliEnv(gateway=gateway, fake=fake, state_dir=config.state_dir, tokens=tokens)
    finally:
        await gateway.close()
        await fake.close()
