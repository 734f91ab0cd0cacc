"""The supervisor's log bytes beside its commits (LogWriter) and the ended jobs whose log is
still arriving (LogTails), on a real log store in a temp dir."""

from __future__ import annotations

import asyncio

from supervisor.log_tails import LogTails
from supervisor.log_writer import LogWriter
from supervisor.logstore import LogStore


async def test_chunks_are_written_in_order_with_a_new_attempt_emptying_the_log(tmp_path):
    logs = LogStore(tmp_path)
    writer = LogWriter(logs)
    grown: list[dict] = []
    writer.on_sizes = grown.append
    writer.start()
    writer.write("j1", 0, b"attempt one\n")
    writer.restart("j1")
    writer.write("j1", 0, b"two\n")
    writer.write("j1", 4, b"more\n")
    writer.write("j1", 100, b"a gap: skipped, the agent resends from our size")
    await writer.written()
    assert logs.read("j1", 0, 1000) == (b"two\nmore\n", 9)
    assert grown[-1] == {"j1": 9} and writer.pending == 0
    await writer.close()


async def test_a_failed_write_is_kept_and_tried_again(tmp_path, monkeypatch):
    logs = LogStore(tmp_path)
    real = logs.write_batch
    calls = []

    def flaky(chunks):
        calls.append(len(chunks))
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real(chunks)

    monkeypatch.setattr(logs, "write_batch", flaky)
    monkeypatch.setattr("supervisor.log_writer.write_retry_delay", lambda failures: 0.01)
    writer = LogWriter(logs)
    writer.start()
    writer.write("j1", 0, b"kept\n")
    await asyncio.wait_for(writer.written(), 10)
    assert len(calls) >= 2 and logs.read("j1", 0, 100) == (b"kept\n", 5)
    await writer.close()


async def test_agents_are_held_back_while_too_much_waits_to_be_written(tmp_path, monkeypatch):
    logs = LogStore(tmp_path)
    gate = asyncio.Event()
    loop = asyncio.get_running_loop()
    real = logs.write_batch

    def slow(chunks):
        asyncio.run_coroutine_threadsafe(gate.wait(), loop).result(10)
        return real(chunks)

    monkeypatch.setattr(logs, "write_batch", slow)
    writer = LogWriter(logs, max_pending=1000)
    writer.start()
    writer.write("j1", 0, b"x" * 600)
    assert not writer.full()
    writer.write("j1", 600, b"x" * 600)
    assert writer.full()
    room = asyncio.ensure_future(writer.wait_room())
    await asyncio.sleep(0.05)
    assert not room.done()
    gate.set()
    await asyncio.wait_for(room, 10)
    await writer.written()
    assert logs.size("j1") == 1200 and not writer.full()
    await writer.close()


def test_a_tail_is_kept_until_the_store_holds_the_final_size():
    tails = LogTails()
    tails.expect("j1", "a1", 1, final_size=100, stored=40)
    tails.expect("j2", "a1", 1, final_size=10, stored=10)  # all there already: no tail
    assert tails.pending("j2") is None and len(tails) == 1
    assert tails.of("j1", "a1", 1) is not None
    assert tails.of("j1", "a2", 1) is None and tails.of("j1", "a1", 2) is None  # another agent, another attempt
    assert tails.grew("j1", 99) is None and tails.pending("j1").stored == 99
    done = tails.grew("j1", 100)
    assert done is not None and done.final_size == 100 and tails.pending("j1") is None


def test_the_tails_of_a_dead_agent_are_given_up():
    tails = LogTails()
    tails.expect("j1", "a1", 1, 100, 0)
    tails.expect("j2", "a2", 1, 100, 0)
    assert tails.drop_agent("a1") == ["j1"]
    assert tails.pending("j1") is None and tails.pending("j2") is not None
