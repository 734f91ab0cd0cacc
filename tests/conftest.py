"""Fixtures shared by every test folder: the databases the store and the gateway run on.

`database` is parametrized over SQLite and a real PostgreSQL (`tests.pgbed`): a test that takes
it runs once on each, on a fresh database of its own. The PostgreSQL cluster is started once per
session, on first use. Without PostgreSQL binaries the PostgreSQL cases skip, saying how to get
them, except under CI=true, where they fail: CI must test both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

from tests.pgbed import HOW_TO_ENABLE, FAST, PostgresCluster, PostgresUnavailable

DATABASES = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Database:
    """One test's database. `url` is what [database] url is set to: empty for SQLite, whose
    file then lives in the state dir (jobvisor's default); `store_url` is always a URL."""

    kind: str
    url: str
    store_url: str

    @property
    def env(self) -> dict[str, str]:
        """The environment that points `jobvisor up` (or any command) at this database."""
        return {"JOBVISOR_DATABASE_URL": self.url} if self.url else {}


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """The session's PostgreSQL cluster (see tests.pgbed)."""
    cluster = PostgresCluster(FAST)
    try:
        cluster.start()
    except PostgresUnavailable as exc:
        cluster.stop()
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"PostgreSQL not available ({exc}): {HOW_TO_ENABLE}")
    try:
        yield cluster
    finally:
        cluster.stop()


async def _database(request: pytest.FixtureRequest, kind: str, state_dir: Path) -> AsyncIterator[Database]:
    if kind == "sqlite":
        yield Database("sqlite", "", f"sqlite+aiosqlite:///{state_dir / 'jobvisor.sqlite'}")
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    url = await cluster.create_database()
    try:
        yield Database("postgresql", url, url)
    finally:
        await cluster.drop_database(url)


@pytest.fixture(params=DATABASES)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh database of each kind; SQLite's file is in `tmp_path` (the state dir of tests
    that use `tmp_path` as theirs)."""
    async for db in _database(request, request.param, tmp_path):
        yield db


@pytest.fixture
async def postgres_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh PostgreSQL database alone, for tests that only make sense there."""
    async for db in _database(request, "postgresql", tmp_path):
        yield db
