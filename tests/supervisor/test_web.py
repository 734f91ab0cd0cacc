"""The supervisor's real sockets (Tornado on a loopback port): bad input gets a clear error
and the server stays up."""

from __future__ import annotations

import aiohttp
import pytest

from jobvisor.ids import AgentId, UserId
from jobvisor.codec import decode, decode_frame, encode, encode_frame, pack
from jobvisor.protocol.agent_wire import ErrorMessage, Hello, HelloAck
from jobvisor.protocol.common import PROTOCOL_VERSION, Reply
from jobvisor.protocol.registry import ALLOWED_TO_AGENT
from jobvisor.protocol.system_requests import GetStatus
from jobvisor.secrets import hash_token, internal_secret_path
from supervisor.agents import Agent
from supervisor.app import start_supervisor
from tests.harness import free_port
from tests.supervisor.fakes import make_config


@pytest.fixture
async def running(tmp_path):
    config = make_config(tmp_path).replace("server", supervisor_port=free_port())
    sup = await start_supervisor(config)
    agent = Agent(AgentId("a-test"), UserId("alice"), "local", hash_token("good-token"))
    sup.core.agents.by_id[agent.id] = agent
    secret = internal_secret_path(config.state_dir).read_text().strip()
    async with aiohttp.ClientSession() as session:
        yield sup, session, secret
    await sup.close()


def ws_headers(token: str, agent_id: str = "a-test") -> dict:
    return {"Authorization": f"Bearer {token}", "X-Jobvisor-Agent": agent_id}


async def test_wrong_token_or_unknown_agent_is_refused_before_upgrade(running):
    sup, session, _ = running
    url = sup.url.replace("http", "ws") + "/agent"
    for headers in (ws_headers("bad-token"), ws_headers("good-token", "a-unknown"), {}):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(url, headers=headers)
        assert info.value.status == 401


async def test_garbage_gets_an_error_reply_and_the_socket_stays_up(running):
    sup, session, _ = running
    url = sup.url.replace("http", "ws") + "/agent"
    async with session.ws_connect(url, headers=ws_headers("good-token")) as ws:
        await ws.send_bytes(b"\xc1 not msgpack")
        messages, _ = decode_frame((await ws.receive(timeout=5)).data, ALLOWED_TO_AGENT)
        assert isinstance(messages[0], ErrorMessage) and "msgpack" in messages[0].detail
        await ws.send_bytes(pack([{"t": "warp_drive"}]))
        messages, _ = decode_frame((await ws.receive(timeout=5)).data, ALLOWED_TO_AGENT)
        assert "unknown message type" in messages[0].detail
        await ws.send_bytes(encode_frame([Hello("a-test", PROTOCOL_VERSION, 1, "h", [])]))
        messages, _ = decode_frame((await ws.receive(timeout=5)).data, ALLOWED_TO_AGENT)
        assert isinstance(messages[0], HelloAck)


async def test_protocol_version_mismatch_is_refused_clearly(running):
    sup, session, _ = running
    url = sup.url.replace("http", "ws") + "/agent"
    async with session.ws_connect(url, headers=ws_headers("good-token")) as ws:
        await ws.send_bytes(encode_frame([Hello("a-test", PROTOCOL_VERSION + 1, 1, "h", [])]))
        messages, _ = decode_frame((await ws.receive(timeout=5)).data, ALLOWED_TO_AGENT)
        assert "protocol version" in messages[0].detail
        closing = await ws.receive(timeout=5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_internal_ops_need_the_secret_and_well_formed_bodies(running):
    sup, session, secret = running
    async with session.post(sup.url + "/internal/op", data=encode(GetStatus()), headers={"X-Jobvisor-Secret": "nope"}) as resp:
        assert resp.status == 401
    headers = {"X-Jobvisor-Secret": secret}
    async with session.post(sup.url + "/internal/op", data=b"\xc1", headers=headers) as resp:
        reply = decode(await resp.read())
        assert isinstance(reply, Reply) and not reply.ok and reply.error.kind == "invalid"
    async with session.post(sup.url + "/internal/op", data=pack({"t": "drop_tables"}), headers=headers) as resp:
        reply = decode(await resp.read())
        assert not reply.ok and "unknown message type" in reply.error.detail
    async with session.post(sup.url + "/internal/op", data=encode(GetStatus()), headers=headers) as resp:
        reply = decode(await resp.read())
        assert reply.ok and reply.data["protocol_version"] == PROTOCOL_VERSION
