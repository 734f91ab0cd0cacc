"""A full disk: submits are refused with a clear error and nothing already accepted is lost.

The state dir lives on a small tmpfs that the test fills up (needs root to mount, as CI has)."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.harness import Api, ApiError, JobvisorProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the full-disk test needs root (to mount a tmpfs) in CI")
        pytest.skip("needs root to mount a small tmpfs; run the suite as root (as CI does)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


async def first_refusal(api: Api, body: dict | list, tries: int = 20) -> ApiError | None:
    """The first error among up to `tries` submits of `body`: SQLite may still fit a few rows
    in pages it already has."""
    for _ in range(tries):
        try:
            await api.submit(body)
        except ApiError as exc:
            return exc
    return None


def assert_clear(refusal: ApiError) -> None:
    assert refusal.status == 503, refusal.body
    assert "database" in refusal.body["detail"] or "disk" in refusal.body["detail"], refusal.body


async def test_submit_on_a_full_disk_is_refused_clearly_and_loses_nothing(small_disk):
    server = JobvisorProcess(small_disk / "state").start()
    api = Api(server.url, server.token)
    try:
        kept = await api.submit({"code": "shell", "params": {"argv": ["true"]}})
        await api.wait_state(kept["id"], "completed")
        filler = small_disk / "filler"
        with open(filler, "wb", buffering=0) as fh:  # fill the disk to the last block (unbuffered: close flushes nothing)
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        refusal = await first_refusal(api, [{"code": "shell", "params": {"argv": ["true"]}, "name": "x" * 2000}] * 50)
        assert refusal is not None, "a full disk must refuse submits"
        assert_clear(refusal)
        # a lone job's commit is made on the supervisor's loop (supervisor.sqlite_inline): the
        # same clear refusal, and the supervisor goes on
        refusal = await first_refusal(api, {"code": "shell", "params": {"argv": ["true"]}, "name": "y" * 2000})
        assert refusal is not None, "a full disk must refuse a lone job's submit too"
        assert_clear(refusal)
        filler.unlink()
        assert (await api.job(kept["id"]))["state"] == "completed"
        again = await api.submit({"code": "shell", "params": {"argv": ["true"]}})
        assert (await api.wait_state(again["id"], "completed"))["exit_code"] == 0
    finally:
        await api.close()
        server.cleanup()
