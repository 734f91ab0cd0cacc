"""Users, tokens and the server's configuration against a real `jobvisor up`: over the API
for admins (403 for anyone else), and the state dir written directly only to bootstrap, the
running server's one (a user added while `up` runs on another state dir gets a token it
accepts, or a clear refusal)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import aiohttp
import pytest

from cli_env import ROOT, run_cli
from tests.harness import JobvisorProcess

pytestmark = pytest.mark.integration


def _env(run_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBVISOR_")}
    env.update(PYTHONPATH=str(ROOT), XDG_RUNTIME_DIR=str(run_dir), **extra)
    return env


@pytest.fixture
def up(tmp_path, database, monkeypatch):
    """`up` on its own state dir; it records itself in this test's runtime dir."""
    for key, value in database.env.items():
        monkeypatch.setenv(key, value)
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    proc = JobvisorProcess(tmp_path / "served", env={
        "XDG_RUNTIME_DIR": str(run_dir), "JOBVISOR_GATEWAY_TOKEN_CACHE_SECONDS": "0",
        "JOBVISOR_DOCKER_AGENT_URL": "ws://agent:hunter2@127.0.0.1:9/agent",
    })
    proc.start()
    proc.run_dir = run_dir  # type: ignore[attr-defined]
    yield proc
    proc.cleanup()


async def _status(url: str, token: str, method: str = "GET", path: str = "/jobs", body: dict | None = None) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{url}/api/v1{path}", json=body,
                                headers={"Authorization": f"Bearer {token}"}) as resp:
            return resp.status


# SQLite only: with PostgreSQL the users live in its database, whatever the state dir
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_user_add_beside_up_on_another_state_dir_writes_the_servers(up, database):
    port = str(up.port)
    env = _env(up.run_dir, JOBVISOR_SERVER_PORT=port)  # the default URL of this machine's gateway
    added = await run_cli("user", "add", "alice", env=env)
    assert added.rc == 0, added.err
    assert f"state dir: {up.state_dir} (that of the jobvisor running at {up.url})" in added.err
    assert await _status(up.url, added.last_line) == 200  # the server accepts the token it printed
    assert not (Path(env.get("HOME", "/nonexistent")) / ".local/share/jobvisor-never").exists()

    elsewhere = up.state_dir.parent / "elsewhere"
    refused = await run_cli("user", "add", "bob", "--state-dir", str(elsewhere), env=env)
    assert refused.rc == 2 and "Traceback" not in refused.err
    assert f"uses the state dir {up.state_dir}" in refused.err and "--state-dir" in refused.err
    assert not elsewhere.exists()

    other = up.state_dir.parent / "other"  # another jobvisor's state dir, with users: written, and said so
    assert (await run_cli("user", "add", "ivan", "--state-dir", str(other), env=_env(up.run_dir, JOBVISOR_SERVER_PORT="1"))).rc == 0
    second = await run_cli("user", "add", "judy", "--state-dir", str(other), env=env)
    assert second.rc == 0 and f"not that of the jobvisor running at {up.url}: {up.state_dir}" in second.err

    up.stop()  # nothing runs any more: the state dir given is written, and said so
    made = await run_cli("user", "add", "carol", "--state-dir", str(elsewhere), env=env)
    assert made.rc == 0 and f"state dir: {elsewhere} (new)" in made.err


async def test_users_and_tokens_over_the_api(up):
    admin = _env(up.run_dir, JOBVISOR_URL=up.url, JOBVISOR_TOKEN=up.token)
    added = await run_cli("user", "add", "dora", env=admin)
    assert added.rc == 0, added.err
    assert f"added user dora at {up.url}" in added.out and "state dir" not in added.err
    dora = added.last_line
    assert await _status(up.url, dora) == 200

    listed = await run_cli("user", "list", "--json", env=admin)
    users = {u["name"]: u for u in json.loads(listed.out)}
    assert users["dora"] == {**users["dora"], "admin": False, "active_tokens": 1} and users["admin"]["admin"]

    second = await run_cli("token", "create", "dora", "--label", "laptop", "--expires-days", "2", env=admin)
    assert second.rc == 0, second.err
    token2 = second.last_line
    assert await _status(up.url, token2) == 200
    tokens = json.loads((await run_cli("token", "list", "--user", "dora", "--json", env=admin)).out)
    assert len(tokens) == 2 and all(t["user"] == "dora" and t["state"] == "active" for t in tokens)
    by_label = {t["label"]: t for t in tokens}
    laptop = by_label["laptop"]
    assert laptop["prefix"] == token2[:7] + "…" and token2 not in json.dumps(tokens)
    assert laptop["last_used_at"] is not None and laptop["expires_at"] is not None
    table = await run_cli("token", "list", env=admin)
    assert table.rc == 0 and table.out.splitlines()[0].split()[:4] == ["ID", "USER", "TOKEN", "STATE"]

    revoked = await run_cli("token", "revoke", laptop["id"], env=admin)
    assert revoked.rc == 0 and laptop["id"] in revoked.out
    assert await _status(up.url, token2) == 401 and await _status(up.url, dora) == 200

    removed = await run_cli("user", "remove", "dora", env=admin)
    assert removed.rc == 0 and "2 token(s)" in removed.out
    assert await _status(up.url, dora) == 401
    gone = await run_cli("user", "remove", "dora", env=admin)
    assert gone.rc == 1 and "HTTP 404" in gone.err and "no user 'dora'" in gone.err
    last = await run_cli("user", "remove", "admin", env=admin)
    assert last.rc == 1 and "HTTP 409" in last.err and "last admin" in last.err


async def test_users_tokens_and_config_are_for_admins_only(up):
    admin = _env(up.run_dir, JOBVISOR_URL=up.url, JOBVISOR_TOKEN=up.token)
    erin = (await run_cli("user", "add", "erin", env=admin)).last_line
    for method, path, body in [
        ("GET", "/users", None), ("POST", "/users", {"name": "mallory"}), ("DELETE", "/users/admin", None),
        ("GET", "/tokens", None), ("POST", "/tokens", {"user": "erin"}), ("DELETE", "/tokens/tok_0", None),
        ("GET", "/config", None),
    ]:
        assert await _status(up.url, erin, method, path, body) == 403, (method, path)
    as_erin = _env(up.run_dir, JOBVISOR_URL=up.url, JOBVISOR_TOKEN=erin)
    denied = await run_cli("user", "list", env=as_erin)
    assert denied.rc == 1 and "HTTP 403" in denied.err and "admins only" in denied.err
    denied = await run_cli("config", "show", "--server", env=as_erin)
    assert denied.rc == 1 and "HTTP 403" in denied.err


async def test_config_show_server_is_the_running_servers_with_secrets_masked(up):
    admin = _env(up.run_dir, JOBVISOR_URL=up.url, JOBVISOR_TOKEN=up.token, JOBVISOR_SERVER_PORT="1")
    shown = await run_cli("config", "show", "--server", env=admin)
    assert shown.rc == 0, shown.err
    config = json.loads(shown.out)
    assert config["server"]["state_dir"] == str(up.state_dir) and config["server"]["port"] == up.port
    assert config["gateway"]["token_cache_seconds"] == 0
    assert config["docker"]["agent_url"] == "ws://agent:********@127.0.0.1:9/agent"
    assert "hunter2" not in shown.out
    local = json.loads((await run_cli("config", "show", env=admin)).out)  # this machine's, not the server's
    assert local["server"]["port"] == 1
