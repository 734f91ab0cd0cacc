"""Sizes that more than one layer must agree on (gateway, supervisor, agent, job_cmd).

A message bigger than `MAX_MESSAGE_BYTES` is refused by whoever receives it; the default of
`[supervisor] max_message_bytes` is this value, and every codec and socket that has no
configuration at hand falls back to it. An analysis result may use half of a message, so the
reply that carries it (with its envelope) always fits.
"""

from __future__ import annotations

import socket

MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # largest protocol message on any channel (the default)
IO_CHUNK_BYTES = 1024 * 1024  # largest file slice one io op returns
LOG_READ_BYTES = 4 * 1024 * 1024  # largest slice of a job's log one read returns (the plain log route's)
MAX_RETRIES = 100  # a job's max_retries (the gateway checks it, the supervisor again)
MAX_PAGE = 1000  # jobs (or events) in one page of a listing
MAX_USER_EVENT_BYTES = 16 * 1024  # a user event's data, as JSON (POST /events)
MAX_EVENT_ID = 2**63 - 1  # an event id (a 64-bit integer in the database and on the wire)
# Kernel buffer of each side of an agent's websocket (SO_SNDBUF at the agent, SO_RCVBUF at the
# supervisor). Left to autotuning they grow to tens of MB on loopback, all of it log bytes that
# a job's end, sent after them, would queue behind; this much still carries logs at hundreds
# of MB/s (bench/logs).
AGENT_SOCKET_BUFFER = 512 * 1024


def limit_socket_buffer(sock: socket.socket | None, option: int, size: int = AGENT_SOCKET_BUFFER) -> None:
    """Set a socket's SO_SNDBUF or SO_RCVBUF (`option`) to `size`, where the socket allows it."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, option, size)
    except OSError:
        pass


def analysis_result_limit(max_message_bytes: int = MAX_MESSAGE_BYTES) -> int:
    """The most bytes an analysis may print: half a message, so its reply always fits."""
    return max_message_bytes // 2
