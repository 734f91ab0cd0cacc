"""Alembic's entry point for the users and tokens database; jobvisor runs it from code (see
`jobvisor.migrate`), with the connection and the schema handed over in the config."""

from alembic import context

from jobvisor.migrate import run_env

run_env(context)
