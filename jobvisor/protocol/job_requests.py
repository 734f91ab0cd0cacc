"""Gateway -> supervisor requests about jobs: submit, upload inputs, list, get, cancel,
resubmit, and read a job's log and files or run its analysis. Each is answered by a `Reply`;
another user's job is NotFound, like a missing one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from jobvisor.codec import Message
from jobvisor.ids import JobId
from jobvisor.limits import IO_CHUNK_BYTES
from jobvisor.protocol.common import Caller


@dataclass(frozen=True, slots=True)
class JobSpec(Message):
    TYPE: ClassVar[str] = "job_spec"
    code: str
    params: Any
    resources: dict = field(default_factory=dict)
    driver: str = ""
    max_retries: int = 0
    name: str = ""
    env: dict = field(default_factory=dict)  # str -> str, set in the job's environment (wins over the code's)
    workdir: str = ""  # run in place there (local driver, a directory `[local] workdirs` allows)
    # end states that start a new attempt while max_retries allows, besides `lost` (always)
    retry_on: list[str] = field(default_factory=list)
    # a job array (`jobvisor.job_arrays` syntax, e.g. "1-100%10"): one job per index
    array: str = ""


@dataclass(frozen=True, slots=True)
class SubmitJobs(Message):
    TYPE: ClassVar[str] = "submit_jobs"
    caller: Caller
    jobs: list[JobSpec]
    upload_id: str = ""  # the files of this upload (UploadInput) become inputs of every job here


@dataclass(frozen=True, slots=True)
class UploadInput(Message):
    """A slice of one file of a multipart submit. The gateway streams each file to the
    supervisor in these (each well under the message limit), which appends them to the
    upload's directory in its state dir; the `SubmitJobs` naming `upload_id` then makes them
    its jobs' inputs. `path` is the file's place in the run dir, checked on both sides.
    The reply: {"size": bytes of that file so far}."""

    TYPE: ClassVar[str] = "upload_input"
    caller: Caller
    upload_id: str
    path: str
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ListJobs(Message):
    TYPE: ClassVar[str] = "list_jobs"
    caller: Caller
    states: list = field(default_factory=list)
    limit: int = 100
    after: str = ""  # paging cursor: the last job id of the previous page
    name: str = ""  # only jobs of this name (exact)
    id_prefix: str = ""  # only jobs whose id starts with this (a short id a person typed)
    array_id: str = ""  # only the elements of this job array


@dataclass(frozen=True, slots=True)
class GetJob(Message):
    TYPE: ClassVar[str] = "get_job"
    caller: Caller
    job_id: JobId


@dataclass(frozen=True, slots=True)
class CancelJobRequest(Message):
    TYPE: ClassVar[str] = "cancel_job"
    caller: Caller
    job_id: JobId


@dataclass(frozen=True, slots=True)
class ResubmitJob(Message):
    """A new job from an old one's spec, with `params` overrides (dotted keys, see
    `jobvisor.job_spec.override_params`). Another user's job is NotFound, as everywhere."""

    TYPE: ClassVar[str] = "resubmit_job"
    caller: Caller
    job_id: JobId
    params: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReadLog(Message):
    TYPE: ClassVar[str] = "read_log"
    caller: Caller
    job_id: JobId
    offset: int = 0
    length: int = IO_CHUNK_BYTES
    wait: float = 0.0  # long-poll: seconds to wait for bytes past `offset` or the job's end


@dataclass(frozen=True, slots=True)
class ListFiles(Message):
    TYPE: ClassVar[str] = "list_files"
    caller: Caller
    job_id: JobId


@dataclass(frozen=True, slots=True)
class ReadFile(Message):
    TYPE: ClassVar[str] = "read_file"
    caller: Caller
    job_id: JobId
    path: str
    offset: int = 0
    length: int = IO_CHUNK_BYTES


@dataclass(frozen=True, slots=True)
class RunAnalysis(Message):
    TYPE: ClassVar[str] = "run_analysis"
    caller: Caller
    job_id: JobId
    args: dict = field(default_factory=dict)
