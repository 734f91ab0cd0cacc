"""Authentication: every failure is a 401 problem with WWW-Authenticate: Bearer."""

from __future__ import annotations

import asyncio

import pytest

from jobvisor.errors import AuthError, Conflict, InvalidRequest, NotFound
from jobvisor.protocol.common import PROTOCOL_VERSION

from api_gateway.auth_store import AuthStore, bootstrap_admin


def assert_401(status, body, headers):
    assert status == 401
    assert headers["Content-Type"].startswith("application/problem+json")
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert body["status"] == 401 and body["detail"]


async def test_no_token_is_401_problem_saying_how_to_get_one(real):
    status, body, headers = await real.call("GET", "/jobs", user=None)
    assert_401(status, body, headers)
    assert "token create" in body["detail"]


async def test_bad_token_is_401(real):
    status, body, headers = await real.call("GET", "/jobs", user=None, headers={"Authorization": "Bearer jv_nope"})
    assert_401(status, body, headers)
    status, body, headers = await real.call("GET", "/jobs", user=None, headers={"Authorization": "Basic abc"})
    assert_401(status, body, headers)


async def test_revoked_token_is_401_even_from_another_store_instance(real):
    issued = await real.gateway.store.create_token("alice")
    headers = {"Authorization": f"Bearer {issued.token}"}
    assert (await real.call("GET", "/jobs", user=None, headers=headers))[0] == 200
    # a second store on the same file, as `jobvisor token revoke` would open while `up` runs
    async with AuthStore.for_config(real.config) as other:
        assert await other.revoke_token(issued.id) == issued.id
    status, body, resp_headers = await real.call("GET", "/jobs", user=None, headers=headers)
    assert_401(status, body, resp_headers)
    assert "revoked" in body["detail"]


async def test_expired_token_is_401(real):
    issued = await real.gateway.store.create_token("alice", expires_in=0.2)
    headers = {"Authorization": f"Bearer {issued.token}"}
    assert (await real.call("GET", "/jobs", user=None, headers=headers))[0] == 200
    await asyncio.sleep(0.3)
    status, body, resp_headers = await real.call("GET", "/jobs", user=None, headers=headers)
    assert_401(status, body, resp_headers)
    assert "expired" in body["detail"]


async def test_access_token_query_parameter_works_for_get_only(real):
    status, _, _ = await real.call("GET", f"/jobs?access_token={real.tokens['alice']}", user=None)
    assert status == 200
    status, body, headers = await real.call(
        "POST", f"/jobs?access_token={real.tokens['alice']}", user=None, json={"code": "x", "params": {}}
    )
    assert_401(status, body, headers)


async def test_status_and_openapi_need_no_token(real):
    status, body, _ = await real.call("GET", "/status", user=None)
    assert status == 200 and body["protocol_version"] == PROTOCOL_VERSION and body["gateway"]["events_connected"]
    status, body, _ = await real.call("GET", "/openapi.json", user=None)
    assert status == 200 and body["openapi"].startswith("3.1")


async def test_store_users_tokens_and_bootstrap(tmp_path):
    async with AuthStore(f"sqlite+aiosqlite:///{tmp_path / 'g.sqlite'}", cache_seconds=60) as store:
        first = await bootstrap_admin(store)
        assert first and first.startswith("jv_")
        assert await bootstrap_admin(store) is None  # only on first start
        principal = await store.authenticate(first)
        assert principal.user == "admin" and principal.is_admin
        with pytest.raises(Conflict):
            await store.add_user("admin")
        with pytest.raises(InvalidRequest):
            await store.add_user("../evil")
        with pytest.raises(NotFound):
            await store.create_token("ghost")
        with pytest.raises(AuthError):
            await store.authenticate("jv_unknown")
        await store.add_user("carol")
        issued = await store.create_token("carol", label="laptop")
        assert (await store.authenticate(issued.token)).user == "carol"
        # a revocation through the same store drops its cache entry at once
        await store.revoke_token(issued.token)
        with pytest.raises(AuthError, match="revoked"):
            await store.authenticate(issued.token)
        with pytest.raises(NotFound):
            await store.revoke_token("tok_missing")


async def test_cache_trusts_a_token_for_its_ttl(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'g.sqlite'}"
    async with AuthStore(url, cache_seconds=60) as gateway_store, AuthStore(url) as cli_store:
        await cli_store.add_user("dave")
        issued = await cli_store.create_token("dave")
        assert (await gateway_store.authenticate(issued.token)).user == "dave"
        await cli_store.revoke_token(issued.id)
        # still cached in the gateway's store: revocation takes effect within the TTL
        assert (await gateway_store.authenticate(issued.token)).user == "dave"
        async with AuthStore(url, cache_seconds=0) as fresh:
            with pytest.raises(AuthError):
                await fresh.authenticate(issued.token)
