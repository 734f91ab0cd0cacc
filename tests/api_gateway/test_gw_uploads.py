"""A multipart submit's files stream past the JSON body limit (64 KiB here) to the supervisor,
over HTTP + msgpack as between two hosts, in slices under the message limit; the form is
bounded by gateway.max_input_bytes instead."""

from __future__ import annotations

import os

from jobvisor.protocol.job_requests import SubmitJobs, UploadInput
from real_env import MAX_BODY, start_real_env
from tests.harness import job_form


async def test_files_stream_past_the_body_limit_in_slices_and_the_form_has_its_own_limit(tmp_path):
    env = await start_real_env(tmp_path, JOBVISOR_GATEWAY_MAX_INPUT_BYTES=str(5 * 1024 * 1024),
                               JOBVISOR_SUPERVISOR_MAX_MESSAGE_BYTES=str(1024 * 1024))
    try:
        big = os.urandom(2 * 1024 * 1024 + 3)
        assert len(big) > 30 * MAX_BODY
        job = {"code": "shell", "params": {"argv": ["cmp", "big.bin", "copy.bin"]}}
        status, body, _ = await env.call("POST", "/jobs", data=job_form(job, {"big.bin": big, "copy.bin": big}))
        assert status == 201, body
        slices = [r for r in env.requests if isinstance(r, UploadInput)]
        assert len(slices) == 2 * 9 and max(len(r.data) for r in slices) == 256 * 1024  # a quarter of a message
        (submit,) = [r for r in env.requests if isinstance(r, SubmitJobs)]
        assert submit.upload_id == slices[0].upload_id
        done = await env.wait_state(body["id"], {"completed", "failed"})
        assert done["state"] == "completed", done["reason"]
        over = {"big.bin": big, "copy.bin": big, "more.bin": big[:1024 * 1024]}
        status, body, _ = await env.call("POST", "/jobs", data=job_form(job, over))
        assert status == 413 and "max_input_bytes" in body["detail"]
    finally:
        await env.close()


async def test_a_form_without_a_length_is_counted_as_it_arrives(tmp_path):
    env = await start_real_env(tmp_path, JOBVISOR_GATEWAY_MAX_INPUT_BYTES=str(100_000))
    try:
        boundary = "jvtest"
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="job"\r\n\r\n'
                '{"code": "shell", "params": {"argv": ["true"]}}\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.bin"\r\n\r\n').encode()

        async def chunked():  # no Content-Length: the gateway counts the bytes itself
            yield head
            for _ in range(20):
                yield b"x" * 10_000
            yield f"\r\n--{boundary}--\r\n".encode()

        status, body, _ = await env.call("POST", "/jobs", data=chunked(),
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert status == 413 and body["field"] == "file" and "max_input_bytes (100000" in body["detail"]
        status, body, _ = await env.call("GET", "/jobs")
        assert status == 200 and body["jobs"] == []
    finally:
        await env.close()
