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
    proc = JobvisorProcess(tmp_path / "state", env={"JOBVISOR_SUPERVISOR_RECONNECT_GRACE": "20", **backend.env})
    proc.start()
    yield proc
    proc.cleanup()
    backend.cleanup(proc.state_dir)


@pytest.fixture
async def api(server):
    client = Api(server.url, server.token)
    yield client
    await client.close()
