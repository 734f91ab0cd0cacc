"""Logins the real sshd of the testbed does not offer: a NERSC-style password + one-time code
(keyboard-interactive), and host key verification, against an asyncssh test server on
loopback."""

from __future__ import annotations

import asyncssh
import pytest

from jobvisor.config import SbatchConfig

from drivers.sbatch.errors import LoginFailed
from drivers.sbatch.ssh import connect

PASSWORD, CODE = "s3cret-pw", "424242"


class OtpServer(asyncssh.SSHServer):
    def begin_auth(self, username):
        return True

    def password_auth_supported(self):
        return False

    def kbdint_auth_supported(self):
        return True

    def get_kbdint_challenge(self, username, lang, submethods):
        return "", "", "", [("Password: ", False), ("OTP (one-time code): ", True)]

    def validate_kbdint_response(self, username, responses):
        return username == "alice" and list(responses) == [PASSWORD, CODE]


@pytest.fixture
async def otp_server(tmp_path):
    key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.create_server(OtpServer, "127.0.0.1", 0, server_host_keys=[key])
    port = server.sockets[0].getsockname()[1]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {key.export_public_key().decode()}")
    other = tmp_path / "other_known_hosts"
    other.write_text(f"[127.0.0.1]:{port} {asyncssh.generate_private_key('ssh-ed25519').export_public_key().decode()}")
    cfg = SbatchConfig(cluster="otp", login_host="127.0.0.1", login_port=port, known_hosts=str(known),
                       connect_timeout=10)
    yield cfg, other
    server.close()
    await server.wait_closed()


async def test_password_and_one_time_code(otp_server):
    cfg, _ = otp_server
    conn = await connect(cfg, "alice", password=PASSWORD, otp=CODE)
    try:
        assert conn.alive and conn.method == "password"
        assert conn.client._password is None and conn.client._otp is None  # forgotten after the login
    finally:
        conn.close()


async def test_a_wrong_code_is_refused(otp_server):
    cfg, _ = otp_server
    with pytest.raises(LoginFailed, match="refused"):
        await connect(cfg, "alice", password=PASSWORD, otp="000000")
    with pytest.raises(LoginFailed, match="refused"):
        await connect(cfg, "alice", password=PASSWORD)  # the site wants a code


async def test_an_unknown_host_key_is_refused_unless_explicitly_accepted(otp_server):
    cfg, other = otp_server
    import dataclasses

    with pytest.raises(LoginFailed, match="host key"):
        await connect(dataclasses.replace(cfg, known_hosts=str(other)), "alice", password=PASSWORD, otp=CODE)
    conn = await connect(dataclasses.replace(cfg, known_hosts=str(other), accept_unknown_host_keys=True),
                         "alice", password=PASSWORD, otp=CODE)
    conn.close()
