"""The OpenAPI paths and schemas of the admins' routes about users, tokens and the server's
configuration (`api_gateway.routes_users`)."""

from __future__ import annotations

from typing import Any, Callable

from api_gateway.openapi_schemas import ref

_TIME = {"type": "string", "format": "date-time"}
_MAYBE_TIME = {"type": ["string", "null"], "format": "date-time"}
_USER_NAME = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"}


def users_schemas() -> dict:
    issued = {
        "type": "object",
        "required": ["id", "user", "token", "prefix", "expires_at"],
        "description": "A new token: `token` is shown this once (only its hash is kept)",
        "properties": {
            "id": {"type": "string"}, "user": {"type": "string"}, "token": {"type": "string"},
            "prefix": {"type": "string"}, "expires_at": _MAYBE_TIME,
        },
    }
    user = {
        "name": {"type": "string"}, "admin": {"type": "boolean"}, "created_at": _TIME,
        "active_tokens": {"type": "integer", "minimum": 0, "description": "Tokens neither revoked nor expired"},
    }
    return {
        "UserRequest": {
            "type": "object", "required": ["name"], "additionalProperties": False,
            "properties": {"name": _USER_NAME, "admin": {"type": "boolean", "default": False,
                                                        "description": "Sees and manages every job and user"}},
        },
        "User": {"type": "object", "required": list(user), "properties": user},
        "NewUser": {"type": "object", "required": [*user, "token"], "properties": {**user, "token": ref("IssuedToken")}},
        "Users": {"type": "object", "required": ["users"], "properties": {"users": {"type": "array", "items": ref("User")}}},
        "UserRemoved": {
            "type": "object", "required": ["name", "removed", "tokens_removed"],
            "properties": {"name": {"type": "string"}, "removed": {"const": True},
                           "tokens_removed": {"type": "integer", "minimum": 0}},
        },
        "TokenRequest": {
            "type": "object", "required": ["user"], "additionalProperties": False,
            "properties": {
                "user": _USER_NAME,
                "expires_days": {"type": "number", "exclusiveMinimum": 0, "maximum": 36500,
                                 "description": "Valid for this many days; absent: no expiry"},
                "label": {"type": "string", "maxLength": 200, "description": "A note to recognise it by"},
            },
        },
        "IssuedToken": issued,
        "Token": {
            "type": "object",
            "required": ["id", "user", "prefix", "label", "state", "created_at", "expires_at", "revoked_at", "last_used_at"],
            "properties": {
                "id": {"type": "string"}, "user": {"type": "string"},
                "prefix": {"type": "string", "description": "The token's first characters, masked after them (jv_AbCd…)"},
                "label": {"type": "string"},
                "state": {"type": "string", "enum": ["active", "revoked", "expired"]},
                "created_at": _TIME, "expires_at": _MAYBE_TIME, "revoked_at": _MAYBE_TIME,
                "last_used_at": {**_MAYBE_TIME, "description": "Written at most once a minute per token"},
            },
        },
        "Tokens": {"type": "object", "required": ["tokens"], "properties": {"tokens": {"type": "array", "items": ref("Token")}}},
        "TokenRevoked": {"type": "object", "required": ["id", "revoked"],
                         "properties": {"id": {"type": "string"}, "revoked": {"const": True}}},
        "ServerConfig": {
            "type": "object",
            "description": "Every section of the configuration the server runs with, as `jobvisor config show` prints "
                           "a file's: secrets (keys naming a secret, password, token or passphrase; passwords in "
                           "URLs) masked as ********",
            "additionalProperties": {"type": "object"},
        },
    }


def users_paths(prefix: str, op: Callable[..., dict], json: Callable[[dict, str], dict],
                problem: Callable[[str], dict], errors: dict[str, Any], bad: dict[str, Any]) -> dict:
    """The paths, made with the document's own helpers (`api_gateway.openapi`)."""
    forbidden = {"403": problem("Admins only")}

    def body(name: str) -> dict:
        return {"required": True, "content": {"application/json": {"schema": ref(name)}}}

    return {
        f"{prefix}/users": {
            "post": op("Add a user, with a first token (shown once)",
                       {"201": json(ref("NewUser"), "The user and its token"), **bad, **forbidden,
                        "409": problem("The user exists already"), **errors},
                       body=body("UserRequest"), tag="admin"),
            "get": op("Every user, with how many working tokens each has",
                      {"200": json(ref("Users"), "Users"), **bad, **forbidden, **errors}, tag="admin"),
        },
        f"{prefix}/users/{{name}}": {
            "delete": op("Remove a user and its tokens (its jobs stay)",
                         {"200": json(ref("UserRemoved"), "Removed"), **bad, **forbidden, "404": problem("No such user"),
                          "409": problem("The last admin cannot be removed"), **errors},
                         params=[{"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
                                  "description": "User name"}], tag="admin"),
        },
        f"{prefix}/tokens": {
            "post": op("A new token for a user (shown once)",
                       {"201": json(ref("IssuedToken"), "The token"), **bad, **forbidden,
                        "404": problem("No such user"), **errors},
                       body=body("TokenRequest"), tag="admin"),
            "get": op("Tokens by their id and masked prefix, with their creation, expiry, revocation and last use",
                      {"200": json(ref("Tokens"), "Tokens"), **bad, **forbidden, **errors},
                      params=[{"name": "user", "in": "query", "schema": {"type": "string"},
                               "description": "Only this user's tokens"}], tag="admin"),
        },
        f"{prefix}/tokens/{{id}}": {
            "delete": op("Revoke a token (the gateway refuses it within [gateway] token_cache_seconds). The last "
                         "working token of any admin is a 409: no one could use the admin routes after it",
                         {"200": json(ref("TokenRevoked"), "Revoked"), **bad, **forbidden, "404": problem("No such token"),
                          "409": problem("The last working admin token"), **errors},
                         params=[{"name": "id", "in": "path", "required": True, "schema": {"type": "string"},
                                  "description": "Token id (tok_...)"}], tag="admin"),
        },
        f"{prefix}/config": {
            "get": op("The configuration the running server uses, secrets masked",
                      {"200": json(ref("ServerConfig"), "The configuration"), **bad, **forbidden, **errors}, tag="admin"),
        },
    }
