"""A checked job spec turned into the ComputeJobs it stands for: one job, or one per element
of a job array. Kept apart from the core so an array of 100,000 elements costs one packed
spec and one id batch, not 100,000 of each."""

from __future__ import annotations

from drivers.base import split_target
from jobvisor.code_params import check_params
from jobvisor.errors import InvalidRequest
from jobvisor.ids import UserId, new_job_ids
from jobvisor.job_arrays import parse_array
from jobvisor.job_spec import override_params, parse_retry_on
from jobvisor.protocol.job_requests import JobSpec
from jobvisor.resources import Resources
from jobvisor.states import JobState
from jobvisor.wire_values import check_wire_value
from supervisor.compute_job import ArrayMember, ComputeJob, Member, retry_on_of


def new_job(user: UserId, spec: JobSpec, target: str, resources: Resources, now: float, where: str = "", *,
            member: Member = None, state: JobState = JobState.QUEUED, reason: str = "submitted",
            extra: dict | None = None) -> ComputeJob:
    """One job of `spec` (its target, resources and extra fields already resolved; its array ignored)."""
    return expand_specs(user, spec, target, resources, now, where, max_array=0, reason=reason,
                        member=member, state=state, extra=extra)[0]


def expand_specs(user: UserId, spec: JobSpec, target: str, resources: Resources, now: float, where: str,
                 *, max_array: int, reason: str = "submitted", member: Member = None,
                 state: JobState = JobState.QUEUED, extra: dict | None = None) -> list[ComputeJob]:
    """The jobs of one spec (its target, resources and extra fields, `supervisor.job_extra`,
    already resolved): one, or one per element of its array when `max_array` allows arrays.
    `where`: the prefix of field names in errors (`jobs[3].`)."""
    # the gateway checked both; a request that came another way is checked again
    retry_on = retry_on_of(",".join(parse_retry_on(list(spec.retry_on), where + "retry_on")) or None)
    array = parse_array(spec.array, max_count=max_array, field=where + "array") if spec.array and max_array else None
    packed = ComputeJob.pack_spec(spec.params, resources.to_wire(), extra)
    common = dict(
        owner=user, name=spec.name[:256], code=spec.code, spec=packed, driver=target, cpus=resources.cpus,
        max_retries=spec.max_retries, created_at=now, retry_on=retry_on, state=state,
    )
    if array is None:
        return [ComputeJob(id=new_job_ids(1)[0], reason=reason, member=member, **common)]
    ids = new_job_ids(array.count)
    array_id = ids[0]
    reason = f"{reason}: element of array {array_id} ({array})"
    return [
        ComputeJob(id=job_id, reason=reason, member=ArrayMember(array_id, index, array.cap), **common)
        for job_id, index in zip(ids, array.indexes)
    ]


def resubmit_spec(job: ComputeJob, overrides: dict) -> JobSpec:
    """The spec of a new job like `job` (its code, params, resources, driver, retries and
    name, env and workdir), its params overridden; checked again as any submit's. Its inputs
    are not part of the spec: the submit links them from `job` (`Core.submit(inputs_of=)`). An
    array element's index is not carried: it becomes a job of its own."""
    params, resources, extra = job.unpack_all()
    params = override_params(params, overrides)
    try:
        check_params(job.code, params)
    except InvalidRequest as exc:
        raise type(exc)(exc.detail, field=exc.field or "params") from None
    check_wire_value(params, "params")
    return JobSpec(
        code=job.code, params=params, resources=resources, driver=split_target(job.driver)[0],
        max_retries=job.max_retries, name=job.name,
        retry_on=sorted(s.value for s in job.retry_on if s is not JobState.LOST),
        env=extra.get("env") or {}, workdir=extra.get("workdir") or "",
    )
