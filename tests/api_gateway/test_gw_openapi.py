"""The hand-written OpenAPI document and the registered routes describe the same API."""

from __future__ import annotations

import re

from jobvisor.config import load_config

from api_gateway.app import make_app
from api_gateway.openapi import build_openapi

_PARAM = re.compile(r"\{(\w+)(:[^}]*)?\}")


def registered_routes(tmp_path) -> set[tuple[str, str]]:
    app = make_app(load_config(environ={"JOBVISOR_SERVER_STATE_DIR": str(tmp_path)}), secret="x")
    routes = set()
    for route in app.router.routes():
        path = _PARAM.sub(r"{\1}", route.resource.canonical)
        routes.add((route.method.lower(), path))
    return routes


def documented_routes() -> set[tuple[str, str]]:
    doc = build_openapi()
    return {(method, path) for path, ops in doc["paths"].items() for method in ops}


def test_every_route_is_documented_and_vice_versa(tmp_path):
    registered = registered_routes(tmp_path)
    documented = documented_routes()
    assert len(registered) >= 14
    assert registered - documented == set(), "routes missing from openapi.json"
    assert documented - registered == set(), "documented paths the app does not serve"


def test_document_shape():
    doc = build_openapi()
    assert re.fullmatch(r"3\.1\.\d+", doc["openapi"])
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "A jv_... API token"
    }
    problem = doc["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"} and "field" in problem["properties"]
    for path, ops in doc["paths"].items():
        for name in re.findall(r"\{(\w+)\}", path):
            for op in ops.values():
                assert any(p["name"] == name and p["in"] == "path" for p in op.get("parameters", [])), (path, name)
        for op in ops.values():
            assert op["responses"] and op["summary"]
    assert doc["paths"]["/api/v1/jobs"]["post"]["requestBody"]["required"] is True
    assert doc["paths"]["/api/v1/status"]["get"]["security"] == []


async def test_served_document_is_the_same(real):
    status, body, _ = await real.call("GET", "/openapi.json", user=None)
    assert status == 200 and body == build_openapi()


async def test_gui_page_is_served_without_a_token(real):
    async with real.http.get(real.gateway.url + "/") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/html")
        page = await resp.text()
    assert "EventSource" in page and "/api/v1" in page
