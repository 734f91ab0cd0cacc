"""`--config FILE` on every command that reads the configuration, with `up`'s precedence:
the file (`--config`, else $JOBVISOR_CONFIG), then JOBVISOR_<SECTION>_<KEY>, then options
such as `--state-dir`. A missing or broken file: one line on stderr, exit status 2."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from cli_env import ROOT, run_cli

from api_gateway.auth_store import AuthStore, store_path
from jobvisor.cli.config_args import config_from_args
from jobvisor.cli.errors import CliError
from jobvisor.cli.main import build_parser
from jobvisor.config import load_config
from tests.harness import free_port


def clean_environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No JOBVISOR_* from the caller, and a per-user data dir under tmp_path: a command that
    ignored --config would land there (never in the real ~/.local/share/jobvisor)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBVISOR_")}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def write_config(path: Path, state_dir: Path, **server: object) -> Path:
    lines = ["[server]", f'state_dir = "{state_dir}"']
    lines += [f"{key} = {value!r}" if isinstance(value, int) else f'{key} = "{value}"' for key, value in server.items()]
    lines += ["", "[gateway]", "token_cache_seconds = 0.0", ""]
    path.write_text("\n".join(lines))
    return path


def leaf_parsers(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """Every runnable command: (words, its parser)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
        return
    for name, child in subs[0].choices.items():
        yield from leaf_parsers(child, (*prefix, name))


async def test_user_add_and_tokens_use_the_state_dir_of_config(tmp_path):
    state = tmp_path / "state-from-file"
    path = write_config(tmp_path / "my.toml", state)
    env = clean_environ(tmp_path)

    added = await run_cli("user", "add", "bob", "--config", str(path), env=env)
    assert added.rc == 0, added.err
    token = added.last_line
    assert token.startswith("jv_") and " " not in token
    assert store_path(state).is_file()
    assert not (tmp_path / "xdg").exists()  # nothing went to the default state dir

    # without --config the same command looks elsewhere: bob is not there
    elsewhere = await run_cli("token", "create", "bob", env=env)
    assert elsewhere.rc != 0 and "no user 'bob'" in elsewhere.err

    created = await run_cli("token", "create", "bob", "--label", "ci", "--config", str(path), env=env)
    assert created.rc == 0, created.err
    second = created.last_line
    assert second.startswith("jv_") and second != token

    async with AuthStore.for_config(load_config(path, environ={})) as store:
        assert (await store.authenticate(token)).user == "bob"
        assert (await store.authenticate(second)).user == "bob"

    listed = await run_cli("token", "list", "--user", "bob", "--config", str(path), env=env)
    assert listed.rc == 0, listed.err
    header, *rows = listed.out.strip().splitlines()
    assert header.split()[:2] == ["ID", "USER"] and len(rows) == 2 and "ci" in listed.out
    revoked = await run_cli("token", "revoke", second, "--config", str(path), env=env)
    assert revoked.rc == 0 and "revoked tok_" in revoked.out
    assert "revoked" in (await run_cli("token", "list", "--config", str(path), env=env)).out


async def test_precedence_is_the_same_as_for_up(tmp_path):
    """--config beats $JOBVISOR_CONFIG; JOBVISOR_SERVER_STATE_DIR beats the file; --state-dir
    beats both. `user add` and `up` resolve one command line to the same configuration."""
    from_env_file = write_config(tmp_path / "env.toml", tmp_path / "env-file-state")
    from_option = write_config(tmp_path / "opt.toml", tmp_path / "option-state")

    env = clean_environ(tmp_path, JOBVISOR_CONFIG=str(from_env_file))
    result = await run_cli("user", "add", "ann", "--config", str(from_option), env=env)
    assert result.rc == 0, result.err
    assert store_path(tmp_path / "option-state").is_file()
    assert not (tmp_path / "env-file-state").exists()

    env = clean_environ(tmp_path, JOBVISOR_SERVER_STATE_DIR=str(tmp_path / "env-var-state"))
    result = await run_cli("user", "add", "ann", "--config", str(from_option), env=env)
    assert result.rc == 0, result.err
    assert store_path(tmp_path / "env-var-state").is_file()

    result = await run_cli("user", "add", "ann", "--config", str(from_option), "--state-dir", str(tmp_path / "opt-dir"), env=env)
    assert result.rc == 0, result.err
    assert store_path(tmp_path / "opt-dir").is_file()

    shown = await run_cli("config", "show", "--config", str(from_option), env=clean_environ(tmp_path, JOBVISOR_CONFIG=str(from_env_file)))
    assert shown.rc == 0 and f'"state_dir": "{tmp_path / "option-state"}"' in shown.out


def test_up_and_admin_commands_resolve_one_command_line_alike(tmp_path, monkeypatch):
    path = write_config(tmp_path / "c.toml", tmp_path / "file-state", port=9100)
    for key in [k for k in os.environ if k.startswith("JOBVISOR_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("JOBVISOR_SERVER_PORT", "9200")
    parser = build_parser()
    for tail in ([], ["--state-dir", str(tmp_path / "opt")]):
        up = config_from_args(parser.parse_args(["up", "--config", str(path), *tail]))
        add = config_from_args(parser.parse_args(["user", "add", "x", "--config", str(path), *tail]))
        assert up == add
        assert up.server.port == 9200  # the environment wins over the file
        assert up.state_dir == (tmp_path / ("opt" if tail else "file-state"))


@pytest.mark.parametrize("argv", [
    ["user", "add", "bob"],
    ["token", "create", "bob"],
    ["token", "revoke", "tok_x"],
    ["token", "list"],
    ["config", "show"],
    ["list"],  # a client command: reads the gateway URL from the config
    ["up"],
])
async def test_a_missing_or_broken_config_is_a_one_line_error_with_status_2(tmp_path, argv):
    env = clean_environ(tmp_path, JOBVISOR_URL="http://127.0.0.1:9", JOBVISOR_TOKEN="jv_x")
    missing = tmp_path / "nope.toml"
    result = await run_cli(*argv, "--config", str(missing), env=env)
    assert result.rc == 2, result
    assert result.err == f"jobvisor: cannot read config file {missing}: No such file or directory\n"

    broken = tmp_path / "broken.toml"
    broken.write_text("[server\n")
    result = await run_cli(*argv, "--config", str(broken), env=env)
    assert result.rc == 2, result
    assert result.err.startswith(f"jobvisor: config file {broken} is not valid TOML")
    assert len(result.err.splitlines()) == 1 and "Traceback" not in result.err

    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[server]\nstate_dri = 'x'\n")
    result = await run_cli(*argv, "--config", str(unknown), env=env)
    assert (result.rc, result.err) == (2, "jobvisor: unknown key 'state_dri' in [server]\n")

    # the same through $JOBVISOR_CONFIG (a client reads it only when it needs the URL from it)
    env.pop("JOBVISOR_URL")
    result = await run_cli(*argv, env={**env, "JOBVISOR_CONFIG": str(missing)})
    assert (result.rc, result.err) == (2, f"jobvisor: cannot read config file {missing}: No such file or directory\n")
    assert not (tmp_path / "xdg").exists()


def test_config_from_args_raises_a_usage_error(tmp_path):
    args = argparse.Namespace(config=str(tmp_path / "nope.toml"))
    with pytest.raises(CliError, match="cannot read config file") as info:
        config_from_args(args)
    assert info.value.status == 2


def test_every_command_takes_config_and_its_help_says_what_it_does():
    words = {}
    for path, parser in leaf_parsers(build_parser()):
        action = next((a for a in parser._actions if "--config" in a.option_strings), None)
        assert action is not None, f"`jobvisor {' '.join(path)}` has no --config"
        assert action.metavar == "FILE"
        assert "$JOBVISOR_CONFIG" in action.help and "JOBVISOR_<SECTION>_<KEY>" in action.help, path
        words[path] = " ".join(parser.format_help().split())
    assert "--state-dir wins over it" in words[("user", "add")]
    assert "state dir and database" in words[("token", "create")]
    assert "--state-dir, --host, --port and --supervisor-port win over both" in words[("up",)]
    assert "gateway URL when neither --url nor $JOBVISOR_URL" in words[("list",)]


async def test_client_commands_find_the_gateway_through_config(cli, tmp_path):
    host, port = cli.gateway.url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    path = write_config(tmp_path / "client.toml", cli.state_dir, host=host, port=int(port))
    env = clean_environ(tmp_path, JOBVISOR_TOKEN=cli.tokens["alice"])
    result = await run_cli("list", "--config", str(path), env=env)
    assert result.rc == 0, result.err
    result = await run_cli("list", env=env)  # the default port: nothing listens there for this test
    assert result.rc != 0


async def test_user_add_with_config_while_the_gateway_has_the_store_open(cli, tmp_path):
    path = write_config(tmp_path / "same.toml", cli.state_dir)
    result = await run_cli("user", "add", "frank", "--admin", "--config", str(path), env=clean_environ(tmp_path))
    assert result.rc == 0, result.err
    principal = await cli.gateway.store.authenticate(result.last_line)
    assert principal.user == "frank" and principal.is_admin


@pytest.mark.integration
async def test_up_user_add_and_a_client_share_one_config_file(tmp_path):
    """The story end to end: `up --config F`, then `user add bob --config F` while it runs,
    then bob's token works for `jobvisor list --config F` (the URL from the same file)."""
    state = tmp_path / "state"
    path = write_config(tmp_path / "my.toml", state, port=free_port(), supervisor_port=free_port())
    env = clean_environ(tmp_path, PYTHONUNBUFFERED="1")
    up = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jobvisor", "up", "--config", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env, cwd=str(ROOT),
    )
    try:
        lines = []
        while not any(line.startswith("JOBVISOR_URL=") for line in lines):
            raw = await asyncio.wait_for(up.stdout.readline(), 30)
            assert raw, f"jobvisor up ended: {lines}"
            lines.append(raw.decode().strip())
        assert f"state dir: {state}" in lines

        added = await run_cli("user", "add", "bob", "--config", str(path), env=env)
        assert added.rc == 0, added.err
        listed = await run_cli("list", "--config", str(path), env={**env, "JOBVISOR_TOKEN": added.last_line})
        assert listed.rc == 0, listed.err
        assert not (tmp_path / "xdg").exists()
    finally:
        if up.returncode is None:
            up.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(up.wait(), 30)
            except TimeoutError:
                up.kill()
                await up.wait()
