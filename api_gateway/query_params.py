"""Unknown query parameters are a 400 on every route (`?name=x` must not list everything).

Each route declares its query parameters in one place, its operation's `parameters` in the
OpenAPI document (`api_gateway.openapi`); this middleware refuses any other, naming it and the
ones the route takes. A route added without declaring its parameters therefore refuses them,
which its own tests see at once (a test also drives every documented route with a bogus one).
"""

from __future__ import annotations

import functools

from aiohttp import web

from jobvisor.errors import InvalidRequest

from api_gateway.openapi import build_openapi


# The token as a query parameter (for clients that cannot set headers, such as EventSource): the
# auth middleware takes it on every GET, so every GET accepts it.
ACCESS_TOKEN = "access_token"


@functools.cache
def declared_query_parameters() -> dict[tuple[str, str], frozenset[str]]:
    """(METHOD, path template) -> the query parameters its operation declares."""
    out: dict[tuple[str, str], frozenset[str]] = {}
    for path, operations in build_openapi()["paths"].items():
        for method, operation in operations.items():
            names = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
            if method.upper() == "GET":
                names.add(ACCESS_TOKEN)
            out[(method.upper(), path)] = frozenset(names)
    return out


def check_query(method: str, template: str, query_names: set[str]) -> None:
    """InvalidRequest (field: the parameter) for one the route does not declare. A route the
    document does not have (a 404, a 405) is left to aiohttp's own answer."""
    declared = declared_query_parameters().get((method.upper(), template))
    if declared is None:
        return
    unknown = sorted(query_names - declared)
    if unknown:
        names = sorted(declared - {ACCESS_TOKEN})
        takes = f"it takes {', '.join(names)}" if names else "it takes none"
        raise InvalidRequest(f"unknown query parameter {unknown[0]!r} for {method.upper()} {template}; {takes}",
                             field=unknown[0])


@web.middleware
async def query_middleware(request: web.Request, handler):
    if request.query:
        resource = request.match_info.route.resource
        if resource is not None:
            check_query(request.method, resource.canonical, set(request.query))
    return await handler(request)
