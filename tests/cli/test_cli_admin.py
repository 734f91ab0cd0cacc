"""`user add`, `token create|revoke`, `config show`: the state dir written directly."""

from __future__ import annotations

import json

import pytest

from jobvisor.config import load_config
from jobvisor.errors import AuthError

from api_gateway.auth_store import AuthStore
from cli_env import cli_environ, run_cli


async def test_user_add_and_token_create_print_the_token_last(tmp_path):
    state = tmp_path / "state"
    env = cli_environ(state)
    added = await run_cli("user", "add", "erin", env=env)
    assert added.rc == 0, added.err
    assert added.last_line.startswith("jv_") and " " not in added.last_line
    created = await run_cli("token", "create", "erin", "--expires-days", "1", "--state-dir", str(state), env=cli_environ(tmp_path / "elsewhere"))
    assert created.rc == 0, created.err
    token = created.last_line
    assert token.startswith("jv_") and token != added.last_line
    config = load_config(environ={"JOBVISOR_SERVER_STATE_DIR": str(state), "JOBVISOR_GATEWAY_TOKEN_CACHE_SECONDS": "0"})
    async with AuthStore.for_config(config) as store:
        assert (await store.authenticate(added.last_line)).user == "erin"
        assert (await store.authenticate(token)).user == "erin"
    revoked = await run_cli("token", "revoke", token, env=env)
    assert revoked.rc == 0 and "revoked tok_" in revoked.out
    async with AuthStore.for_config(config) as store:
        with pytest.raises(AuthError):
            await store.authenticate(token)
        assert (await store.authenticate(added.last_line)).user == "erin"


async def test_admin_errors_are_clear(tmp_path):
    env = cli_environ(tmp_path / "state")
    missing = await run_cli("token", "create", "ghost", env=env)
    assert missing.rc != 0 and "no user 'ghost'" in missing.err and "Traceback" not in missing.err
    assert (await run_cli("user", "add", "x1", env=env)).rc == 0
    again = await run_cli("user", "add", "x1", env=env)
    assert again.rc != 0 and "already exists" in again.err
    bad = await run_cli("token", "revoke", "tok_nope", env=env)
    assert bad.rc != 0 and "no such token" in bad.err


async def test_user_add_while_the_gateway_has_the_store_open(cli):
    result = await cli.run("user", "add", "frank", "--admin", user=None)  # no token: the state dir directly
    assert result.rc == 0, result.err
    token = result.last_line
    principal = await cli.gateway.store.authenticate(token)
    assert principal.user == "frank" and principal.is_admin


async def test_config_show_prints_json(tmp_path):
    result = await run_cli("config", "show", env=cli_environ(tmp_path / "state", JOBVISOR_SERVER_PORT="9999"))
    assert result.rc == 0, result.err
    data = json.loads(result.out)
    assert data["server"]["port"] == 9999 and data["server"]["state_dir"] == str(tmp_path / "state")
