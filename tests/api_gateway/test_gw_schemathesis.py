"""The API against its own OpenAPI document (schemathesis): for every operation, generated
requests get no 5xx, and every answer has a documented status, content type and body shape.

Real `jobvisor up` (gateway, supervisor, agents) on loopback with a valid token, with the
gateway linked to its supervisor in process and over HTTP. Each operation
is driven with generated path parameters (mostly unknown jobs: 404s) and with `id` set to a
real finished job that has a log and a file (so the 200 answers are checked too), each with
valid requests and with requests the document forbids (which must be refused with a 4xx). The
number of examples is kept small so the whole run takes well under a minute.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Iterator

import pytest
import requests
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from api_gateway.openapi import build_openapi
from tests.harness import Api, JobvisorProcess

pytestmark = pytest.mark.integration

# examples per operation and run; JOBVISOR_SCHEMATHESIS_EXAMPLES=200 for a deeper search
EXAMPLES = int(os.environ.get("JOBVISOR_SCHEMATHESIS_EXAMPLES", "20"))
# endless server-sent event streams: a request there never completes (the log's stream, which
# ends with its job, is checked with follow on the finished job); the events' route is driven
# with format=json, its page of the history, which does complete
STREAMS: set[tuple[str, str]] = set()
PAGES = {("GET", "/api/v1/events"): {"format": "json"}}
# routes that stop the server under test (its token is an admin's): tested on their own
STOPS = {("POST", "/api/v1/admin/shutdown")}
# "valid by the schema, so it must be accepted": the document cannot state every rule (a
# code's params, a resource's units), so a 400 for such a body is right, not a failure
EXCLUDED = [positive_data_acceptance]
SCHEMA_CHECKS = settings(
    max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module", params=["true", "false"], ids=["in_process", "over_http"])
def server(request, tmp_path_factory) -> Iterator[JobvisorProcess]:
    """`up` with either link from its gateway to its supervisor: what crosses msgpack differs."""
    proc = JobvisorProcess(tmp_path_factory.mktemp("schemathesis") / "state", env={
        "JOBVISOR_SERVER_IN_PROCESS": request.param,
        "JOBVISOR_SUPERVISOR_ANALYSIS_TIMEOUT": "5",
        "JOBVISOR_SUPERVISOR_IO_TIMEOUT": "5",
    })
    proc.start()
    try:
        yield proc
    finally:
        proc.cleanup()


async def _finished_job(server: JobvisorProcess) -> str:
    api = Api(server.url, server.token)
    try:
        job = await api.submit({"code": "shell", "params": {"script": "echo out; echo data > result.txt"}})
        await api.wait_state(job["id"], "completed")
        return job["id"]
    finally:
        await api.close()


def _operations() -> list[Any]:
    schema = schemathesis.openapi.from_dict(build_openapi())
    # the token goes in every request (headers=): no case without it, or with another one; a
    # query parameter the document does not name is a 400 (api_gateway.query_params), so the
    # negative cases may add one
    schema.config.generation.update(with_security_parameters=False, allow_extra_parameters=True)
    operations = [result.ok() for result in schema.get_all_operations()]
    return [op for op in operations if (op.method.upper(), op.path) not in STREAMS | STOPS]


def _drive(
    operation: Any, base_url: str, headers: dict[str, str], path_parameters: dict[str, str] | None, mode: GenerationMode,
) -> None:
    session = requests.Session()

    page = PAGES.get((operation.method.upper(), operation.path))

    @SCHEMA_CHECKS
    @given(case=operation.as_strategy(mode, path_parameters=path_parameters))
    def run(case: Any) -> None:
        if page is not None:
            case.query = {**(case.query if isinstance(case.query, dict) else {}), **page}
        case.call_and_validate(
            base_url=base_url, session=session, headers=headers, timeout=20, excluded_checks=EXCLUDED,
        )

    try:
        run()
    finally:
        session.close()


def test_every_operation_answers_as_documented(server):
    job_id = asyncio.run(_finished_job(server))
    headers = {"Authorization": f"Bearer {server.token}"}
    failures = []
    for operation in _operations():
        with_id = {"id": job_id} if "{id}" in operation.path else None
        for path_parameters in (None, with_id) if with_id else (None,):
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                try:
                    _drive(operation, server.url, headers, path_parameters, mode)
                except Unsatisfiable:
                    assert mode is GenerationMode.NEGATIVE  # nothing of this operation can be made invalid
                except (Exception, BaseExceptionGroup) as exc:  # drive every operation, report all failures
                    failures.append(f"{operation.method.upper()} {operation.path} {mode.value} {path_parameters or ''}:\n{exc}")
    assert not failures, "\n\n".join(failures)
