"""`server`: `jobvisor up` on its own state dir, once on SQLite and once on PostgreSQL (the
`database` fixture of tests/conftest.py). The database URL is put in this test's environment,
so the CLI commands a test runs (`jobvisor user add ...`) reach the same database as `up`."""

import pytest

from tests.harness import Api, JobvisorProcess


@pytest.fixture
def server(tmp_path, database, monkeypatch):
    for key, value in database.env.items():
        monkeypatch.setenv(key, value)
    proc = JobvisorProcess(tmp_path / "state")
    proc.start()
    yield proc
    proc.cleanup()


@pytest.fixture
async def api(server):
    client = Api(server.url, server.token)
    yield client
    await client.close()
