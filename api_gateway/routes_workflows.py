"""Routes about workflows (issue 14's orchestrator API): publish, list, show, execute, cancel,
status, history, delete.

The gateway reads and checks the document (JSON, or YAML by its content type) with
`jobvisor.workflow_doc`, so a document with a field error is a 400 naming the field before
any op is made, and sends the supervisor the normalized document; the supervisor checks it
again, with the checks that need the server's configuration (drivers, clusters, transfers).
"""

from __future__ import annotations

import asyncio
import functools
import re

from aiohttp import web

from jobvisor.errors import InvalidRequest, NotFound
from jobvisor.limits import MAX_PAGE
from jobvisor.protocol.workflow_requests import (
    CancelWorkflow, DeleteWorkflow, ExecuteWorkflow, GetWorkflow, ListWorkflows, PublishWorkflow, WorkflowHistory,
    WorkflowStatus,
)
from jobvisor.workflow_doc import load_document, parse_workflow
from jobvisor.wire_values import check_wire_value

from api_gateway.context import CONFIG, caller_of, op
from api_gateway.routes_jobs import PREFIX, json_response
from api_gateway.validation import DEFAULT_PAGE, query_flag, query_int

_WORKFLOW_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
INLINE_PARSE_BYTES = 64 * 1024  # a larger document is parsed in a thread
MAX_MESSAGE_CHARS = 500  # a version's message (?message=); longer ones would not fit a request line


def _normalized(body: bytes, content_type: str, max_jobs: int) -> dict:
    """The document of a request body, checked and normalized (InvalidRequest naming the field)."""
    data = load_document(body, content_type)
    check_wire_value(data, "body")
    return parse_workflow(data, max_jobs=max_jobs).to_json()


def workflow_id_of(request: web.Request) -> str:
    """The `{id}` of the path; a malformed id cannot name a workflow: 404 like any unknown one."""
    workflow_id = request.match_info["id"]
    if not _WORKFLOW_ID.match(workflow_id):
        raise NotFound(f"no workflow {workflow_id!r}")
    return workflow_id


def _visible(request: web.Request, view: dict) -> dict:
    """The gateway's own check of what it is about to show (the supervisor checked first)."""
    caller = caller_of(request)
    if not caller.is_admin and view.get("owner", caller.user) != caller.user:
        raise NotFound(f"no workflow {view.get('id')!r}")
    return view


async def publish(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    message = request.query.get("message", "")
    if len(message) > MAX_MESSAGE_CHARS:
        raise InvalidRequest(f"message is longer than {MAX_MESSAGE_CHARS} characters", field="message")
    check_wire_value(message, "message")
    execute = query_flag(request, "execute")
    body = await request.read()
    if not body.strip():
        raise InvalidRequest("request body is empty; a workflow document is required", field="body")
    parse = functools.partial(_normalized, body, request.content_type, config.workflows.max_jobs)
    # a large document takes a while to parse: in a thread, so the loop serves others meanwhile
    document = await asyncio.to_thread(parse) if len(body) > INLINE_PARSE_BYTES else parse()
    view = await op(request, PublishWorkflow(caller=caller_of(request), document=document, message=message, execute=execute))
    return json_response(view, status=201, headers={"Location": f"{PREFIX}/workflows/{view['id']}"})


async def list_workflows(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    after = request.query.get("after", "")
    reply = await op(request, ListWorkflows(caller=caller_of(request), limit=limit, after=after))
    caller = caller_of(request)
    workflows = [w for w in reply["workflows"] if caller.is_admin or w.get("owner") == caller.user]
    cursor = reply.get("next")
    headers = {}
    if cursor:
        headers["Link"] = f'<{request.rel_url.update_query(after=cursor)}>; rel="next"'
    return json_response({"workflows": workflows, "next": cursor}, headers=headers)


async def get_workflow(request: web.Request) -> web.Response:
    view = await op(request, GetWorkflow(caller=caller_of(request), workflow_id=workflow_id_of(request)))
    return json_response(_visible(request, view))


async def delete_workflow(request: web.Request) -> web.Response:
    force = query_flag(request, "force")
    reply = await op(request, DeleteWorkflow(caller=caller_of(request), workflow_id=workflow_id_of(request), force=force))
    return json_response(reply)


async def execute_workflow(request: web.Request) -> web.Response:
    view = await op(request, ExecuteWorkflow(caller=caller_of(request), workflow_id=workflow_id_of(request)))
    return json_response(_visible(request, view))


async def cancel_workflow(request: web.Request) -> web.Response:
    view = await op(request, CancelWorkflow(caller=caller_of(request), workflow_id=workflow_id_of(request)))
    return json_response(_visible(request, view))


async def workflow_status(request: web.Request) -> web.Response:
    return json_response(await op(request, WorkflowStatus(caller=caller_of(request), workflow_id=workflow_id_of(request))))


async def workflow_history(request: web.Request) -> web.Response:
    return json_response(await op(request, WorkflowHistory(caller=caller_of(request), workflow_id=workflow_id_of(request))))


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post(PREFIX + "/workflows", publish)
    r.add_get(PREFIX + "/workflows", list_workflows, allow_head=False)
    r.add_get(PREFIX + "/workflows/{id}", get_workflow, allow_head=False)
    r.add_delete(PREFIX + "/workflows/{id}", delete_workflow)
    r.add_post(PREFIX + "/workflows/{id}/execute", execute_workflow)
    r.add_post(PREFIX + "/workflows/{id}/cancel", cancel_workflow)
    r.add_get(PREFIX + "/workflows/{id}/status", workflow_status, allow_head=False)
    r.add_get(PREFIX + "/workflows/{id}/history", workflow_history, allow_head=False)
