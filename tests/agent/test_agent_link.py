"""The link to the supervisor: log flow control, reconnects, Hello/HelloAck/ForgetJobs,
malformed input, io and analysis ops."""

import asyncio

import msgpack

from jobvisor.protocol.agent_wire import (
    AnalysisRequest, CancelJob, ErrorMessage, ForgetJobs, HelloAck, IoRequest, LogChunk, OpReply, RunJob,
    StatusRequest, StatusUpdate,
)

from tests.agent.test_agent_stop import group_gone


def vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


async def test_log_flood_is_bounded_and_complete(supervisor, start_agent, tmp_path):
    agent = start_agent()
    size = 20_000_000
    await supervisor.send(RunJob("flood", 1, "shell", {"script": f"yes | head -c {size}"}, {}, str(tmp_path / "f")))
    done = await supervisor.status("flood", "completed", timeout=60)
    assert done.report.log_size == size == (tmp_path / "f" / "output.log").stat().st_size
    # the end does not wait for the log: its bytes may still follow it
    await supervisor.wait(lambda: len(supervisor.logs.get("flood", b"")) >= size, 60, "the whole log")
    assert supervisor.log_gaps == []
    log = supervisor.logs["flood"]
    assert len(log) == size and log[:4] == b"y\ny\n" and log.count(b"y\n") == size // 2
    chunks = supervisor.find(LogChunk, lambda m: m.job_id == "flood")
    assert max(len(c.data) for c in chunks) <= 256 * 1024  # max_log_chunk
    # the agent never held the flood in memory: its peak RSS stays far below 20 MB of output
    assert vm_hwm_kib(agent.pid) < 120 * 1024


async def test_reconnect_announces_running_job_and_resumes_log(supervisor, start_agent, tmp_path):
    start_agent()
    script = "echo before; sleep 1; echo after; sleep 30"
    await supervisor.send(RunJob("r1", 1, "shell", {"script": script}, {}, str(tmp_path / "r1")))
    await supervisor.wait(lambda: bytes(supervisor.logs.get("r1", b"")) == b"before\n")
    await supervisor.drop()
    await supervisor.wait_connected(count=2)
    hello = supervisor.hellos()[1]
    (report,) = hello.jobs
    assert report.job_id == "r1" and report.state == "running" and report.info["pid"] > 0
    # the stub acked offset 7: the agent continues from there, no byte twice, none lost
    await supervisor.wait(lambda: bytes(supervisor.logs["r1"]) == b"before\nafter\n")
    assert supervisor.log_gaps == []
    await supervisor.send(CancelJob("r1"))
    await supervisor.status("r1", "canceled")


async def test_terminal_reports_resent_until_forgotten(supervisor, start_agent, tmp_path):
    start_agent()
    await supervisor.send(RunJob("t1", 1, "shell", {"script": "echo hi"}, {}, str(tmp_path / "t1")))
    await supervisor.status("t1", "completed")
    # a supervisor that lost everything asks for the log from byte 0 again
    supervisor.hello_offsets = {"t1": 0}
    supervisor.logs.clear()
    await supervisor.drop()
    await supervisor.wait_connected(count=2)
    (report,) = supervisor.hellos()[1].jobs
    # an ended job is announced as ended, with its final log size; its log goes on from the ack's offset
    assert report.job_id == "t1" and report.state == "completed" and report.log_size == 3
    await supervisor.wait(lambda: bytes(supervisor.logs.get("t1", b"")) == b"hi\n")
    await supervisor.drop()
    await supervisor.wait_connected(count=3)
    assert [r.job_id for r in supervisor.hellos()[2].jobs] == ["t1"]
    await supervisor.send(ForgetJobs(["t1"]))
    await supervisor.send(StatusRequest("op-after-forget"))
    reply = await supervisor.message(OpReply, lambda m: m.op_id == "op-after-forget")
    assert reply.data == {"jobs": []}
    await supervisor.drop()
    await supervisor.wait_connected(count=4)
    assert supervisor.hellos()[3].jobs == []


async def test_malformed_input_gets_error_replies(supervisor, start_agent):
    agent = start_agent()
    await supervisor.send_raw(b"\xc1 not msgpack")
    await supervisor.send_raw(msgpack.packb([{"t": "bogus"}, {"t": "cancel"}, {"t": "status", "op_id": "op-ok"}]))
    await supervisor.send_raw(b"\x92")  # truncated msgpack array
    errors = await supervisor.wait(lambda: (e := supervisor.find(ErrorMessage)) and len(e) >= 4 and e)
    details = " | ".join(e.detail for e in errors)
    assert "not a msgpack message" in details
    assert "unknown message type 'bogus'" in details
    assert "missing field 'job_id'" in details
    # the good message of the mixed frame was still handled, and the agent is still up
    reply = await supervisor.message(OpReply, lambda m: m.op_id == "op-ok")
    assert reply.ok
    await supervisor.send(StatusRequest("op-2"))
    assert (await supervisor.message(OpReply, lambda m: m.op_id == "op-2")).ok
    assert agent.proc.poll() is None
    assert supervisor.connections == 1


async def test_io_ops_are_confined(supervisor, start_agent, tmp_path):
    run_dir = tmp_path / "io"
    start_agent()
    await supervisor.send(RunJob("io1", 1, "shell", {"script": "echo data > out.txt; mkdir sub; echo x > sub/y"}, {}, str(run_dir)))
    await supervisor.status("io1", "completed")
    (tmp_path / "secret.txt").write_text("secret")
    (run_dir / "link").symlink_to(tmp_path / "secret.txt")
    await supervisor.send(
        IoRequest("op-list", "io1", str(run_dir), "list"),
        IoRequest("op-read", "io1", str(run_dir), "read", path="out.txt", offset=1, length=3),
        IoRequest("op-dotdot", "io1", str(run_dir), "read", path="../secret.txt"),
        IoRequest("op-abs", "io1", str(run_dir), "read", path=str(tmp_path / "secret.txt")),
        IoRequest("op-link", "io1", str(run_dir), "read", path="link"),
        IoRequest("op-missing", "io1", str(run_dir), "read", path="nope.txt"),
        IoRequest("op-action", "io1", str(run_dir), "write", path="x"),
    )
    replies = {}
    for op in ("op-list", "op-read", "op-dotdot", "op-abs", "op-link", "op-missing"):
        replies[op] = await supervisor.message(OpReply, lambda m, op=op: m.op_id == op)
    # an action outside the closed set (IoAction) is refused at the socket edge, naming the choices
    refused = await supervisor.message(ErrorMessage, lambda m: "io.action" in m.detail)
    assert [f["path"] for f in replies["op-list"].data["files"]] == ["out.txt", "output.log", "sub/y"]
    assert replies["op-read"].data == {"data": b"ata", "offset": 1, "size": 5}
    for op in ("op-dotdot", "op-abs", "op-link"):
        assert not replies[op].ok and replies[op].error.kind == "forbidden", op
    assert "'..'" in replies["op-dotdot"].error.detail
    assert replies["op-missing"].error.kind == "not_found"
    assert "'list', 'read'" in refused.detail


async def test_analysis_op(supervisor, start_agent, tmp_path):
    run_dir = tmp_path / "demo"
    start_agent()
    await supervisor.send(RunJob("d1", 1, "demo", {"steps": 100}, {}, str(run_dir)))
    done = await supervisor.status("d1", "completed", timeout=30)
    assert done.report.result["steps"] == 100
    await supervisor.send(
        AnalysisRequest("op-a", "d1", "demo", str(run_dir), {"column": "x"}),
        AnalysisRequest("op-bad", "d1", "demo", str(run_dir), {"column": "nope"}),
        AnalysisRequest("op-slow", "d1", "demo", str(run_dir), {}, timeout=0.001),
    )
    ok = await supervisor.message(OpReply, lambda m: m.op_id == "op-a", timeout=30)
    assert ok.ok and ok.data["rows"] == 101 and ok.data["column"] == "x"
    assert ok.data["min"] <= ok.data["mean"] <= ok.data["max"]
    bad = await supervisor.message(OpReply, lambda m: m.op_id == "op-bad", timeout=30)
    assert not bad.ok and bad.error.kind == "invalid" and bad.error.field == "args.column"
    slow = await supervisor.message(OpReply, lambda m: m.op_id == "op-slow", timeout=30)
    assert not slow.ok and slow.error.kind == "timeout"


async def test_hello_ack_forget_cancels_unwanted_running_job(supervisor, start_agent, tmp_path):
    start_agent()
    await supervisor.send(RunJob("u1", 1, "shell", {"argv": ["sleep", "30"]}, {}, str(tmp_path / "u1")))
    running = await supervisor.status("u1", "running")
    supervisor.ack_hello = False
    await supervisor.drop()
    await supervisor.wait_connected(count=2)
    await supervisor.send(HelloAck(log_offsets={}, forget=["u1"]))
    assert await group_gone(running.report.info["pid"], timeout=5)
    await supervisor.send(StatusRequest("op-u"))
    reply = await supervisor.message(OpReply, lambda m: m.op_id == "op-u")
    assert reply.data == {"jobs": []}
    assert [r.job_id for r in supervisor.hellos()[1].jobs] == ["u1"]
    # the forgotten job is not reported: the supervisor said it does not want it
    assert not supervisor.find(StatusUpdate, lambda m: m.report.job_id == "u1" and m.report.state == "canceled")


async def test_a_hello_refused_at_once_backs_off_instead_of_hammering(supervisor, start_agent):
    """A supervisor that refuses the hello (a protocol version it does not speak) closes the
    link at once. The agent used to start its backoff over at every connect, so it reconnected
    about twenty times a second; a link must last before the backoff starts over."""
    supervisor.refuse_hello = True
    agent = start_agent(max_backoff="2")
    await supervisor.wait(lambda: supervisor.connections >= 1, what="the first connection")
    await asyncio.sleep(3.0)
    # backing off (0.1, 0.2, 0.4 ... 2 s, with jitter): about 7; starting over each time: about 50
    assert 2 <= supervisor.connections <= 12, (supervisor.connections, agent.log()[-3000:])
