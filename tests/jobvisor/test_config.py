"""Configuration: the example file documents every key; env overrides; masking; errors."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from jobvisor.config import SECTIONS, describe, load_config
from jobvisor.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "etc" / "jobvisor.example.toml"


def test_example_documents_every_key_with_its_default():
    data = tomllib.loads(EXAMPLE.read_text())
    assert set(data) == set(SECTIONS)
    for name, cls in SECTIONS.items():
        fields = {f.name: f for f in dataclasses.fields(cls)}
        assert set(data[name]) == set(fields), name
        for key, f in fields.items():
            assert data[name][key] == f.default, f"[{name}] {key}"
    assert load_config(EXAMPLE, environ={}) == load_config(environ={})


def test_environment_overrides_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[local]\ncpus = 3\n")
    config = load_config(path, environ={"JOBVISOR_LOCAL_CPUS": "5", "JOBVISOR_SERVER_PORT": "9000"})
    assert config.local.cpus == 5 and config.server.port == 9000


def test_unknown_keys_and_bad_values_are_clear_errors(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[local]\ncpu = 3\n")
    with pytest.raises(ConfigError, match="unknown key 'cpu' in \\[local\\]"):
        load_config(path, environ={})
    with pytest.raises(ConfigError, match="JOBVISOR_LOCAL_CPUS"):
        load_config(environ={"JOBVISOR_LOCAL_CPUS": "many"})
    path.write_text("[nope]\n")
    with pytest.raises(ConfigError, match="nope"):
        load_config(path, environ={})


def test_config_show_masks_secrets():
    config = load_config(environ={"JOBVISOR_DATABASE_URL": "postgresql+asyncpg://jv:hunter2@db/jv"})
    shown = describe(config)
    assert "hunter2" not in str(shown)
    assert shown["database"]["url"].startswith("postgresql+asyncpg://jv:")
