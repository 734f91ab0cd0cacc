import asyncio
import contextlib

from jobvisor.protocol import ALLOWED_FROM_AGENT, Ack, LogChunk, OpReply, decode_frame

from agent.outbox import Outbox, size_hint


def decode(frame):
    messages, errors = decode_frame(frame, ALLOWED_FROM_AGENT)
    assert errors == []
    return messages


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
    assert not reply.ok and reply.error["kind"] == "too_large"


async def test_pump_sends_one_frame_per_turn_and_tracks_congestion():
    box = Outbox(max_frame_bytes=1 << 20, congestion_bytes=100_000)
    sent = []

    async def send(frame):
        sent.append(frame)

    for i in range(50):
        box.put(Ack(f"j{i}", 1))
    assert not box.congested
    box.put(LogChunk("j", 1, 0, b"y" * 200_000))
    assert box.congested and size_hint(box._items[-1]) > 200_000
    pump = asyncio.create_task(box.pump(send))
    for _ in range(5):
        await asyncio.sleep(0)
    pump.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pump
    assert len(sent) == 1 and len(decode(sent[0])) == 51
    assert box.empty and not box.congested
