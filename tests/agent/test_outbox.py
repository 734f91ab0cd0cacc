import asyncio
import contextlib

from jobvisor.codec import decode_frame
from jobvisor.protocol.agent_wire import Ack, JobReport, LogChunk, OpReply, StatusUpdate
from jobvisor.protocol.registry import ALLOWED_FROM_AGENT
from jobvisor.states import JobState

from agent.outbox import LOG_FRAME_BYTES, Outbox, size_hint


def decode(frame):
    messages, errors = decode_frame(frame, ALLOWED_FROM_AGENT)
    assert errors == []
    return messages


async def pump_a_moment(box: Outbox) -> list[bytes]:
    """The frames the outbox sends in a few turns of the loop."""
    sent: list[bytes] = []

    async def send(frame):
        sent.append(frame)

    pump = asyncio.create_task(box.pump(send))
    for _ in range(5):
        await asyncio.sleep(0)
    pump.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pump
    return sent


def test_small_batch_is_one_frame():
    box = Outbox(max_frame_bytes=1 << 20, congestion_bytes=1 << 20)
    batch = [Ack(f"j{i}", 1) for i in range(1000)]
    frames = list(box.frames(batch))
    assert len(frames) == 1 and decode(frames[0]) == batch


def test_big_batch_is_split_in_order_under_the_limit():
    box = Outbox(max_frame_bytes=100_000, congestion_bytes=1 << 20)
    batch = [LogChunk("j", 1, i * 20_000, b"x" * 20_000) for i in range(12)]
    frames = list(box.frames(batch))
    assert len(frames) > 1 and all(len(f) <= 100_000 for f in frames)
    assert [m for f in frames for m in decode(f)] == batch


def test_oversized_reply_becomes_an_error():
    box = Outbox(max_frame_bytes=10_000, congestion_bytes=1 << 20)
    (frame,) = box.frames([OpReply("op", True, data={"files": ["x" * 100] * 200})])
    (reply,) = decode(frame)
    assert not reply.ok and reply.error.kind == "too_large"


def report(job_id, state, started_at=None, attempt=1):
    return StatusUpdate(JobReport(job_id, attempt, state, at=1.0 if state == "running" else 2.0, started_at=started_at))


def states(frame):
    return [(m.report.job_id, m.report.state) if isinstance(m, StatusUpdate) else type(m).__name__ for m in decode(frame)]


class Pumping:
    """The outbox's pump running into a list, for tests that put while it runs."""

    def __init__(self, box: Outbox) -> None:
        self.sent: list[bytes] = []
        self.task = asyncio.create_task(box.pump(self._send))

    async def _send(self, frame: bytes) -> None:
        self.sent.append(frame)

    async def turns(self, n: int = 5) -> None:
        for _ in range(n):
            await asyncio.sleep(0)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@contextlib.asynccontextmanager
async def pumping_box(start_linger: float):
    box = Outbox(max_frame_bytes=1 << 20, congestion_bytes=1 << 20, start_linger=start_linger)
    pumping = Pumping(box)
    try:
        yield box, pumping
    finally:
        await pumping.stop()


async def test_a_start_alone_waits_for_its_end_and_goes_folded_into_it():
    async with pumping_box(start_linger=30.0) as (box, pumping):
        box.put(report("a", "running"))
        box.put(report("b", "running"))
        await pumping.turns()
        assert pumping.sent == []  # held: nothing but starts
        box.put(report("a", "completed", started_at=1.0))  # the end ends the hold at once
        await pumping.turns()
        assert [states(f) for f in pumping.sent] == [[("b", "running"), ("a", "completed")]]


async def test_any_other_message_ends_the_hold_at_once():
    async with pumping_box(start_linger=30.0) as (box, pumping):
        box.put(report("a", "running"))
        await pumping.turns()
        box.put(OpReply("op1", True, data={}))
        await pumping.turns()
        assert [states(f) for f in pumping.sent] == [[("a", "running"), "OpReply"]]


async def test_a_longer_jobs_start_goes_when_the_hold_ends():
    async with pumping_box(start_linger=0.05) as (box, pumping):
        box.put(report("a", "running"))
        await pumping.turns()
        assert pumping.sent == []
        for _ in range(200):  # the hold is 50 ms; give it up to 10 s on a loaded machine
            if pumping.sent:
                break
            await asyncio.sleep(0.05)
        assert [states(f) for f in pumping.sent] == [[("a", "running")]]
        box.put(report("a", "completed", started_at=1.0))  # its end follows alone, unheld
        await pumping.turns()
        assert [states(f) for f in pumping.sent[1:]] == [[("a", "completed")]]
        assert box.empty


async def test_pump_sends_one_frame_per_turn_and_tracks_congestion():
    box = Outbox(max_frame_bytes=1 << 20, congestion_bytes=100_000)
    for i in range(50):
        box.put(Ack(f"j{i}", 1))
    assert not box.congested
    box.put(LogChunk("j", 1, 0, b"y" * 200_000))
    assert box.congested and size_hint(box._logs[-1]) > 200_000
    sent = await pump_a_moment(box)
    assert len(sent) == 1 and len(decode(sent[0])) == 51  # log bytes that fit one log frame go along
    assert box.empty and not box.congested


async def test_a_start_and_an_end_waiting_for_the_same_frame_go_as_the_end_alone():
    box = Outbox(max_frame_bytes=1 << 20, congestion_bytes=1 << 20, start_linger=0)
    sent = []

    async def flush():
        sent.extend(await pump_a_moment(box))
        return [(m.report.job_id, m.report.attempt, m.report.state) if isinstance(m, StatusUpdate) else "log"
                for m in decode(sent[-1])]

    def report(job_id, state, started_at=None, attempt=1):
        return StatusUpdate(JobReport(job_id, attempt, state, at=1.0 if state == "running" else 2.0, started_at=started_at))

    box.put(report("a", "running"))
    box.put(report("b", "running"))
    box.put(LogChunk("a", 1, 0, b"out\n"))
    box.put(report("a", "completed", started_at=1.0))
    box.put(report("b", "running", attempt=2))  # another attempt: its own start stays
    box.put(report("b", "failed", started_at=None))  # never started: nothing to fold
    # the log bytes first (a short job's output before its end), then the reports in order
    assert await flush() == ["log", ("b", 1, "running"), ("a", 1, "completed"), ("b", 2, "running"), ("b", 1, "failed")]
    assert decode(sent[-1])[2].report.started_at == 1.0
    # a start that left in an earlier frame stays; its end follows in the next one
    box.put(report("c", "running"))
    assert await flush() == [("c", 1, "running")]
    box.put(report("c", "completed", started_at=1.0))
    assert await flush() == [("c", 1, "completed")]
    assert len(sent) == 3 and box.empty


def test_a_value_the_wire_cannot_carry_drops_only_itself():
    """A job's result of 2**70 (or an analysis reply holding one) cannot be packed: it killed
    the agent's send loop, the agent reconnected and sent it again in its hello, and every job
    of the agent ended lost. Now the culprit goes without its result, with the reason, and the
    rest of its frame goes as it was."""
    box = Outbox(max_frame_bytes=1 << 20, congestion_bytes=1 << 20)
    big = StatusUpdate(JobReport("j2", 1, JobState.COMPLETED, exit_code=0, result={"big": 2**70}))
    batch = [report("j1", "running"), big, OpReply("op", True, data={"x": -(2**70)}), Ack("j3", 1)]
    sent = [m for frame in box.frames(batch) for m in decode(frame)]
    assert sent[0] == batch[0] and sent[-1] == batch[-1] and len(sent) == 4
    assert sent[1].report.result is None and sent[1].report.state is JobState.COMPLETED
    assert "result dropped" in sent[1].report.reason and "cannot carry" in sent[1].report.reason
    assert not sent[2].ok and sent[2].error.kind == "invalid"


async def test_reports_do_not_wait_behind_a_log_backlog():
    """A job's end goes in the first frame, ahead of queued log bytes (more than one log
    frame's worth), which follow it a log frame at a time."""
    box = Outbox(max_frame_bytes=1 << 24, congestion_bytes=1 << 24, start_linger=0)
    chunk = 256 * 1024
    for i in range(6):
        box.put(LogChunk("a", 1, i * chunk, b"y" * chunk))
    box.put(StatusUpdate(JobReport("a", 1, "completed", at=2.0, log_size=6 * chunk)))
    sent = await pump_a_moment(box)
    frames = [decode(frame) for frame in sent]
    assert [type(m).__name__ for m in frames[0]] == ["StatusUpdate"]
    offsets = [m.offset for frame in frames[1:] for m in frame]
    assert offsets == [i * chunk for i in range(6)]
    assert all(sum(len(m.data) for m in frame) <= LOG_FRAME_BYTES for frame in frames[1:])
    assert box.empty
