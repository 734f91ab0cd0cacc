"""The codec: round trips, and clear ProtocolErrors for what must be refused."""

from __future__ import annotations

import pytest

from jobvisor.errors import MessageTooLarge, ProtocolError
from jobvisor.codec import decode, decode_frame, encode, encode_frame, pack
from jobvisor.protocol.agent_wire import Hello, InputChunk, InputFile, JobReport, RunJob, StatusUpdate
from jobvisor.protocol.common import Caller
from jobvisor.protocol.job_requests import JobSpec, SubmitJobs
from jobvisor.protocol.registry import ALLOWED_FROM_AGENT, ALLOWED_GATEWAY_REQUESTS, ALLOWED_TO_AGENT


def test_round_trip_with_nested_messages():
    message = SubmitJobs(Caller("ann", True), [JobSpec("shell", {"argv": ["true"]}, {"cpus": 2})])
    assert decode(encode(message), ALLOWED_GATEWAY_REQUESTS) == message
    frame = encode_frame([Hello("a1", 1, 7, "h", [JobReport("j1", 1, "running")]), StatusUpdate(JobReport("j1", 1, "completed", exit_code=0))])
    messages, errors = decode_frame(frame, ALLOWED_FROM_AGENT)
    assert not errors and messages[1].report.exit_code == 0


def test_a_run_carries_its_inputs_env_and_workdir():
    run = RunJob("j1", 1, "shell", {"argv": ["./sim.sh"]}, {}, "/tmp/x",
                 inputs=[InputFile("sim.sh", data=b"#!/bin/sh\n"), InputFile("in/big.dat", source="/srv/big.dat"),
                         InputFile("huge.bin")],
                 env={"FOO": "bar"}, workdir="/srv/case")
    assert decode(encode(run), ALLOWED_TO_AGENT) == run
    chunk = InputChunk("j1", 1, "/tmp/x", "huge.bin", 0, b"\0" * 10)
    assert decode(encode(chunk), ALLOWED_TO_AGENT) == chunk
    with pytest.raises(ProtocolError, match="input_file.data"):
        decode(pack({"t": "run", "job_id": "j", "attempt": 1, "code": "shell", "params": {}, "resources": {},
                     "run_dir": "/x", "inputs": [{"t": "input_file", "path": "a", "data": "text"}]}), ALLOWED_TO_AGENT)


def test_unknown_type_and_wrong_direction_are_refused():
    with pytest.raises(ProtocolError, match="unknown message type 'bogus'"):
        decode(pack({"t": "bogus"}))
    run = RunJob("j1", 1, "shell", {}, {}, "/tmp/x")
    with pytest.raises(ProtocolError, match="unknown message type 'run'"):
        decode(encode(run), ALLOWED_FROM_AGENT)
    assert decode(encode(run), ALLOWED_TO_AGENT) == run


def test_malformed_fields_name_the_field():
    with pytest.raises(ProtocolError, match="hello.pid must be an integer"):
        decode(pack({"t": "hello", "agent_id": "a", "protocol_version": 1, "pid": "x", "hostname": "h"}))
    with pytest.raises(ProtocolError, match="missing field 'hostname'"):
        decode(pack({"t": "hello", "agent_id": "a", "protocol_version": 1, "pid": 1}))
    with pytest.raises(ProtocolError, match="not a msgpack message"):
        decode(b"\xc1garbage")


def test_bad_messages_inside_a_frame_do_not_spoil_the_good_ones():
    frame = pack([{"t": "ack", "job_id": "j", "attempt": 1}, {"t": "nope"}, "junk"])
    messages, errors = decode_frame(frame, ALLOWED_FROM_AGENT)
    assert len(messages) == 1 and len(errors) == 2


def test_size_limit():
    with pytest.raises(MessageTooLarge, match="over the limit of 100"):
        decode(pack({"t": "ack", "job_id": "j" * 200, "attempt": 1}), max_bytes=100)
