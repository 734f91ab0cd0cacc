"""Files between a workflow's jobs: the `inputs` of a released job, as its run carries them
(`RunJob.inputs`, placed in the run dir by the agent before the job starts).

Where the producer's run dir is visible to the dependent's agent (`shares_files`: the same
target, so one host for local, the user's one container and run root for docker, one
cluster's shared file system for sbatch:X), the input is the producer's file by path
(`source`), linked or copied there by the agent. Elsewhere the supervisor reads the file
through the producer's agent (io ops, as GET /jobs/{id}/files does), up to `[workflows]
max_transfer`, into the state dir's input store, where it becomes one of the dependent's inputs
like an uploaded file (kept across a restart until the job ends, and sent as the agent can take
it); a larger file, or one that cannot be read, fails the dependent with a reason naming the file.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Any

from jobvisor.errors import OpError
from jobvisor.ids import JobId, UserId
from jobvisor.limits import IO_CHUNK_BYTES
from jobvisor.protocol.agent_wire import InputFile, IoAction, IoRequest
from jobvisor.workflow_doc import InputRef
from supervisor.compute_job import ComputeJob
from supervisor.inputs import InputStore
from supervisor.workflow_graph import RunGraph


class InputError(Exception):
    """An input that cannot reach its job (the job fails with this message)."""


def shares_files(producer: str, consumer: str) -> bool:
    """Whether a job on target `consumer` sees the run files of a job on target `producer`."""
    return producer == consumer


class WorkflowInputs:
    def __init__(self, run_dir: Callable[[str, UserId, JobId], str], io: Callable[..., Any], max_transfer: int,
                 io_timeout: float, store: InputStore, kept: Callable[[JobId], None]) -> None:
        self._run_dir = run_dir  # (target, owner, job id) -> the run dir as that target's agents see it
        self._io = io  # AgentOps.call
        self._store = store
        self._kept = kept  # the job's inputs are in the store now: deleted when it ends
        self.max_transfer = max_transfer
        self.io_timeout = io_timeout

    def plan(self, graph: RunGraph, i: int, owner: UserId) -> tuple[list[InputFile], list[tuple[InputRef, int]]]:
        """Job i's inputs: those placed from a path its agent sees, and those (with the
        producer's index) whose bytes must be fetched first."""
        by_path: list[InputFile] = []
        to_fetch: list[tuple[InputRef, int]] = []
        consumer = graph.targets[i]
        for ref in graph.inputs.get(i, ()):
            p = graph.index[ref.job]
            producer_id = graph.job_ids[p]
            if producer_id is None:
                raise InputError(f"input {ref.path!r} of {ref.job}: {ref.job} never ran")
            if shares_files(graph.targets[p], consumer):
                source = posixpath.join(self._run_dir(graph.targets[p], owner, producer_id), ref.path)
                by_path.append(InputFile(path=ref.dest, source=source))
            else:
                to_fetch.append((ref, p))
        return by_path, to_fetch

    async def fetch(self, graph: RunGraph, owner: UserId, ref: InputRef, p: int, consumer: JobId) -> list:
        """`ref` read through its producer's agent into `consumer`'s inputs in the store; its
        [path, size] as the job's input listing has it."""
        producer = ComputeJob(id=graph.job_ids[p], owner=owner, code="", spec=b"", driver=graph.targets[p], cpus=1,  # type: ignore[arg-type]
                              created_at=0.0)
        self._kept(consumer)
        offset = 0
        while True:
            try:
                reply = await self._io(
                    producer,
                    lambda op_id, run_dir: IoRequest(op_id, producer.id, run_dir, IoAction.READ, ref.path, offset, IO_CHUNK_BYTES),
                    self.io_timeout, f"read {ref.path!r} of {ref.job} for a workflow input")
            except OpError as exc:
                raise InputError(f"input {ref.path!r} of {ref.job} cannot be read: {exc.detail}") from None
            size = int(reply.get("size", 0))
            if size > self.max_transfer:
                raise InputError(f"input {ref.path!r} of {ref.job} is {size} bytes; between drivers that share no "
                                 f"file system at most {self.max_transfer} ([workflows] max_transfer)")
            data = reply.get("data") or b""
            try:
                await self._store.keep(consumer, ref.dest, offset, data)
            except OSError as exc:  # a full disk: the dependent fails naming it, nothing half-sent
                raise InputError(f"input {ref.path!r} of {ref.job} cannot be kept for the job: {exc}") from None
            offset += len(data)
            if not data or offset >= size:
                return [ref.dest, offset]
