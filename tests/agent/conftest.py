import pytest

from tests.agent.stub_supervisor import AgentProcess, StubSupervisor


@pytest.fixture
async def supervisor():
    stub = StubSupervisor()
    await stub.start()
    yield stub
    await stub.stop()


@pytest.fixture
def start_agent(supervisor, tmp_path, request):
    """start_agent(**config) -> a running AgentProcess (stopped in teardown, log shown on failure)."""
    started: list[AgentProcess] = []

    def start(url: str | None = None, **kwargs) -> AgentProcess:
        agent = AgentProcess(url or supervisor.url, tmp_path, **kwargs).start()
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.kill()
        if getattr(request.node, "rep_failed", False):
            print(f"--- agent log ---\n{agent.log()[-6000:]}")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        item.rep_failed = True
