"""Alembic migrations of the gateway's users and tokens, run by `AuthStore.open`
(`api_gateway.auth_store.SCHEMA` describes this environment).

A schema change is a new revision in `versions/` (the next number, `down_revision` the
previous one) that changes the models in `api_gateway.auth_store` and the database alike;
`tests/api_gateway/test_gw_auth_store.py` checks that the revisions build exactly those
models' tables, on SQLite and on PostgreSQL.
"""
