"""The supervisor's table of request handlers against the protocol's set of gateway requests."""

from __future__ import annotations

from jobvisor.codec import union_members
from jobvisor.protocol.registry import GatewayRequest
from supervisor.requests import RequestHandlers


async def test_the_supervisor_answers_every_gateway_request_and_only_those(core) -> None:
    assert set(RequestHandlers(core).table) == set(union_members(GatewayRequest))
