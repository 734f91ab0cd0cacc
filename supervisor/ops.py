"""Ops: transient requests inside the supervisor that hold resources while they live.

Every op releases everything it holds in one idempotent `destroy()`, and `alive` says whether
it still holds it: a job's slots go back once, whichever of its end, a requeue or the agent
saying it has not started the job comes first.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from jobvisor.errors import OpError, OpTimeout
from jobvisor.protocol.common import WireError
from jobvisor.ids import JobId, OpId, new_op_id


class RunOp:
    """Holds the cpu slots of one job's run from scheduling until its attempt ends."""

    __slots__ = ("job_id", "cpus", "_release", "alive")

    def __init__(self, job_id: JobId, cpus: int, release: Callable[[int], None]) -> None:
        self.job_id = job_id
        self.cpus = cpus
        self._release = release
        self.alive = True

    def destroy(self) -> None:
        if self.alive:
            self.alive = False
            self._release(self.cpus)


class PendingReplies:
    """Request/reply ops to agents (analysis, io, status), each with its own timeout.

    A timeout fails that op only. A reply for an op that is gone (timed out, or its agent
    was replaced) is dropped: `resolve` returns False and nothing else happens."""

    def __init__(self) -> None:
        self._futures: dict[OpId, asyncio.Future] = {}

    def new(self) -> tuple[OpId, asyncio.Future]:
        op_id = new_op_id()
        fut = asyncio.get_running_loop().create_future()
        self._futures[op_id] = fut
        return op_id, fut

    def resolve(self, op_id: OpId, ok: bool, data: Any, error: WireError | None) -> bool:
        fut = self._futures.pop(op_id, None)
        if fut is None or fut.done():
            return False
        if ok:
            fut.set_result(data)
        else:
            fut.set_exception(error.exception() if error is not None else OpError("the agent reported an error"))
        return True

    async def wait(self, op_id: OpId, fut: asyncio.Future, timeout: float, what: str) -> Any:
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise OpTimeout(f"{what} did not answer within {timeout:g} s") from None
        finally:
            self._futures.pop(op_id, None)

    def fail_all(self, ids: set[OpId], error: OpError) -> None:
        for op_id in list(ids):
            fut = self._futures.pop(op_id, None)
            if fut is not None and not fut.done():
                fut.set_exception(error)
