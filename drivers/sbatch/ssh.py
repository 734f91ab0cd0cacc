"""SSH to the login node with asyncssh: one connection per (user, cluster), kept open with
keepalives and reused for every command.

Credentials (password, one-time code) are handed to `connect` and live only in the client
object for the authentication; they are dropped as soon as the login has succeeded or failed,
and are never logged or written anywhere. asyncssh's exceptions are turned into jobvisor's
here, each saying whether to retry:

    LoginFailed (an OpError, 403)  credentials or the host key refused: the user tries again
    DriverUnavailable (retryable)  refused, reset, unreachable, timed out, the session dropped
    DriverRefused (permanent)      a key or known_hosts file that cannot be read, an SSH server
                                   the client cannot agree with, no login host configured
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import asyncssh

from jobvisor.config import SbatchConfig
from jobvisor.errors import DriverRefused, DriverUnavailable

from drivers.sbatch.errors import LoginFailed

log = logging.getLogger(__name__)
logging.getLogger("asyncssh").setLevel(logging.WARNING)  # its INFO lines name every channel

OTP_WORDS = ("code", "otp", "token", "verification", "one-time", "one time", "passcode", "2fa", "factor")


def answer_prompts(prompts: list[tuple[str, bool]], password: str | None, otp: str | None) -> list[str] | None:
    """Answers to a keyboard-interactive challenge: one-time-code prompts get the code, the
    others the password. None (give up) when an answer is missing."""
    answers = []
    for prompt, _echo in prompts:
        text = prompt.lower()
        wants_otp = any(word in text for word in OTP_WORDS) and "password" not in text
        value = otp if wants_otp else password
        if value is None:
            return None
        answers.append(value)
    return answers


class _Client(asyncssh.SSHClient):
    """Answers the server's authentication requests once, then forgets the secrets."""

    def __init__(self, password: str | None, otp: str | None) -> None:
        self._password = password
        self._otp = otp
        self._password_tried = False
        self._kbd_rounds = 0
        self.lost = asyncio.Event()

    def forget_secrets(self) -> None:
        self._password = None
        self._otp = None

    def password_auth_requested(self) -> str | None:
        if self._password is None or self._password_tried:
            return None
        self._password_tried = True
        return self._password

    def kbdint_auth_requested(self) -> str | None:
        return "" if (self._password is not None or self._otp is not None) else None

    def kbdint_challenge_received(self, name, instructions, lang, prompts):
        self._kbd_rounds += 1
        if self._kbd_rounds > 4:
            return None
        if not prompts:
            return []
        return answer_prompts(prompts, self._password, self._otp)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()


@dataclass
class Connection:
    """An open SSH connection of one user to the login node."""

    username: str
    method: str  # "password", "key"
    conn: asyncssh.SSHClientConnection
    client: _Client
    work_dir: str = ""
    opened_at: float = field(default_factory=lambda: asyncio.get_running_loop().time())

    @property
    def alive(self) -> bool:
        return not self.client.lost.is_set()

    async def run(self, command: str, *, stdin: str | None = None, timeout: float) -> asyncssh.SSHCompletedProcess:
        try:
            return await asyncio.wait_for(self.conn.run(command, input=stdin, check=False), timeout)
        except asyncio.TimeoutError as exc:
            raise DriverUnavailable(f"a command on the login node did not finish within {timeout:g} s") from exc
        except (asyncssh.Error, OSError) as exc:
            raise DriverUnavailable(f"the SSH connection to the login node failed: {exc}") from exc

    def close(self) -> None:
        self.conn.close()


async def connect(cfg: SbatchConfig, username: str, *, password: str | None = None, otp: str | None = None,
                  key_file: str | None = None) -> Connection:
    """Log in to the cluster's login node. Raises LoginFailed for refused credentials or an
    untrusted host key, DriverError when the node cannot be reached."""
    if not cfg.login_host:
        raise DriverRefused("the sbatch driver has no login node: set [sbatch] login_host")
    client = _Client(password, otp)
    known_hosts = None if cfg.accept_unknown_host_keys else (cfg.known_hosts or ())
    where = f"{username}@{cfg.login_host}:{cfg.login_port}"
    try:
        conn = await asyncio.wait_for(asyncssh.connect(
            cfg.login_host, cfg.login_port, username=username, known_hosts=known_hosts,
            client_factory=lambda: client, client_keys=[key_file] if key_file else None, agent_path=None,
            password_auth=password is not None, kbdint_auth=password is not None or otp is not None,
            public_key_auth=bool(key_file), gss_auth=False, host_based_auth=False,
            keepalive_interval=cfg.keepalive_interval, keepalive_count_max=3,
            config=None,
        ), cfg.connect_timeout)
    except asyncssh.PermissionDenied as exc:
        raise LoginFailed(f"login to cluster {cfg.cluster!r} as {username!r} refused: wrong username, "
                          f"password, one-time code or key ({exc.reason})") from None
    except asyncssh.HostKeyNotVerifiable as exc:
        raise LoginFailed(f"the host key of {cfg.login_host}:{cfg.login_port} is not trusted ({exc.reason}); "
                          f"the operator must add it to [sbatch] known_hosts") from None
    except asyncio.TimeoutError:
        raise DriverUnavailable(f"SSH to {where} did not complete within {cfg.connect_timeout:g} s") from None
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:  # the key or known_hosts file
        raise DriverRefused(f"cannot log in to {where}: {exc}") from None
    except (asyncssh.KeyExchangeFailed, asyncssh.ProtocolNotSupported, asyncssh.ProtocolError,
            asyncssh.IllegalUserName) as exc:  # the two sides cannot agree: no retry helps
        raise DriverRefused(f"SSH to {where} is not possible: {exc}") from None
    except (asyncssh.Error, OSError) as exc:  # refused, reset, unreachable, dropped
        raise DriverUnavailable(f"cannot reach the login node {cfg.login_host}:{cfg.login_port}: {exc}") from None
    except ValueError as exc:  # e.g. an unreadable key or known_hosts file
        raise DriverRefused(f"cannot log in to {where}: {exc}") from None
    finally:
        client.forget_secrets()
    method = "key" if key_file else "password"
    log.info("logged in to cluster %s as %s (%s)", cfg.cluster, username, method)
    return Connection(username, method, conn, client)
