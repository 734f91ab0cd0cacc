"""[database] url: PostgreSQL under the driver jobvisor uses, SQLite by default, anything else a
clear error at load time (not a stack trace when `up` first connects)."""

from __future__ import annotations

import pytest

from jobvisor.config import load_config
from jobvisor.errors import ConfigError


def test_postgresql_urls_name_the_async_driver():
    for url in ("postgresql://jv:pw@db:5432/jobs", "postgres://jv:pw@db:5432/jobs", "postgresql+asyncpg://jv:pw@db:5432/jobs"):
        assert load_config(environ={"JOBVISOR_DATABASE_URL": url}).database_url == "postgresql+asyncpg://jv:pw@db:5432/jobs"


def test_sqlite_is_the_default_and_may_be_named(tmp_path):
    config = load_config(environ={"JOBVISOR_SERVER_STATE_DIR": str(tmp_path)})
    assert config.database_url == f"sqlite+aiosqlite:///{tmp_path / 'jobvisor.sqlite'}"
    named = load_config(environ={"JOBVISOR_DATABASE_URL": f"sqlite:///{tmp_path / 'elsewhere.sqlite'}"})
    assert named.database_url == f"sqlite+aiosqlite:///{tmp_path / 'elsewhere.sqlite'}"


def test_another_database_is_a_clear_config_error(tmp_path):
    with pytest.raises(ConfigError, match="'mysql' is not a database jobvisor stores in; use postgresql"):
        load_config(environ={"JOBVISOR_DATABASE_URL": "mysql://jv:pw@db/jobs"})
    path = tmp_path / "c.toml"
    path.write_text('[database]\nurl = "jobs.sqlite"\n')
    with pytest.raises(ConfigError, match=r"\[database\] url"):
        load_config(path, environ={})
