"""Calls to a gateway's HTTP API as the tests make them, for any gateway under test (in front
of the fake supervisor or the real one)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from api_gateway.app import GatewayHandle


class ApiSession:
    """Needs `gateway`, `http` and `tokens` (user -> API token) on the class that uses it."""

    gateway: GatewayHandle
    http: aiohttp.ClientSession
    tokens: dict[str, str]

    @property
    def api(self) -> str:
        return self.gateway.url + "/api/v1"

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    async def call(self, method: str, path: str, user: str | None = "alice", **kwargs: Any) -> tuple[int, Any, Any]:
        """(status, parsed body, headers) of one request to the API."""
        headers = dict(kwargs.pop("headers", {}))
        if user is not None:
            headers.update(self.auth(user))
        async with self.http.request(method, self.api + path, headers=headers, **kwargs) as resp:
            raw = await resp.read()
            body: Any = json.loads(raw) if "json" in resp.headers.get("Content-Type", "") else raw
            return resp.status, body, resp.headers

    async def submit(self, user: str = "alice", **job: Any) -> dict:
        job = {"code": "shell", "params": {"argv": ["true"]}, **job}
        status, body, _ = await self.call("POST", "/jobs", user, json=job)
        assert status == 201, body
        return body
