"""A real PostgreSQL server for the tests and `bench/throughput`: an unprivileged cluster in a
temporary directory, on a free loopback port, stopped (and removed) by whoever started it.

Debian's `postgresql` package provides the binaries (`etc/testbed/start-postgres.sh`
installs it). `initdb` refuses to run as root, so as root the cluster belongs to the
`postgres` user; otherwise to the user running the tests. Nothing system-wide is started or
changed. Each test gets a database of its own (`create_database`), so tests never see each
other's rows.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import asyncpg

from tests.harness import free_port

SUPERUSER = "jv"
HOW_TO_ENABLE = ("install Debian's postgresql package (as root, `bash etc/testbed/start-postgres.sh` does; "
                 "or any PostgreSQL whose initdb and pg_ctl are on PATH) to run the PostgreSQL tests")
# for tests: durability off (the cluster is thrown away), so CREATE DATABASE and commits are fast
FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries here, or the cluster did not start (the message says why)."""


def bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: Debian's newest /usr/lib/postgresql/N/bin, else PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    if found:
        return found[-1].parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


class PostgresCluster:
    """`settings`: server options (`-c key=value`), e.g. FAST for tests; none for a benchmark
    that should pay what a real server pays."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        self.settings = dict(settings or {})
        self.bin = bin_dir()
        self.root: Path | None = None
        self.port = 0
        self._owner: str | None = "postgres" if os.geteuid() == 0 else None

    def _run(self, *argv: str, timeout: float = 120) -> None:
        assert self.bin is not None
        try:
            subprocess.run([str(self.bin / argv[0]), *argv[1:]], check=True, capture_output=True, text=True,
                           timeout=timeout, user=self._owner, cwd=self.root, stdin=subprocess.DEVNULL)
        except subprocess.CalledProcessError as exc:
            raise PostgresUnavailable(f"{argv[0]} failed: {exc.stderr.strip() or exc.stdout.strip()}") from exc
        except subprocess.TimeoutExpired as exc:
            raise PostgresUnavailable(f"{argv[0]} took more than {timeout} s") from exc

    def start(self) -> "PostgresCluster":
        if self.bin is None:
            raise PostgresUnavailable("no PostgreSQL binaries (initdb) found")
        if self._owner is not None:
            try:
                pwd.getpwnam(self._owner)
            except KeyError:
                raise PostgresUnavailable(f"running as root, and there is no {self._owner!r} user to run initdb as") from None
        # under /tmp, not $TMPDIR: the `postgres` user must reach it, and the server's unix socket
        # path (in it) must stay under the kernel's 107 bytes
        self.root = Path(tempfile.mkdtemp(prefix="jobvisor-pg-", dir="/tmp" if os.path.isdir("/tmp") else None))
        if self._owner is not None:
            shutil.chown(self.root, self._owner)
        self._run("initdb", "-D", str(self.root / "data"), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = ["-c listen_addresses=127.0.0.1", f"-k {self.root}"]
        options += [f"-c {key}={value}" for key, value in self.settings.items()]
        for attempt in range(3):  # the free port may be taken before the server binds it
            self.port = free_port()
            try:
                self._run("pg_ctl", "-D", str(self.root / "data"), "-l", str(self.root / "log"), "-w", "-t", "60",
                          "-o", " ".join([f"-p {self.port}", *options]), "start")
                return self
            except PostgresUnavailable:
                if attempt == 2:
                    raise PostgresUnavailable(f"the server did not start; its log ends with: {self.log_tail()}") from None
        return self

    def log_tail(self) -> str:
        try:
            return (self.root / "log").read_text()[-2000:] if self.root else ""
        except OSError:
            return ""

    def stop(self) -> None:
        if self.root is None:
            return
        try:
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "-t", "30", "stop", timeout=60)
        except PostgresUnavailable:
            pass  # never started, or gone already
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    async def _admin(self) -> Any:
        return await asyncpg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, database="postgres", timeout=30)

    async def admin(self, sql: str) -> None:
        """Run `sql` as the superuser in the `postgres` database (tests that break things)."""
        conn = await self._admin()
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def create_database(self, prefix: str = "t") -> str:
        """A new, empty database; returns its URL."""
        name = f"{prefix}_{secrets.token_hex(6)}"
        conn = await self._admin()
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)

    async def drop_database(self, url: str) -> None:
        """Drop the database of `url`, closing whatever connections a test left open in it."""
        name = url.rsplit("/", 1)[1]
        conn = await self._admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
