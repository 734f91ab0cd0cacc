import pytest

from tests.supervisor.fakes import FakeDriver, make_config
from supervisor.core import Supervisor


@pytest.fixture
async def core(tmp_path):
    sup = Supervisor(make_config(tmp_path))
    sup.targets.drivers["fake"] = FakeDriver(sup.config, sup, cpus=1)
    await sup.start()
    yield sup
    await sup.shutdown()


@pytest.fixture
def driver(core) -> FakeDriver:
    return core.targets.drivers["fake"]
