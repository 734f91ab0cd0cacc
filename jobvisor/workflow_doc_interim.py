"""INTERIM: the smallest stand-in for `jobvisor.workflow_doc` (CONTRACTS.md section 1, being
written by the wf-doc part), with its names and signatures, so the workflow engine can be
built and tested before that module lands. Deleted once it is on main; nothing else may
import this file.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any, Mapping

import yaml

from jobvisor.errors import InvalidRequest
from jobvisor.job_spec import parse_job_spec
from jobvisor.protocol import JobSpec

YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
_WORKFLOW_FIELDS = frozenset({"after", "outputs", "inputs"})


class OnFailure(enum.StrEnum):
    CANCEL_DEPENDENTS = "cancel_dependents"
    CONTINUE = "continue"


class RefError(ValueError):
    """A `$ref` whose value is missing."""


@dataclass(frozen=True, slots=True)
class InputRef:
    job: str
    path: str
    dest: str


@dataclass(frozen=True, slots=True)
class WorkflowJob:
    name: str
    spec: JobSpec
    after: tuple[str, ...]
    outputs: tuple[str, ...]
    inputs: tuple[InputRef, ...]
    has_refs: bool


@dataclass(frozen=True, slots=True)
class WorkflowDoc:
    name: str
    on_failure: OnFailure
    jobs: tuple[WorkflowJob, ...]
    order: tuple[int, ...]

    def to_json(self) -> dict:
        jobs = []
        for job in self.jobs:
            out: dict[str, Any] = {"name": job.name, "code": job.spec.code, "params": job.spec.params}
            if job.spec.resources:
                out["resources"] = job.spec.resources
            if job.spec.driver:
                out["driver"] = job.spec.driver
            if job.spec.max_retries:
                out["max_retries"] = job.spec.max_retries
            if job.after:
                out["after"] = list(job.after)
            if job.outputs:
                out["outputs"] = list(job.outputs)
            if job.inputs:
                out["inputs"] = [{"job": i.job, "path": i.path, "dest": i.dest} for i in job.inputs]
            jobs.append(out)
        return {"name": self.name, "on_failure": self.on_failure.value, "jobs": jobs}


def load_document(body: bytes, content_type: str) -> Any:
    try:
        if content_type.split(";")[0].strip().lower() in YAML_TYPES:
            return yaml.safe_load(body)
        return json.loads(body)
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidRequest(f"the document cannot be read: {exc}", field="body") from None


def _refs(value: Any, path: str) -> list[tuple[str, str]]:
    """Every (ref, field path) in params."""
    if isinstance(value, dict):
        if set(value) == {"$ref"} and isinstance(value["$ref"], str):
            return [(value["$ref"], path)]
        return [r for k, v in value.items() for r in _refs(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [r for i, v in enumerate(value) for r in _refs(v, f"{path}[{i}]")]
    return []


def _strings(data: dict, key: str, where: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidRequest(f"{key} must be a list of names", field=f"{where}.{key}")
    return tuple(value)


def parse_workflow(data: Any, *, max_jobs: int) -> WorkflowDoc:
    if not isinstance(data, dict):
        raise InvalidRequest("a workflow document must be an object", field="body")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("name is required", field="name")
    try:
        on_failure = OnFailure(data.get("on_failure", OnFailure.CANCEL_DEPENDENTS))
    except ValueError:
        raise InvalidRequest("on_failure must be cancel_dependents or continue", field="on_failure") from None
    raw_jobs = data.get("jobs")
    if not isinstance(raw_jobs, list) or not raw_jobs:
        raise InvalidRequest("jobs must be a non-empty list", field="jobs")
    if len(raw_jobs) > max_jobs:
        raise InvalidRequest(f"{len(raw_jobs)} jobs; at most {max_jobs}", field="jobs")
    index: dict[str, int] = {}
    for i, raw in enumerate(raw_jobs):
        job_name = raw.get("name") if isinstance(raw, dict) else None
        if not isinstance(job_name, str) or not job_name:
            raise InvalidRequest("every job needs a name", field=f"jobs[{i}].name")
        if job_name in index:
            raise InvalidRequest(f"duplicate job name {job_name!r}", field=f"jobs[{i}].name")
        index[job_name] = i
    jobs = []
    for i, raw in enumerate(raw_jobs):
        where = f"jobs[{i}]"
        after = _strings(raw, "after", where)
        for k, dep in enumerate(after):
            if dep not in index:
                raise InvalidRequest(f"unknown job {dep!r}", field=f"{where}.after[{k}]")
        outputs = _strings(raw, "outputs", where)
        inputs = []
        for k, item in enumerate(raw.get("inputs", []) or []):
            if not isinstance(item, dict) or item.get("job") not in index:
                raise InvalidRequest("an input names a job of the workflow", field=f"{where}.inputs[{k}].job")
            path = item.get("path")
            producer = raw_jobs[index[item["job"]]]
            if not isinstance(path, str) or path not in (producer.get("outputs") or []):
                raise InvalidRequest(f"{item['job']} does not list {path!r} among its outputs",
                                     field=f"{where}.inputs[{k}].path")
            inputs.append(InputRef(item["job"], path, item.get("dest") or path))
        spec = parse_job_spec({k: v for k, v in raw.items() if k not in _WORKFLOW_FIELDS}, where)
        refs = _refs(spec.params, f"{where}.params")
        implied = []
        for ref, field in refs:
            producer_name = ref.split(".", 1)[0]
            if producer_name not in index or ".result" not in ref:
                raise InvalidRequest(f"unknown job in $ref {ref!r}", field=field)
            implied.append(producer_name)
        deps = tuple(dict.fromkeys([*after, *(x.job for x in inputs), *implied]))
        jobs.append(WorkflowJob(raw["name"], spec, deps, outputs, tuple(inputs), bool(refs)))
    return WorkflowDoc(name, on_failure, tuple(jobs), _order(jobs, index))


def _order(jobs: list[WorkflowJob], index: dict[str, int]) -> tuple[int, ...]:
    pending = [len(job.after) for job in jobs]
    dependents: list[list[int]] = [[] for _ in jobs]
    for i, job in enumerate(jobs):
        for dep in job.after:
            dependents[index[dep]].append(i)
    ready = [i for i, n in enumerate(pending) if n == 0]
    order = []
    while ready:
        i = ready.pop()
        order.append(i)
        for d in dependents[i]:
            pending[d] -= 1
            if pending[d] == 0:
                ready.append(d)
    if len(order) < len(jobs):
        left = {i for i, n in enumerate(pending) if n}
        start = min(left)
        path, seen, i = [], {}, start
        while i not in seen:
            seen[i] = len(path)
            path.append(i)
            i = next(index[d] for d in jobs[i].after if index[d] in left)
        cycle = path[seen[i]:] + [i]
        raise InvalidRequest("a cycle: " + " -> ".join(jobs[k].name for k in reversed(cycle)), field="jobs")
    return tuple(order)


def resolve_refs(params: Any, results: Mapping[str, Any]) -> Any:
    if isinstance(params, dict):
        if set(params) == {"$ref"} and isinstance(params["$ref"], str):
            ref = params["$ref"]
            job, _, rest = ref.partition(".result")
            value: Any = results.get(job)
            for key in [k for k in rest.split(".") if k]:
                if not isinstance(value, dict) or key not in value:
                    raise RefError(f"$ref {ref!r}: no such value in the result of {job}")
                value = value[key]
            if rest == "" and value is None:
                raise RefError(f"$ref {ref!r}: {job} has no result")
            return value
        return {k: resolve_refs(v, results) for k, v in params.items()}
    if isinstance(params, list):
        return [resolve_refs(v, results) for v in params]
    return params
