"""`jobvisor queue clear`, `agents cancel|shutdown` and `timer add|list|rm`: the real CLI in a
subprocess against the real gateway, supervisor and agents."""

from __future__ import annotations

import argparse
from typing import AsyncIterator

import pytest

from cli_env import CliEnv
from jobvisor.cli import orchestrator
from real_env import RealEnv, start_real_env


@pytest.fixture
async def one_slot(tmp_path) -> AsyncIterator[tuple[RealEnv, CliEnv]]:
    """One cpu slot and no sending ahead: queued jobs stay queued."""
    env = await start_real_env(tmp_path, JOBVISOR_LOCAL_CPUS="1", JOBVISOR_SUPERVISOR_PREFETCH="0")
    try:
        yield env, CliEnv(gateway=env.gateway, fake=None, state_dir=env.config.state_dir, tokens=env.tokens)
    finally:
        await env.close()


def test_queue_and_agents_actions_join_a_command_another_module_made():
    parser = argparse.ArgumentParser(prog="jobvisor")
    subparsers = parser.add_subparsers(dest="command")
    listing = subparsers.add_parser("queue")
    listing.set_defaults(func="the listing")
    orchestrator.add_parser(subparsers)
    assert parser.parse_args(["queue"]).func == "the listing"
    assert parser.parse_args(["queue", "clear", "--user", "bob"]).func is orchestrator.cmd_queue_clear
    args = parser.parse_args(["agents", "shutdown", "a1"])
    assert (args.func, args.agent_action, args.id) == (orchestrator.cmd_agent_action, "shutdown", "a1")
    with pytest.raises(SystemExit):
        parser.parse_args(["agents"])  # made here: an action is required


async def test_queue_clear_and_agent_actions(one_slot):
    real, cli = one_slot
    running = (await cli.run("submit", "--", "sleep", "60")).out.strip()
    await real.wait_state(running, "running")
    queued = [(await cli.run("submit", "--", "sleep", "60")).out.strip() for _ in range(2)]
    bobs = (await cli.run("submit", "--", "sleep", "60", user="bob")).out.strip()

    refused = await cli.run("queue", "clear", "--user", "bob")
    assert refused.rc == 1 and "HTTP 403" in refused.err and "admins only" in refused.err
    cleared = await cli.run("queue", "clear")
    assert cleared.rc == 0, cleared.err
    assert cleared.out.strip() == "canceled 2 of alice's queued and waiting jobs"
    for job_id in queued:
        assert (await real.wait_state(job_id, "canceled"))["reason"] == "canceled by user (queue_clear)"
    assert (await real.wait_state(bobs, "queued", user="bob"))["state"] == "queued"
    own = await cli.run("queue", "clear", user="root")  # an admin clears their own queue unless they say whose
    assert own.rc == 0 and own.out.strip() == "canceled 0 of root's queued and waiting jobs"
    by_admin = await cli.run("queue", "clear", "--user", "bob", user="root")
    assert by_admin.rc == 0 and by_admin.out.strip() == "canceled 1 of bob's queued and waiting jobs"

    agent_id = (await real.wait_state(running, "running"))["agent_id"]
    other = await cli.run("agents", "cancel", agent_id, user="bob")
    assert other.rc == 1 and "HTTP 404" in other.err and "no agent" in other.err
    canceled = await cli.run("agents", "cancel", agent_id)
    assert canceled.rc == 0 and canceled.out.strip() == f"agent {agent_id} of alice (local): connected, 1 jobs canceled"
    await real.wait_state(running, "canceled")
    stopped = await cli.run("agents", "shutdown", agent_id)
    assert stopped.rc == 0 and stopped.out.strip() == f"agent {agent_id} of alice (local): stopping, 0 jobs canceled"
    usage = await cli.run("agents", "shutdown")
    assert usage.rc == 2 and "id" in usage.err


async def test_timer_errors_are_one_clear_line(one_slot):
    _, cli = one_slot
    absent = "w" + "0" * 20  # a full workflow id goes to the server as it is
    bad_cron = await cli.run("timer", "add", absent, "--cron", "0 24 * * *")
    assert bad_cron.rc == 1 and "hour field (2nd) has 24" in bad_cron.err and "(field: cron)" in bad_cron.err
    bad_every = await cli.run("timer", "add", absent, "--every", "soon")
    assert bad_every.rc == 1 and "(field: every)" in bad_every.err
    unknown = await cli.run("timer", "add", absent, "--every", "1h")
    assert unknown.rc == 1 and "HTTP 404" in unknown.err and f"no workflow '{absent}'" in unknown.err
    by_name = await cli.run("timer", "add", "nightly", "--every", "1h")  # a name: looked up first
    assert by_name.rc == 2 and "no workflow has the id prefix or name 'nightly'" in by_name.err
    neither = await cli.run("timer", "add", "w1")
    assert neither.rc == 2 and "one of the arguments --at --every --cron is required" in neither.err
    listed = await cli.run("timer", "list")
    assert listed.rc == 0 and listed.out.split()[:2] == ["ID", "WORKFLOW"] and len(listed.out.splitlines()) == 1
    missing = await cli.run("timer", "rm", "t0000000000000000000")
    assert missing.rc == 1 and "HTTP 404" in missing.err and "no timer" in missing.err
