import pytest

from tests.harness import Api, JobvisorProcess


@pytest.fixture
def server(tmp_path):
    proc = JobvisorProcess(tmp_path / "state")
    proc.start()
    yield proc
    proc.cleanup()


@pytest.fixture
async def api(server):
    client = Api(server.url, server.token)
    yield client
    await client.close()
