"""Users and tokens on SQLite and on PostgreSQL (the `database` fixture), through the real
gateway and through the store; and the user store's migrations: a gateway.sqlite made before
migrations is stamped and kept, a newer one is refused."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine

from api_gateway.auth_store import SCHEMA, AuthStore, Base, bootstrap_admin
from gateway_env import start_env
from jobvisor.config import load_config
from jobvisor.errors import AuthError, Conflict, NotFound
from jobvisor.migrate import SchemaTooNew, revisions_of
from jobvisor.secrets import hash_token


def _store(tmp_path, database, cache_seconds: float = 0.0) -> AuthStore:
    """The store `jobvisor up` would open for this database: gateway.sqlite in the state dir
    for SQLite, the jobs' PostgreSQL database otherwise."""
    config = load_config(environ={"JOBVISOR_SERVER_STATE_DIR": str(tmp_path / "state"),
                                  "JOBVISOR_GATEWAY_TOKEN_CACHE_SECONDS": str(cache_seconds), **database.env})
    return AuthStore.for_config(config)


async def test_users_and_tokens_on_each_database(tmp_path, database):
    store = _store(tmp_path, database)
    assert ("postgresql" in store._url) == (database.kind == "postgresql")
    async with store:
        first = await bootstrap_admin(store)
        assert first and (await store.authenticate(first)).is_admin
        await store.add_user("carol")
        with pytest.raises(Conflict):
            await store.add_user("carol")
        with pytest.raises(NotFound):
            await store.create_token("ghost")
        issued = await store.create_token("carol", label="laptop")
        short = await store.create_token("carol", expires_in=0.2)
        assert (await store.authenticate(issued.token)).user == "carol"
        assert (await store.authenticate(short.token)).user == "carol"
        assert [t.label for t in await store.list_tokens("carol")] == ["laptop", ""]
        await asyncio.sleep(0.3)
        with pytest.raises(AuthError, match="expired"):
            await store.authenticate(short.token)
        assert await store.revoke_token(issued.token) == issued.id
        with pytest.raises(AuthError, match="revoked"):
            await store.authenticate(issued.token)
        # the last working admin token stays: nobody could reach the admin routes after it
        (only,) = [t for t in await store.list_tokens("admin")]
        with pytest.raises(Conflict, match="last working token of an admin"):
            await store.revoke_token(only.id)
        spare = await store.create_token("admin")
        assert await store.revoke_token(only.id) == only.id  # another works now
        assert (await store.authenticate(spare.token)).is_admin


async def test_the_real_gateway_authenticates_from_each_database(tmp_path, database):
    gateway, fake, config, tokens = await start_env(tmp_path, **database.env)
    try:
        import aiohttp

        async with aiohttp.ClientSession() as http:
            for token, status in ((tokens["alice"], 200), ("jv_unknown", 401)):
                async with http.get(gateway.url + "/api/v1/jobs", headers={"Authorization": f"Bearer {token}"}) as resp:
                    assert resp.status == status
        # what `jobvisor token revoke` does while the gateway serves (the env's cache is 0 s)
        async with AuthStore.for_config(config) as cli:
            await cli.revoke_token(tokens["bob"])
        with pytest.raises(AuthError, match="revoked"):
            await gateway.store.authenticate(tokens["bob"])
    finally:
        await gateway.close()
        await fake.close()


async def test_the_revisions_build_exactly_the_models(tmp_path, database):
    store = _store(tmp_path, database)
    async with store:
        engine = create_async_engine(store._url)
        try:
            async with engine.connect() as conn:
                assert await revisions_of(conn, SCHEMA) == (SCHEMA.head,)
                diff = await conn.run_sync(lambda sync: compare_metadata(MigrationContext.configure(
                    sync, opts={"include_name": SCHEMA.include_name, "version_table": SCHEMA.version_table}), Base.metadata))
        finally:
            await engine.dispose()
    assert diff == []


def _pre_migration_gateway_sqlite(path) -> str:
    """A gateway.sqlite as jobvisor made it before migrations (create_all, no version), with a
    user and a token; returns the token."""
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:  # the tables as the first revision has them
        conn.execute(text("CREATE TABLE users (name VARCHAR(64) PRIMARY KEY, is_admin BOOLEAN NOT NULL, "
                          "created_at DATETIME NOT NULL)"))
        conn.execute(text("CREATE TABLE tokens (id VARCHAR(32) PRIMARY KEY, user VARCHAR(64) NOT NULL REFERENCES users(name), "
                          "token_hash VARCHAR(64) NOT NULL UNIQUE, created_at DATETIME NOT NULL, expires_at DATETIME, "
                          "revoked_at DATETIME, label VARCHAR(200) NOT NULL)"))
    now = datetime.now(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
    token = "jv_fixture_token_made_before_migrations"
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (name, is_admin, created_at) VALUES ('erin', 0, :now)"), {"now": now})
        conn.execute(text("INSERT INTO tokens (id, user, token_hash, created_at, label) VALUES "
                          "('tok_old', 'erin', :hash, :now, 'old')"), {"hash": hash_token(token), "now": now})
    engine.dispose()
    return token


async def test_a_gateway_sqlite_made_before_migrations_is_stamped_and_kept(tmp_path):
    path = tmp_path / "gateway.sqlite"
    token = _pre_migration_gateway_sqlite(path)
    async with AuthStore(f"sqlite+aiosqlite:///{path}") as store:
        assert (await store.authenticate(token)).user == "erin"
    db = sqlite3.connect(path)
    try:
        # stamped as the first revision, then upgraded to the last one (tokens got a prefix column)
        assert db.execute(f"SELECT version_num FROM {SCHEMA.version_table}").fetchall() == [(SCHEMA.head,)]
        assert db.execute("SELECT count(*) FROM users").fetchone() == (1,)
        assert db.execute("SELECT prefix FROM tokens").fetchone() == ("",)
    finally:
        db.close()


async def test_a_user_store_from_a_newer_jobvisor_is_refused_untouched(tmp_path):
    path = tmp_path / "gateway.sqlite"
    async with AuthStore(f"sqlite+aiosqlite:///{path}"):
        pass
    db = sqlite3.connect(path)
    db.execute(f"UPDATE {SCHEMA.version_table} SET version_num = 'f00dfeed'")
    db.commit()
    db.close()
    with pytest.raises(SchemaTooNew, match="f00dfeed"):
        await AuthStore(f"sqlite+aiosqlite:///{path}").open()
