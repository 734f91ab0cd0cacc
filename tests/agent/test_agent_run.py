"""The real agent process against a stub supervisor: running, output, failures, batching."""

import asyncio
import json
import os
import sys

from jobvisor.protocol.agent_wire import Ack, LogChunk, OpReply, Progress, RunJob, StatusRequest, StatusUpdate

from tests.agent.stub_supervisor import WAIT


def run(job_id, run_dir, code="shell", params=None, resources=None, attempt=1):
    return RunJob(job_id, attempt, code, params if params is not None else {"argv": ["true"]}, resources or {}, str(run_dir))


async def test_true_runs_and_completes(supervisor, start_agent, tmp_path):
    start_agent()
    await supervisor.wait_connected()
    hello = supervisor.hellos()[0]
    assert hello.agent_id == "a-test" and hello.jobs == []
    await supervisor.send(run("j1", tmp_path / "j1"))
    done = await supervisor.status("j1", "completed")
    assert done.report.exit_code == 0 and done.report.log_size == 0
    # its end says when and as what it started; a start sent alone (not folded into the end
    # by the outbox's START_LINGER: a slow machine) said the same
    assert done.report.started_at is not None and done.report.info["pid"] > 0
    for start in supervisor.find(StatusUpdate, lambda m: m.report.job_id == "j1" and m.report.state == "running"):
        assert start.report.info == done.report.info and start.report.started_at == done.report.started_at
    # a run received once is acknowledged by its first report: no Ack of its own
    assert [m for _, m in supervisor.messages if isinstance(m, Ack)] == []
    # it ended before its status file was due (STATUS_FILE_DELAY): its report says everything
    assert not (tmp_path / "j1" / ".jobvisor" / "status.json").exists()
    assert oct((tmp_path / "j1").stat().st_mode & 0o777) == "0o700"
    assert not (tmp_path / "j1" / ".jobvisor").exists()  # nothing needed it


async def test_a_job_that_runs_a_while_has_a_status_file_until_its_end(supervisor, start_agent, tmp_path):
    start_agent()
    await supervisor.send(run("j1", tmp_path / "j1", params={"argv": ["sleep", "1.5"]}))
    await supervisor.status("j1", "running")
    status_file = tmp_path / "j1" / ".jobvisor" / "status.json"
    for _ in range(100):  # written STATUS_FILE_DELAY after the start
        if status_file.exists():
            break
        await asyncio.sleep(0.05)
    status = json.loads(status_file.read_text())
    assert status["state"] == "running" and status["pid"] > 0 and status["job_id"] == "j1"
    await supervisor.status("j1", "completed")
    status = json.loads(status_file.read_text())
    assert status["state"] == "completed" and status["exit_code"] == 0


async def test_python_print_is_shipped_as_log(supervisor, start_agent, tmp_path):
    start_agent()
    await supervisor.send(run("j2", tmp_path / "j2", params={"argv": [sys.executable, "-c", "print(42)"]}))
    done = await supervisor.status("j2", "completed")
    assert bytes(supervisor.logs["j2"]) == b"42\n"
    assert done.report.log_size == 3
    chunk = await supervisor.message(LogChunk, lambda m: m.job_id == "j2")
    assert chunk.offset == 0 and chunk.attempt == 1
    # the whole log arrived before the terminal report
    order = [m for _, m in supervisor.messages if getattr(m, "job_id", None) == "j2" or (isinstance(m, StatusUpdate) and m.report.job_id == "j2")]
    assert isinstance(order[-1], StatusUpdate) and order[-1].report.state == "completed"


async def test_failures_have_clear_reasons(supervisor, start_agent, tmp_path):
    start_agent()
    await supervisor.send(
        run("bad-code", tmp_path / "a", code="nope"),
        run("bad-params", tmp_path / "b", params={"argv": []}),
        run("no-prog", tmp_path / "c", params={"argv": ["/nonexistent/prog-xyz"]}),
        run("exit3", tmp_path / "d", params={"script": "echo oops; exit 3"}),
        run("killed", tmp_path / "e", params={"script": "kill -9 $$"}),
    )
    bad_code = await supervisor.status("bad-code", "failed")
    assert "unknown code 'nope'" in bad_code.report.reason
    assert "installed codes: demo, python, shell" in bad_code.report.reason
    bad_params = await supervisor.status("bad-params", "failed")
    assert "params.argv must not be empty" in bad_params.report.reason
    no_prog = await supervisor.status("no-prog", "failed")
    assert no_prog.report.reason == "cannot start '/nonexistent/prog-xyz': No such file or directory"
    exit3 = await supervisor.status("exit3", "failed")
    assert exit3.report.reason == "exit code 3; last output: oops" and exit3.report.exit_code == 3
    assert bytes(supervisor.logs["exit3"]) == b"oops\n"
    killed = await supervisor.status("killed", "failed")
    assert killed.report.reason == "killed by SIGKILL"


async def test_job_env_has_job_vars_but_no_token(supervisor, start_agent, tmp_path):
    start_agent()
    path = "/nonexistent:" + os.environ["PATH"]  # one of the agent's own variables, overridden
    await supervisor.send(run("envjob", tmp_path / "env", params={"argv": ["env"], "env": {"MY_VAR": "hello", "PATH": path}}))
    await supervisor.status("envjob", "completed")
    lines = bytes(supervisor.logs["envjob"]).decode().splitlines()
    assert [line for line in lines if line.startswith("PATH=")] == [f"PATH={path}"]  # once, the job's
    env = dict(line.split("=", 1) for line in lines if "=" in line)
    assert "JOBVISOR_AGENT_TOKEN" not in env
    assert not any("agent-test-token" in v for v in env.values())
    assert env["JOBVISOR_JOB_ID"] == "envjob" and env["JOBVISOR_ATTEMPT"] == "1"
    assert env["JOBVISOR_RUN_DIR"] == str(tmp_path / "env")
    assert env["JOBVISOR_PROGRESS_FILE"] == str(tmp_path / "env" / ".jobvisor-progress.json")
    assert env["MY_VAR"] == "hello"


async def test_python_code_result_and_progress(supervisor, start_agent, tmp_path):
    run_dir = tmp_path / "py"
    run_dir.mkdir()
    (run_dir / "mymod.py").write_text(
        "import time\nfrom job_cmd.progress import report\n"
        "def go(n):\n    report(0.5, 'half way')\n    time.sleep(0.3)\n    print('computing', flush=True)\n    return {'square': n * n}\n"
    )
    start_agent()
    await supervisor.send(run("py1", run_dir, code="python", params={"entry": "mymod:go", "args": {"n": 7}}))
    done = await supervisor.status("py1", "completed")
    assert done.report.result == {"square": 49}
    progress = await supervisor.message(Progress)
    assert progress.job_id == "py1" and progress.fraction == 0.5 and progress.message == "half way"
    assert b"computing" in bytes(supervisor.logs["py1"])


async def test_a_shell_job_reports_progress_through_its_file_from_the_start(supervisor, start_agent, tmp_path):
    # any language: write the file JOBVISOR_PROGRESS_FILE names (a rename over it); it must be
    # writable at once, although the run dir has no .jobvisor/ yet
    script = ('printf \'{"fraction": 0.25, "message": "a quarter"}\' > "$JOBVISOR_PROGRESS_FILE.tmp" && '
              'mv "$JOBVISOR_PROGRESS_FILE.tmp" "$JOBVISOR_PROGRESS_FILE" && sleep 0.3')
    start_agent()
    await supervisor.send(run("p1", tmp_path / "p1", params={"script": script}))
    done = await supervisor.status("p1", "completed")
    assert done.report.exit_code == 0
    progress = await supervisor.message(Progress, lambda m: m.job_id == "p1")
    assert (progress.fraction, progress.message) == (0.25, "a quarter")


async def test_status_request_lists_jobs(supervisor, start_agent, tmp_path):
    start_agent()
    await supervisor.send(run("s1", tmp_path / "s1", params={"argv": ["sleep", "30"]}))
    await supervisor.status("s1", "running")
    await supervisor.send(StatusRequest("op-1"))
    reply = await supervisor.message(OpReply, lambda m: m.op_id == "op-1")
    assert reply.ok and [j["job_id"] for j in reply.data["jobs"]] == ["s1"]
    assert reply.data["jobs"][0]["state"] == "running"


async def test_many_short_jobs_are_batched(supervisor, start_agent, tmp_path):
    start_agent()
    await supervisor.wait_connected()
    frames_before = supervisor.frames
    count = 300
    await supervisor.send(*[run(f"b{i}", tmp_path / f"b{i}") for i in range(count)])
    await supervisor.wait(lambda: len(supervisor.find(StatusUpdate, lambda m: m.report.state == "completed")) == count, WAIT)
    assert supervisor.errors == []
    # 300 acks + 300 running + 300 completed travelled in far fewer frames than messages
    assert supervisor.frames - frames_before < count
    assert os.path.exists(tmp_path / "b0" / "output.log")
