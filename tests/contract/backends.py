"""One entry per driver for the contract suite: whether its real backend is here, and how to
do to an agent what a crash would. Docker and sbatch join this list in their issues."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from tests.drivers import dockerbed, slurmbed


@dataclass(frozen=True)
class Backend:
    kind: str
    available: Callable[[], str | None]  # None when usable, else how to enable it
    kill_agent: Callable[[dict], None]  # SIGKILL the agent described by GET /agents
    env: dict[str, str] = field(default_factory=dict)  # settings of the server under test
    cleanup: Callable[[Path], None] = lambda state_dir: None  # what the server left behind


def _local_kill(agent: dict) -> None:
    os.kill(agent["pid"], signal.SIGKILL)


BACKENDS = {
    "local": Backend("local", lambda: None, _local_kill),
    "docker": Backend("docker", dockerbed.missing, dockerbed.kill_agent, dockerbed.server_env(),
                      dockerbed.remove_containers),
    "sbatch": Backend("sbatch", slurmbed.missing, slurmbed.kill_agent, slurmbed.contract_env(),
                      slurmbed.contract_cleanup),
}


def require(backend: Backend) -> None:
    """Outside CI a missing backend skips with how to enable it; in CI it fails."""
    missing = backend.available()
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the {backend.kind} backend is required in CI: {missing}")
    pytest.skip(f"{backend.kind} backend not available: {missing}")
