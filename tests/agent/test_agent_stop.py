"""Stopping jobs and the agent: cancel, walltime, SIGTERM, KillAgent, refused token, give-up."""

import asyncio
import os
import time

from jobvisor.protocol.agent_wire import CancelJob, KillAgent, RunJob, StatusUpdate

from tests.agent.stub_supervisor import WAIT


async def group_gone(pgid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        await asyncio.sleep(0.02)
    return False


def sleeper(job_id, run_dir, script="sleep 30 & sleep 30", resources=None):
    return RunJob(job_id, 1, "shell", {"script": script}, resources or {}, str(run_dir))


async def test_cancel_stops_the_whole_process_group(supervisor, start_agent, tmp_path):
    start_agent()
    await supervisor.send(sleeper("c1", tmp_path / "c1"))
    running = await supervisor.status("c1", "running")
    pid = running.report.info["pid"]
    os.killpg(pid, 0)  # the group exists
    # two cancels at once, and a third later: one canceled report, no error
    await supervisor.send(CancelJob("c1", "changed my mind"), CancelJob("c1", "again"))
    done = await supervisor.status("c1", "canceled")
    assert done.report.reason == "changed my mind"
    assert await group_gone(pid), "the job's process group survived its cancel"
    await supervisor.send(CancelJob("c1", "late"), CancelJob("unknown-job"))
    await asyncio.sleep(0.3)
    assert len(supervisor.find(StatusUpdate, lambda m: m.report.job_id == "c1" and m.report.state == "canceled")) == 1
    assert supervisor.errors == []


async def test_cancel_escalates_to_sigkill(supervisor, start_agent, tmp_path):
    start_agent()  # cancel_grace is 1s in tests
    await supervisor.send(sleeper("stubborn", tmp_path / "s", script="trap '' TERM; sleep 30 & wait; sleep 30"))
    running = await supervisor.status("stubborn", "running")
    await asyncio.sleep(0.2)  # let the shell set its trap
    started = time.monotonic()
    await supervisor.send(CancelJob("stubborn", "stop now"))
    done = await supervisor.status("stubborn", "canceled")
    assert done.report.reason == "stop now"
    assert 0.8 < time.monotonic() - started < 5
    assert await group_gone(running.report.info["pid"])


async def test_walltime_times_out(supervisor, start_agent, tmp_path):
    start_agent()
    await supervisor.send(sleeper("w1", tmp_path / "w1", script="echo start; sleep 30", resources={"walltime": 1}))
    started = time.monotonic()
    done = await supervisor.status("w1", "timed_out")
    assert done.report.reason == "walltime 00:00:01 exceeded"
    assert time.monotonic() - started < 5
    assert bytes(supervisor.logs["w1"]) == b"start\n"
    status = (tmp_path / "w1" / ".jobvisor" / "status.json").read_text()
    assert '"timed_out"' in status


async def test_sigterm_cancels_jobs_and_exits_zero(supervisor, start_agent, tmp_path):
    agent = start_agent()
    await supervisor.send(sleeper("t1", tmp_path / "t1"))
    running = await supervisor.status("t1", "running")
    assert await agent.terminate() == 0
    done = await supervisor.status("t1", "canceled", timeout=1)
    assert done.report.reason == "agent stopped"
    assert await group_gone(running.report.info["pid"])


async def test_kill_agent_message(supervisor, start_agent, tmp_path):
    agent = start_agent()
    await supervisor.send(sleeper("k1", tmp_path / "k1"))
    await supervisor.status("k1", "running")
    await supervisor.send(KillAgent(reason="idle too long", cancel_jobs=True))
    assert await agent.wait_exit() == 0
    done = await supervisor.status("k1", "canceled", timeout=1)
    assert done.report.reason == "idle too long"


async def test_wrong_token_exits_non_zero(supervisor, start_agent):
    agent = start_agent(token="not-the-token")
    code = await agent.wait_exit()
    assert code == 3
    assert supervisor.connections == 0 and supervisor.upgrade_attempts == 1
    assert "refused our token (HTTP 401)" in agent.log()
    assert "not-the-token" not in agent.log()


async def test_gives_up_without_supervisor_when_idle(start_agent, tmp_path):
    agent = start_agent(url="ws://127.0.0.1:9/agent", give_up_after="1")
    started = time.monotonic()
    assert await agent.wait_exit(WAIT) == 0
    assert 0.9 < time.monotonic() - started < 10
    assert "no connection for" in agent.log()


async def test_kill_agent_can_leave_jobs_running(supervisor, start_agent, tmp_path):
    agent = start_agent()
    await supervisor.send(sleeper("keep", tmp_path / "keep"))
    running = await supervisor.status("keep", "running")
    pid = running.report.info["pid"]
    try:
        await supervisor.send(KillAgent(reason="upgrade", cancel_jobs=False))
        assert await agent.wait_exit() == 0
        os.killpg(pid, 0)  # still there, in its own process group
        assert not supervisor.find(StatusUpdate, lambda m: m.report.job_id == "keep" and m.report.state != "running")
    finally:
        try:
            os.killpg(pid, 9)
        except ProcessLookupError:
            pass
