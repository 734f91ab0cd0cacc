"""The workflow routes as the integration tests drive them (over tests.harness.Api)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.harness import Api

FINISHED = {"completed", "failed", "canceled"}


def shell(name: str, script: str, **more: Any) -> dict:
    return {"name": name, "code": "shell", "params": {"script": script}, **more}


def result_script(value: str) -> str:
    """A shell script whose job's result is the JSON `value`."""
    return f"mkdir -p .jobvisor && printf '%s' '{value}' > .jobvisor/result.json"


async def publish(api: Api, document: dict, *, execute: bool = True, message: str = "") -> dict:
    params = {"execute": "true"} if execute else {}
    if message:
        params["message"] = message
    return await api.request("POST", "/workflows", json=document, params=params)


async def wait_workflow(api: Api, workflow_id: str, states: set[str] = FINISHED, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        view = await api.request("GET", f"/workflows/{workflow_id}")
        if view["state"] in states:
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"workflow {workflow_id} is {view['state']} ({view['reason']}), not {states}: "
                                 f"{[(j['name'], j['state'], j['reason']) for j in view['jobs']]}")
        await asyncio.sleep(0.05)


def by_name(view: dict) -> dict[str, dict]:
    return {job["name"]: job for job in view["jobs"]}
