import pytest

from tests.contract.backends import BACKENDS, require
from tests.harness import Api, JobvisorProcess


@pytest.fixture(params=sorted(BACKENDS))
def backend(request):
    backend = BACKENDS[request.param]
    require(backend)
    return backend


@pytest.fixture
def server(tmp_path, backend):
    proc = JobvisorProcess(tmp_path / "state", env={"JOBVISOR_SUPERVISOR_RECONNECT_GRACE": "20"})
    proc.start()
    yield proc
    proc.cleanup()


@pytest.fixture
async def api(server):
    client = Api(server.url, server.token)
    yield client
    await client.close()
