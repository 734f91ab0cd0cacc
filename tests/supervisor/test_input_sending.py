"""A run whose input files go as bytes: read in a worker thread, sliced under the message limit,
and nothing sent to the same agent meanwhile (a cancel of that run) overtakes it."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from jobvisor.errors import InvalidRequest, TooLarge
from jobvisor.protocol.agent_wire import CancelJob, InputChunk, InputFile, RunJob
from supervisor.agents import Agent, AgentState
from supervisor.inputs import InputStore, read_inputs
from tests.supervisor.fakes import FakeLink


async def test_messages_sent_while_a_run_is_read_wait_behind_it():
    agent = Agent("a1", "ann", "fake", "hash")
    agent.link = link = FakeLink()
    agent.set_state(AgentState.CONNECTED)
    release = threading.Event()
    run = RunJob("j1", 1, "shell", {}, {}, "/runs/j1")

    def read():
        release.wait(5)
        return [run]

    agent.send_after_read(read)
    agent.send([CancelJob("j1")])  # the user canceled at once
    await asyncio.sleep(0.05)
    assert link.sent == []
    release.set()
    for _ in range(100):
        if len(link.sent) == 2:
            break
        await asyncio.sleep(0.01)
    assert link.sent == [run, CancelJob("j1")]
    agent.send([CancelJob("j2")])  # nothing held any more: straight through
    assert link.sent[-1] == CancelJob("j2")


async def test_inputs_are_inline_when_small_and_in_slices_ahead_when_big(tmp_path):
    store = InputStore(tmp_path, 10**9)
    (tmp_path / "jobs" / "j1" / "d").mkdir(parents=True)
    big = bytes(range(256)) * 40  # 10240 bytes
    (tmp_path / "jobs" / "j1" / "small.txt").write_bytes(b"hi")
    (tmp_path / "jobs" / "j1" / "d" / "big.bin").write_bytes(big)
    run = RunJob("j1", 2, "shell", {}, {}, "/runs/j1", inputs=[InputFile("from/producer", source="/x")])
    messages = read_inputs(store, run, [["d/big.bin", len(big)], ["small.txt", 2], ["gone.txt", 5]], max_message_bytes=16384)
    chunks, final = messages[:-1], messages[-1]
    assert all(isinstance(c, InputChunk) and c.path == "d/big.bin" and c.attempt == 2 for c in chunks)
    assert [c.offset for c in chunks] == [0, 4096, 8192] and b"".join(c.data for c in chunks) == big
    assert final.inputs == [InputFile("from/producer", source="/x"), InputFile("d/big.bin"),
                            InputFile("small.txt", data=b"hi"), InputFile("gone.txt")]  # gone: the agent says it did not arrive


async def test_the_store_keeps_uploads_per_owner_until_claimed_links_them_for_a_resubmit_and_prunes(tmp_path):
    store = InputStore(tmp_path, max_upload_bytes=100)
    assert await store.append("ann", "upload-0001", "a/b.txt", 0, b"hello ") == 6
    assert await store.append("ann", "upload-0001", "a/b.txt", 6, b"world") == 11
    with pytest.raises(InvalidRequest, match="offset 3"):  # a slice lost on the way is never glued in
        await store.append("ann", "upload-0001", "a/b.txt", 3, b"x")
    with pytest.raises(InvalidRequest, match="'..'"):
        await store.append("ann", "upload-0001", "../b.txt", 0, b"x")
    with pytest.raises(InvalidRequest, match="no upload"):  # another user's upload is not theirs to claim
        await store.claim("bob", "upload-0001", ["j1"])
    assert await store.claim("ann", "upload-0001", ["j1", "j2"]) == [["a/b.txt", 11]]
    assert (tmp_path / "jobs" / "j2" / "a" / "b.txt").read_bytes() == b"hello world"
    assert os.stat(tmp_path / "jobs" / "j1" / "a" / "b.txt").st_mode & 0o777 == 0o700
    with pytest.raises(TooLarge):
        await store.append("ann", "upload-0002", "big", 0, b"x" * 101)
    assert not (tmp_path / "uploads" / "ann" / "upload-0002").exists()
    # a resubmit: the same files (hard links), or None once they are gone
    assert await store.link("j1", [["a/b.txt", 11]], ["j5"]) == [["a/b.txt", 11]]
    assert os.stat(tmp_path / "jobs" / "j5" / "a" / "b.txt").st_ino == os.stat(tmp_path / "jobs" / "j1" / "a" / "b.txt").st_ino
    assert await store.link("j1", [["a/b.txt", 11], ["gone.txt", 1]], ["j6"]) is None
    assert not (tmp_path / "jobs" / "j6").exists()  # nothing half linked is left
    # pruning goes by when each job ended, as the database says
    now = time.time()
    for fresh_or_stale in ("j3", "j4"):  # dirs whose jobs have no row: a submit in flight, what a crash left
        (tmp_path / "jobs" / fresh_or_stale).mkdir()
    os.utime(tmp_path / "jobs" / "j4", (now - 7200, now - 7200))
    ends = {"j1": now - 100, "j2": None, "j5": now - 5}  # j2 has not ended (or its end is not committed)
    asked = []

    async def ends_of(ids):
        asked.append(sorted(ids))
        return {i: ends[i] for i in ids if i in ends}

    assert await store.prune(1000, ends_of) == 1  # only j4
    assert asked == [["j1", "j2", "j3", "j4", "j5"]]
    assert await store.prune(50, ends_of) == 1  # j1 ended 100 s ago
    assert sorted(p.name for p in (tmp_path / "jobs").iterdir()) == ["j2", "j3", "j5"]
    assert (tmp_path / "jobs" / "j5" / "a" / "b.txt").read_bytes() == b"hello world"  # its link outlives j1's
    assert await store.prune(0, ends_of) == 1  # j5; j2 is unfinished and j3 fresh, whatever the setting
    assert sorted(p.name for p in (tmp_path / "jobs").iterdir()) == ["j2", "j3"]
