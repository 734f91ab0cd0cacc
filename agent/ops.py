"""The agent's ops that touch files or run code, kept off the event loop: io (list and read a
run dir's files, in a thread) and analysis (a `python -m job_cmd.analysis` subprocess). Each
returns the `OpReply`, errors included; a timeout fails only that op."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping

from jobvisor.errors import Forbidden, InvalidRequest, OpError, OpTimeout, PathEscape, TooLarge
from jobvisor.limits import analysis_result_limit
from jobvisor.protocol.agent_wire import AnalysisRequest, IoRequest, OpReply
from jobvisor.protocol.common import WireError

from job_cmd import io

logger = logging.getLogger(__name__)

MAX_LISTED_FILES = 10_000
_NO_JSON = object()


def error_reply(op_id: str, exc: Exception) -> OpReply:
    if isinstance(exc, PathEscape):
        exc = Forbidden(str(exc))
    elif not isinstance(exc, OpError):
        exc = OpError(f"{type(exc).__name__}: {exc}")
    return OpReply(op_id, False, error=WireError.of(exc))


def _io(msg: IoRequest) -> dict:
    if msg.action == "list":
        files = io.list_files(msg.run_dir, limit=MAX_LISTED_FILES + 1)
        return {"files": files[:MAX_LISTED_FILES], "truncated": len(files) > MAX_LISTED_FILES}
    if msg.action == "read":
        return io.read_file(msg.run_dir, msg.path, msg.offset, msg.length)
    raise InvalidRequest(f"unknown io action {msg.action!r}: use 'list' or 'read'", field="action")


async def io_reply(msg: IoRequest, timeout: float) -> OpReply:
    try:
        data = await asyncio.wait_for(asyncio.to_thread(_io, msg), timeout)
    except TimeoutError:
        logger.warning("job %s: io op %s (%s) timed out after %.1fs", msg.job_id, msg.op_id, msg.action, timeout)
        return error_reply(msg.op_id, OpTimeout(f"reading the run dir took longer than {timeout:g}s"))
    except (OpError, PathEscape) as exc:
        return error_reply(msg.op_id, exc)
    except OSError as exc:
        logger.warning("job %s: io op %s failed: %s", msg.job_id, msg.op_id, exc)
        return error_reply(msg.op_id, OpError(f"cannot read the run dir: {exc.strerror or exc}"))
    return OpReply(msg.op_id, True, data=data)


async def _read_bounded(stream: asyncio.StreamReader, limit: int) -> tuple[bytes, int]:
    """Everything from `stream` (so the writer never blocks), keeping at most `limit` bytes."""
    kept: list[bytes] = []
    total = 0
    while chunk := await stream.read(65536):
        if total < limit:
            kept.append(chunk[: limit - total])
        total += len(chunk)
    return b"".join(kept), total


async def analysis_reply(
    msg: AnalysisRequest, *, env: Mapping[str, str] | None = None, max_bytes: int = analysis_result_limit(), python: str = sys.executable
) -> OpReply:
    try:
        stdin = json.dumps(msg.args).encode()
    except (TypeError, ValueError) as exc:
        return error_reply(msg.op_id, InvalidRequest(f"analysis args are not JSON: {exc}", field="args"))
    try:
        proc = await asyncio.create_subprocess_exec(
            python, "-m", "job_cmd.analysis", msg.code, msg.run_dir,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=None if env is None else dict(env), start_new_session=True,
        )
    except OSError as exc:
        return error_reply(msg.op_id, OpError(f"cannot start the analysis: {exc.strerror or exc}"))

    async def converse() -> tuple[bytes, int, bytes]:
        assert proc.stdin and proc.stdout and proc.stderr
        proc.stdin.write(stdin)
        try:
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass
        proc.stdin.close()
        (out, out_total), (err, _) = await asyncio.gather(
            _read_bounded(proc.stdout, max_bytes), _read_bounded(proc.stderr, 64 * 1024)
        )
        await proc.wait()
        return out, out_total, err

    try:
        out, out_total, err = await asyncio.wait_for(converse(), msg.timeout)
    except TimeoutError:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the whole analysis goes
        except (ProcessLookupError, PermissionError):
            pass
        await proc.wait()
        logger.warning("job %s: analysis op %s timed out after %.1fs", msg.job_id, msg.op_id, msg.timeout)
        return error_reply(msg.op_id, OpTimeout(f"the analysis took longer than {msg.timeout:g}s"))
    if out_total > max_bytes:
        return error_reply(msg.op_id, TooLarge(f"the analysis result is {out_total} bytes, over the limit of {max_bytes}"))
    data: object = _NO_JSON
    try:
        data = json.loads(out) if out.strip() else _NO_JSON
    except ValueError:
        pass
    if proc.returncode == 0 and data is not _NO_JSON:
        return OpReply(msg.op_id, True, data=data)
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return OpReply(msg.op_id, False, error=WireError.of(OpError.from_wire(data["error"])))
    tail = err.decode(errors="replace").strip().splitlines()[-5:]
    logger.warning("job %s: analysis op %s failed (exit %s): %s", msg.job_id, msg.op_id, proc.returncode, " | ".join(tail))
    return error_reply(msg.op_id, OpError(f"the analysis failed (exit code {proc.returncode}): {' '.join(tail) or 'no output'}"))
