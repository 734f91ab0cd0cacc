"""The workflow document: a graph of jobs, checked whole before anything runs.

A workflow is a JSON (or YAML) object: a `name`, an `on_failure` policy and a list of `jobs`.
Each job is what `POST /jobs` takes (checked by the same `jobvisor.job_spec`), plus:

- `name`: unique in the workflow, and the handle other jobs use (no dots: `$ref` paths are
  dotted);
- `after`: names of jobs that must complete first;
- `outputs`: files the job promises in its run dir;
- `inputs`: files of other jobs (`{"job", "path", "dest"}`), placed in this job's run dir before
  it starts;
- `{"$ref": "JOB.result.KEY..."}` anywhere in `params`: replaced by that job's result value
  when this one is released.

An input or a `$ref` implies the dependency, so `after` lists only what they do not. Every
failure is an `InvalidRequest` whose `field` names the culprit (`jobs[2].inputs[0].path`), the
way a single job's errors are named, so a 10,000-job document is fixed from its first answer.

What needs the server's configuration (which drivers exist, what they can run, how files move
between them) is checked by the supervisor, on top of this.
"""

from __future__ import annotations

import dataclasses
import enum
import heapq
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jobvisor.errors import InvalidRequest
from jobvisor.job_spec import JOB_FIELDS, parse_job_spec
from jobvisor.protocol.job_requests import JobSpec
from jobvisor.wire_values import check_wire_value, join_path, loads_json

WORKFLOW_FIELDS = frozenset({"name", "on_failure", "jobs", "description"})
WORKFLOW_JOB_FIELDS = JOB_FIELDS | {"after", "outputs", "inputs"}
INPUT_FIELDS = frozenset({"job", "path", "dest"})
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
REF_KEY = "$ref"
MAX_NAME = 128  # a job's name; the jobs table keeps 256
MAX_PATH = 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_REF_PLACEHOLDER = "$ref"  # stands in for a $ref while params are checked before release
_UNCHECKED = "\x00no-such-code"  # a code no check knows: parse_job_spec checks the other fields only


class OnFailure(enum.StrEnum):
    """What a failed job (failed, timed out, lost after its retries, canceled) does to the jobs
    that depend on it."""

    CANCEL_DEPENDENTS = "cancel_dependents"  # they are canceled; independent branches go on
    CONTINUE = "continue"  # they run anyway


class RefError(ValueError):
    """A `$ref` whose value the dependency's result does not have (the dependent then fails
    with this message as its reason)."""


@dataclass(frozen=True, slots=True)
class InputRef:
    """A file of another job, placed in this job's run dir before it starts."""

    job: str  # the producing job's name
    path: str  # its path in the producer's run dir (one of the producer's outputs)
    dest: str  # its path in this job's run dir


@dataclass(frozen=True, slots=True)
class WorkflowJob:
    name: str
    spec: JobSpec  # exactly what POST /jobs makes
    after: tuple[str, ...]  # every dependency: explicit `after`, then those implied by inputs and $refs
    outputs: tuple[str, ...]
    inputs: tuple[InputRef, ...]
    has_refs: bool  # params hold {"$ref": ...}: resolve them when released


@dataclass(frozen=True, slots=True)
class WorkflowDoc:
    name: str
    on_failure: OnFailure
    jobs: tuple[WorkflowJob, ...]  # in the document's order
    order: tuple[int, ...]  # a topological order: every job after its dependencies (indexes into jobs)
    description: str = ""

    def to_json(self) -> dict:
        """The normalized document: what is stored as a version, and parses back to the same
        WorkflowDoc (every dependency is listed in `after`)."""
        return {
            "name": self.name, "on_failure": str(self.on_failure),
            **({"description": self.description} if self.description else {}),
            "jobs": [_job_json(job) for job in self.jobs],
        }

    def index(self) -> dict[str, int]:
        return {job.name: i for i, job in enumerate(self.jobs)}


# --------------------------------------------------------------------------- loading


def load_document(body: bytes, content_type: str) -> Any:
    """The request body as a JSON value: YAML for a YAML content type, JSON otherwise. A YAML
    value JSON cannot hold (a date, a binary) is refused, so what is stored reads back the same."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if not body.strip():
        raise InvalidRequest("request body is empty; a workflow document is required", field="body")
    if kind in YAML_TYPES:
        return _load_yaml(body)
    return loads_json(body, "the document", " (send YAML with Content-Type: application/yaml)")


def _load_yaml(body: bytes) -> Any:
    import yaml  # only YAML documents pay for the import

    try:
        data = yaml.load(body, Loader=_JsonYamlLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise InvalidRequest(f"the document is not valid YAML: {exc.problem}{where}", field="body") from None
    except (yaml.YAMLError, RecursionError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the document is not valid YAML: {exc}", field="body") from None
    return data


def _yaml_loader() -> type:
    """SafeLoader without the implicit timestamps: `2024-01-01` stays the string it reads as
    in JSON, instead of a date that cannot be stored."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def refuse(loader: Any, node: Any) -> Any:
        raise yaml.constructor.ConstructorError(
            None, None, f"{node.tag} is not a JSON value", node.start_mark)

    Loader.add_constructor("tag:yaml.org,2002:binary", refuse)
    Loader.add_constructor("tag:yaml.org,2002:timestamp", refuse)
    Loader.add_constructor("tag:yaml.org,2002:set", refuse)
    return Loader


class _LazyLoader:
    """The YAML loader class, made on first use."""

    _cls: type | None = None

    def __call__(self, stream: Any) -> Any:
        if _LazyLoader._cls is None:
            _LazyLoader._cls = _yaml_loader()
        return _LazyLoader._cls(stream)


_JsonYamlLoader = _LazyLoader()


# --------------------------------------------------------------------------- parsing


def parse_workflow(data: Any, *, max_jobs: int) -> WorkflowDoc:
    """A workflow document -> WorkflowDoc, or InvalidRequest naming the first culprit."""
    if not isinstance(data, dict):
        raise InvalidRequest("a workflow document must be a JSON object", field="body")
    _reject_unknown(data, WORKFLOW_FIELDS, "a workflow", "")
    name = _name(data.get("name"), "name", "the workflow's name")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise InvalidRequest("description must be a string", field="description")
    on_failure = _on_failure(data.get("on_failure", OnFailure.CANCEL_DEPENDENTS.value))
    raw_jobs = data.get("jobs")
    if not isinstance(raw_jobs, list) or not raw_jobs:
        raise InvalidRequest("jobs is required: a non-empty list of job objects", field="jobs")
    if len(raw_jobs) > max_jobs:
        raise InvalidRequest(f"{len(raw_jobs)} jobs in one workflow; at most {max_jobs}", field="jobs")

    names = _names(raw_jobs)
    outputs = [_paths(raw.get("outputs", []), f"jobs[{i}].outputs") for i, raw in enumerate(raw_jobs)]
    jobs = tuple(_job(i, raw, names, outputs) for i, raw in enumerate(raw_jobs))
    order = _topological_order(jobs, names)
    return WorkflowDoc(name=name, on_failure=on_failure, jobs=jobs, order=order, description=description)


def _reject_unknown(data: dict, known: frozenset[str], what: str, prefix: str) -> None:
    if data.keys() <= known:
        return
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise InvalidRequest(
            f"unknown field {unknown[0]!r}; {what} has {', '.join(sorted(known))}",
            field=join_path(prefix, unknown[0]),
        )


def _name(value: Any, field: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{what} is required and must be a non-empty string", field=field)
    if len(value) > MAX_NAME or not _NAME.match(value):
        raise InvalidRequest(
            f"{what} {value[:MAX_NAME]!r} must be 1 to {MAX_NAME} letters, digits, '-' or '_', "
            f"starting with a letter or digit", field=field,
        )
    return value


def _on_failure(value: Any) -> OnFailure:
    try:
        return OnFailure(value)
    except ValueError:
        choices = " or ".join(repr(p.value) for p in OnFailure)
        raise InvalidRequest(f"on_failure must be {choices}, not {value!r}", field="on_failure") from None


def _names(raw_jobs: list) -> dict[str, int]:
    """Each job's name -> its index; the first problem (a job not an object, a bad or
    duplicate name) raised with its field."""
    names: dict[str, int] = {}
    for i, raw in enumerate(raw_jobs):
        if not isinstance(raw, dict):
            raise InvalidRequest("a job must be a JSON object", field=f"jobs[{i}]")
        name = _name(raw.get("name"), f"jobs[{i}].name", "a workflow job's name")
        if name in names:
            raise InvalidRequest(
                f"duplicate job name {name!r} (also jobs[{names[name]}]); names must be unique in a workflow",
                field=f"jobs[{i}].name",
            )
        names[name] = i
    return names


def _safe_path(value: Any, field: str) -> str:
    """A relative path that stays inside a run dir: no absolute path, no '..', no empty part."""
    if not isinstance(value, str) or not value:
        raise InvalidRequest("a file path must be a non-empty string", field=field)
    parts = value.split("/")
    if (len(value) > MAX_PATH or value.startswith("/") or "\\" in value or "\x00" in value
            or any(part in ("", ".", "..") for part in parts)):
        raise InvalidRequest(
            f"{value[:80]!r} is not a path inside the run dir (relative, '/'-separated, "
            f"no '..', '.' or empty parts, at most {MAX_PATH} characters)", field=field,
        )
    return value


def _paths(value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise InvalidRequest("must be a list of file paths", field=field)
    seen: set[str] = set()
    for k, item in enumerate(value):
        path = _safe_path(item, f"{field}[{k}]")
        if path in seen:
            raise InvalidRequest(f"{path!r} is listed twice", field=f"{field}[{k}]")
        seen.add(path)
    return tuple(value)


def _job(i: int, raw: dict, names: dict[str, int], outputs: list[tuple[str, ...]]) -> WorkflowJob:
    prefix = f"jobs[{i}]"
    _reject_unknown(raw, WORKFLOW_JOB_FIELDS, "a workflow job", prefix)
    name = raw["name"]
    after = _after(raw.get("after", []), f"{prefix}.after", name, names)
    inputs = _inputs(raw.get("inputs", []), f"{prefix}.inputs", name, names, outputs)
    params = raw.get("params")
    refs = list(_refs(params, f"{prefix}.params"))
    for field, ref in refs:
        after.setdefault(_ref_job(ref, field, name, names))
    for item in inputs:
        after.setdefault(item.job)
    spec = _spec(raw, prefix, refs)
    return WorkflowJob(name=name, spec=spec, after=tuple(after), outputs=outputs[i], inputs=inputs, has_refs=bool(refs))


def _after(value: Any, field: str, name: str, names: dict[str, int]) -> dict[str, None]:
    """The explicit dependencies, as an ordered set (a fan-in job may list thousands)."""
    if not isinstance(value, list):
        raise InvalidRequest("after must be a list of job names", field=field)
    after: dict[str, None] = {}
    for k, dep in enumerate(value):
        after.setdefault(_known(dep, f"{field}[{k}]", name, names))
    return after


def _known(dep: Any, field: str, name: str, names: dict[str, int]) -> str:
    if not isinstance(dep, str):
        raise InvalidRequest("a job name must be a string", field=field)
    if dep not in names:
        raise InvalidRequest(f"no job named {dep!r} in this workflow", field=field)
    if dep == name:
        raise InvalidRequest(f"job {name!r} depends on itself: {name} -> {name}", field=field)
    return dep


def _inputs(value: Any, field: str, name: str, names: dict[str, int],
            outputs: list[tuple[str, ...]]) -> tuple[InputRef, ...]:
    if not isinstance(value, list):
        raise InvalidRequest("inputs must be a list of {\"job\", \"path\"} objects", field=field)
    inputs: list[InputRef] = []
    dests: set[str] = set()
    for k, item in enumerate(value):
        here = f"{field}[{k}]"
        if not isinstance(item, dict):
            raise InvalidRequest("an input must be an object {\"job\", \"path\", \"dest\"}", field=here)
        _reject_unknown(item, INPUT_FIELDS, "an input", here)
        job = _known(item.get("job"), f"{here}.job", name, names)
        path = _safe_path(item.get("path"), f"{here}.path")
        if path not in outputs[names[job]]:
            listed = ", ".join(repr(p) for p in outputs[names[job]]) or "none"
            raise InvalidRequest(
                f"job {job!r} does not list {path!r} among its outputs (it lists {listed})", field=f"{here}.path",
            )
        dest = _safe_path(item.get("dest", path), f"{here}.dest")
        if dest in dests:
            raise InvalidRequest(f"two inputs are placed at {dest!r}", field=f"{here}.dest")
        dests.add(dest)
        inputs.append(InputRef(job, path, dest))
    return tuple(inputs)


def _is_ref(value: Any) -> bool:
    return type(value) is dict and len(value) == 1 and REF_KEY in value


def _refs(value: Any, field: str) -> Iterator[tuple[str, Any]]:
    """(field, ref) of every {"$ref": ...} in `value`, depth first, in document order."""
    if type(value) is dict:
        if _is_ref(value):
            yield field, value[REF_KEY]
            return
        for key, item in value.items():
            if type(item) in (dict, list):
                yield from _refs(item, join_path(field, str(key)))
    elif type(value) is list:
        for k, item in enumerate(value):
            if type(item) in (dict, list):
                yield from _refs(item, join_path(field, k))


def _ref_parts(ref: Any) -> list[str] | None:
    """["prep", "size", ...] for "prep.result.size...", or None if `ref` is not such a path."""
    if not isinstance(ref, str):
        return None
    parts = ref.split(".")
    if len(parts) < 2 or parts[1] != "result" or not all(parts):
        return None
    return [parts[0], *parts[2:]]


def _ref_job(ref: Any, field: str, name: str, names: dict[str, int]) -> str:
    parts = _ref_parts(ref)
    if parts is None:
        raise InvalidRequest(
            f"a $ref must be a string \"JOB.result\" or \"JOB.result.KEY...\", not {ref!r}", field=field,
        )
    return _known(parts[0], field, name, names)


def _spec(raw: dict, prefix: str, refs: list[tuple[str, Any]]) -> JobSpec:
    """The job's POST /jobs fields checked as POST /jobs checks them. A job with $refs has its
    params checked with each ref standing in as a string: a complaint at a ref's own place (or
    below it) waits for the value, checked again when the job is released."""
    fields = {k: v for k, v in raw.items() if k in JOB_FIELDS}
    if not refs:
        return parse_job_spec(fields, prefix)
    params = fields.get("params")
    try:
        parse_job_spec({**fields, "params": _placeholders(params)}, prefix)
    except InvalidRequest as exc:
        at_a_ref = exc.field is not None and any(
            exc.field == field or exc.field.startswith((field + ".", field + "[")) for field, _ in refs
        )
        if not at_a_ref:
            raise
    check_wire_value(params, f"{prefix}.params")
    # the other fields as POST /jobs checks them, the params as the document has them
    spec = parse_job_spec({**fields, "params": {}, "code": _UNCHECKED}, prefix)
    return dataclasses.replace(spec, code=fields["code"], params=params)


def _placeholders(value: Any) -> Any:
    if type(value) is dict:
        if _is_ref(value):
            return _REF_PLACEHOLDER
        return {k: _placeholders(v) for k, v in value.items()}
    if type(value) is list:
        return [_placeholders(v) for v in value]
    return value


def _topological_order(jobs: tuple[WorkflowJob, ...], names: dict[str, int]) -> tuple[int, ...]:
    """An order in which every job comes after its dependencies, keeping the document's order
    wherever they allow (Kahn's, with a heap of the ready indexes), so a workflow's jobs are
    created in the order a person reads. A cycle is an InvalidRequest naming its jobs in order."""
    dependents: list[list[int]] = [[] for _ in jobs]
    waiting = [len(job.after) for job in jobs]
    for i, job in enumerate(jobs):
        for dep in job.after:
            dependents[names[dep]].append(i)
    ready = [i for i, n in enumerate(waiting) if n == 0]
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for d in dependents[i]:
            waiting[d] -= 1
            if waiting[d] == 0:
                heapq.heappush(ready, d)
    if len(order) < len(jobs):
        cycle = _a_cycle(jobs, names, waiting)
        raise InvalidRequest(
            "the jobs depend on each other in a cycle (each runs after the one before it): "
            + " -> ".join(jobs[i].name for i in cycle),
            field=f"jobs[{cycle[0]}].after",
        )
    return tuple(order)


def _a_cycle(jobs: tuple[WorkflowJob, ...], names: dict[str, int], waiting: list[int]) -> list[int]:
    """One cycle among the jobs Kahn's order could not place, in run order, closed
    ([a, b, c, a]: b runs after a, c after b, a after c)."""
    stuck = {i for i, n in enumerate(waiting) if n > 0}
    start = min(stuck)
    # walk dependencies backwards from a stuck job until a job repeats: every stuck job has a stuck dependency
    path: list[int] = []
    seen: dict[int, int] = {}
    i = start
    while i not in seen:
        seen[i] = len(path)
        path.append(i)
        i = next(names[dep] for dep in jobs[i].after if names[dep] in stuck)
    loop = path[seen[i]:]  # each is after the next one: reverse it into run order
    loop.reverse()
    return loop + [loop[0]]


# --------------------------------------------------------------------------- refs


def resolve_refs(params: Any, results: Mapping[str, Any]) -> Any:
    """`params` with every {"$ref": "JOB.result.KEY..."} replaced by that value of
    `results[JOB]` (a JSON result); RefError naming the ref when it is not there."""
    if type(params) is dict:
        if _is_ref(params):
            return _ref_value(params[REF_KEY], results)
        return {k: resolve_refs(v, results) for k, v in params.items()}
    if type(params) is list:
        return [resolve_refs(v, results) for v in params]
    return params


def _ref_value(ref: Any, results: Mapping[str, Any]) -> Any:
    parts = _ref_parts(ref)
    if parts is None:
        raise RefError(f"$ref {ref!r} is not \"JOB.result.KEY...\"")
    job, *keys = parts
    if job not in results:
        raise RefError(f"$ref {ref!r}: job {job!r} has no result")
    value = results[job]
    for depth, key in enumerate(keys):
        where = ".".join([job, "result", *keys[:depth]])
        if isinstance(value, dict):
            if key not in value:
                have = ", ".join(repr(k) for k in list(value)[:10]) or "no keys"
                raise RefError(f"$ref {ref!r}: {where} has no key {key!r} (it has {have})")
            value = value[key]
        elif isinstance(value, list) and key.isdigit():
            if int(key) >= len(value):
                raise RefError(f"$ref {ref!r}: {where} has {len(value)} items, no [{key}]")
            value = value[int(key)]
        else:
            raise RefError(f"$ref {ref!r}: {where} is {type(value).__name__ if value is not None else 'null'}, not an object with {key!r}")
    return value


# --------------------------------------------------------------------------- normalized form


def _job_json(job: WorkflowJob) -> dict:
    spec = job.spec
    out: dict[str, Any] = {"name": job.name}
    for f in dataclasses.fields(JobSpec):
        value = getattr(spec, f.name)
        if f.name == "name":
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        if f.name in ("code", "params") or value != default:
            out[f.name] = value
    if job.after:
        out["after"] = list(job.after)
    if job.outputs:
        out["outputs"] = list(job.outputs)
    if job.inputs:
        out["inputs"] = [{"job": i.job, "path": i.path, **({"dest": i.dest} if i.dest != i.path else {})} for i in job.inputs]
    return out
