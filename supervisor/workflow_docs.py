"""A workflow document read and checked against this server: the part of a document's checks
that needs the configuration (the drivers, their resources and clusters, what files can travel
between them), beside the checks of its form (jobvisor.workflow_doc), which need nothing.

Publish and execute read and check a document through here, each time (the configuration
may have changed since the version was published); a restart only reads the running version
again, whose checks passed when its run started.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from jobvisor.config import WorkflowsConfig
from jobvisor.errors import InvalidRequest
from jobvisor.ids import UserId
from jobvisor.protocol.job_requests import JobSpec
from jobvisor.resources import Resources
from jobvisor.workflow_doc import WorkflowDoc, parse_workflow
from supervisor.compute_job import ComputeJob
from supervisor.workflow_inputs import shares_files

INLINE_PARSE_JOBS = 1000  # a larger document is parsed in a thread

# (spec, where) -> (target, resources), checked against the drivers (supervisor.core.place)
Place = Callable[[JobSpec, str], tuple[str, Resources]]
# (user, spec, now, where, member=, state=, reason=, placed=) -> a new ComputeJob (supervisor.core.make_job)
MakeJob = Callable[..., ComputeJob]


def _resources_key(resources: dict) -> Any:
    """`resources` as a dict key: the jobs of a document mostly share a few of them."""
    try:
        key = tuple(sorted(resources.items()))
        hash(key)
        return key
    except TypeError:
        return json.dumps(resources, sort_keys=True, default=str)


class WorkflowDocs:
    def __init__(self, cfg: WorkflowsConfig, place: Place, make_job: MakeJob) -> None:
        self.cfg = cfg
        self._place = place
        self._make_job = make_job

    async def parse(self, document: Any, max_jobs: int | None = None) -> WorkflowDoc:
        """The document checked and parsed; a large one in a thread (pure work on plain data), so
        the loop goes on serving agents and requests meanwhile."""
        jobs = document.get("jobs") if isinstance(document, dict) else None
        limit = self.cfg.max_jobs if max_jobs is None else max_jobs
        if isinstance(jobs, list) and len(jobs) > INLINE_PARSE_JOBS:
            return await asyncio.to_thread(parse_workflow, document, max_jobs=limit)
        return parse_workflow(document, max_jobs=limit)

    def check(self, doc: WorkflowDoc) -> list[tuple[str, Resources]]:
        """What needs the server's configuration: every job runnable by a configured driver
        (resources, cluster), and every input able to reach its job. InvalidRequest naming
        `jobs[i]...` otherwise. Returns each job's (target, resources); jobs that ask for the
        same are checked once (a document of 10,000 jobs has a handful of kinds)."""
        seen: dict[tuple, tuple[str, Resources]] = {}
        placed = []
        for i, job in enumerate(doc.jobs):
            spec = job.spec
            key = (spec.code, spec.driver, spec.max_retries, _resources_key(spec.resources))
            where = seen.get(key)
            if where is None:
                where = seen[key] = self._place(spec, f"jobs[{i}].")
            placed.append(where)
            if spec.env or spec.workdir:  # checked where the job is made: made once here, for its errors
                self._make_job(UserId(""), spec, 0.0, f"jobs[{i}].", placed=where)
        index = doc.index() if any(job.inputs for job in doc.jobs) else {}
        for i, job in enumerate(doc.jobs):
            for k, item in enumerate(job.inputs):
                producer = placed[index[item.job]][0]
                consumer = placed[i][0]
                if not shares_files(producer, consumer) and self.cfg.max_transfer <= 0:
                    raise InvalidRequest(
                        f"{item.path!r} of {item.job} ({producer}) cannot reach {job.name} ({consumer}): "
                        "the two drivers share no file system and [workflows] max_transfer is 0",
                        field=f"jobs[{i}].inputs[{k}]")
        return placed
