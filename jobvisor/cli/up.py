"""`jobvisor up`: the supervisor and the gateway in one foreground process.

This module is the composition root: it is the one place in `jobvisor` that imports the
supervisor and the gateway (lazily), to run them side by side in one asyncio loop.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import socket
import sys

from jobvisor.cli import listen_advice, running
from jobvisor.cli.config_args import add_config_argument
from jobvisor.cli.config_args import config_from_args as shared_config_from_args
from jobvisor.config import Config
from jobvisor.errors import JobvisorError, ListenError
from jobvisor.logs import setup_logging

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("up", help="run the supervisor and the gateway in the foreground until SIGINT/SIGTERM")
    p.add_argument("--state-dir", help="state directory (default: [server] state_dir of the config, else the per-user data dir)")
    p.add_argument("--host", help="address the gateway binds to (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="gateway port (default 8765)")
    p.add_argument("--supervisor-port", type=int, help="supervisor port for agents and the gateway (default 8766)")
    add_config_argument(p, "--state-dir, --host, --port and --supervisor-port win over both")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> Config:
    """`--config` (else $JOBVISOR_CONFIG), the environment's overrides, then the options."""
    return shared_config_from_args(
        args,
        host=getattr(args, "host", None) or None,
        port=getattr(args, "port", None),
        supervisor_port=getattr(args, "supervisor_port", None),
    )


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)  # a bad config file: CliError, exit status 2
    setup_logging(config.logging.level)
    try:
        return asyncio.run(serve(config))
    except ListenError as exc:
        print(f"jobvisor: {listen_advice.explain(exc)}", file=sys.stderr)
        return 1
    except JobvisorError as exc:  # InUse: another `up` has the state dir or the database
        print(f"jobvisor: {exc}", file=sys.stderr)
        return 1


def bind_gateway(config: Config) -> socket.socket:
    """The gateway's port, bound before the supervisor starts: a port taken then costs
    nothing, where a supervisor already started would have to stop its agents again."""
    host, port = config.server.host, config.server.port
    try:
        if not host and socket.has_dualstack_ipv6():
            return socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)
        family, _, _, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                      flags=socket.AI_PASSIVE)[0]
        return socket.create_server(address, family=family)
    except OSError as exc:
        raise ListenError("gateway", host, port, exc) from exc


# The youngest generation is collected every GC_THRESHOLDS[0] allocations (Python's default: 700).
GC_THRESHOLDS = (50_000, 20, 10)


def tune_gc() -> None:
    """Python's cyclic collector, set for a server that makes a few objects per job at
    thousands of jobs a second. The objects made at start-up (modules, classes, the routes:
    about 80,000) are frozen out of every collection, and the youngest generation is collected
    less often. On a burst of 15,000 jobs, collections in `up` took 250 ms (four full ones of
    45 ms each, during which no agent's report was handled) and 60 ms after. Cycles are still
    freed, a little later."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _until_stopped(*events: asyncio.Event) -> None:
    """Until a signal (SIGINT, SIGTERM) or an admin's POST /admin/shutdown asks to stop."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def serve(config: Config) -> int:
    from api_gateway.app import start_gateway
    from api_gateway.auth_store import bootstrap_admin
    from supervisor.app import claim_supervisor

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    claimed = await claim_supervisor(config, "jobvisor up")  # one per state dir and database, then its port
    try:
        gateway_socket = bind_gateway(config)
    except BaseException:
        await claimed.release()
        raise
    try:
        supervisor = await claimed.start()
    except BaseException:
        gateway_socket.close()
        raise
    try:
        link = supervisor.local_link() if config.server.in_process else None
        gateway = await start_gateway(config, link=link, sock=gateway_socket)
    except OSError as exc:
        await supervisor.close()
        raise ListenError("gateway", config.server.host, config.server.port, exc) from exc
    await supervisor.lock.note_url(gateway.url)
    token = await bootstrap_admin(gateway.store)
    print(f"jobvisor is up: {gateway.url}", flush=True)
    print(f"state dir: {config.state_dir}", flush=True)
    if token:
        print("admin API token (shown once, stored only as a hash; keep it):", flush=True)
        print(f"JOBVISOR_TOKEN={token}", flush=True)
    else:
        print("use your API token (`jobvisor token create NAME` makes a new one)", flush=True)
    print(f"JOBVISOR_URL={gateway.url}", flush=True)
    recorded = running.record(gateway.url, config.state_dir, config.supervisor_url)  # `user add` finds this state dir
    tune_gc()
    try:
        await _until_stopped(stop, supervisor.core.stop_requested)
    finally:
        running.forget(recorded)
    log.info("stopping: agents first, then the gateway and the supervisor")
    await gateway.close()
    await supervisor.close()
    print("jobvisor stopped", flush=True)
    return 0
