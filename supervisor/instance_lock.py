"""One supervisor per database: the lock a supervisor takes before it opens anything.

Two supervisors on one state dir or one database would both assign event ids from the same
largest one, restore the same jobs and hold each other's agents' jobs; each corrupts the
other's view (`UNIQUE constraint failed: events.id`, jobs `lost` that were running). So a
supervisor takes, before its migrations, a lock that only the life of its process holds:

* **the state dir**: an exclusive, non-blocking `flock` on `supervisor.lock` in it (SQLite's
  database, the logs, the inputs and the run dirs live there), and on one beside a SQLite
  database kept elsewhere. The kernel drops a flock with the last descriptor of the open file,
  so a crash (even SIGKILL) never leaves a stale lock; the descriptor is not inherited by the
  agents the supervisor starts (Python's descriptors are close-on-exec), which outlive it.
* **a PostgreSQL database**: a session-level advisory lock (`pg_try_advisory_lock`) on a
  connection of its own, held open for the life of the supervisor: PostgreSQL drops it when
  the session ends, which a dead process's closed socket ends at once (and TCP keepalives, set
  for this session, end it within about a minute when the supervisor's machine vanishes).

Who holds the lock is written where the next one can read it: the file's content (JSON), or
the session's `application_name`, so the refusal names the holder's pid and URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
import socket
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import make_url

from jobvisor.config import Config
from jobvisor.errors import ConfigError, InUse, Unavailable

log = logging.getLogger(__name__)

LOCK_FILE = "supervisor.lock"  # in the state dir
# the advisory lock's two int4 keys: jobvisor's class ("jobv" in ASCII), then the supervisor's
ADVISORY_KEYS = (0x6A6F6276, 1)
# PostgreSQL keeps this many bytes of an application_name (NAMEDATALEN - 1)
APPLICATION_NAME_MAX = 63
# how often the lock's session is checked, and taken again when it was lost
DB_LOCK_CHECK = 30.0
# the server side's TCP keepalives on the lock's session: a vanished client is noticed within
# idle + interval * count seconds, and its lock dropped
DB_KEEPALIVES = {"tcp_keepalives_idle": "30", "tcp_keepalives_interval": "10", "tcp_keepalives_count": "3"}
DB_CONNECT_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class Holder:
    """The process that holds a lock, as the one refused is told."""

    what: str = "jobvisor"  # "jobvisor up", or a supervisor started otherwise
    pid: int | None = None
    url: str = ""  # the gateway's, where its users reach it
    host: str = ""  # the machine's name, or the address PostgreSQL saw it from

    @classmethod
    def this_process(cls, what: str, url: str) -> "Holder":
        return cls(what, os.getpid(), url, socket.gethostname())

    def describe(self) -> str:
        """'another jobvisor up (pid 20930, http://127.0.0.1:19765)'."""
        parts = []
        if self.pid is not None:
            elsewhere = self.host and self.host not in (socket.gethostname(), "127.0.0.1", "::1", "localhost")
            parts.append(f"pid {self.pid}" + (f" on {self.host}" if elsewhere else ""))
        if self.url:
            parts.append(self.url)
        return f"another {self.what}" + (f" ({', '.join(parts)})" if parts else "")

    # ------------------------------------------------------------ as a PostgreSQL session's name

    def application_name(self) -> str:
        """'jobvisor up pid=20930 http://127.0.0.1:19765', without the URL when too long."""
        name = f"{self.what} pid={self.pid}"
        with_url = f"{name} {self.url}"
        return with_url if self.url and len(with_url.encode()) <= APPLICATION_NAME_MAX else name[:APPLICATION_NAME_MAX]

    @classmethod
    def of_application_name(cls, name: str | None, address: str | None) -> "Holder":
        found = re.fullmatch(r"(?P<what>.+?) pid=(?P<pid>\d+)(?: (?P<url>\S+))?", name or "")
        if found is None:
            return cls(host=address or "")
        return cls(found["what"], int(found["pid"]), found["url"] or "", address or "")


class FileLock:
    """An exclusive flock on one file, with the holder written in it."""

    def __init__(self, path: Path, what: str, way_out: str) -> None:
        self.path = path
        self.what = what  # "the state dir /tmp/s", for the refusal
        self.way_out = way_out  # "give another --state-dir"
        self._fd: int | None = None

    def acquire(self, holder: Holder) -> None:
        """Take the lock, or raise InUse naming its holder. Never waits."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot open the lock file {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InUse(refusal(self.what, self._holder(), self.way_out)) from None
        except OSError as exc:  # a file system without locks (ENOLCK)
            os.close(fd)
            raise ConfigError(f"cannot lock {self.path}: {exc.strerror}") from exc
        self._fd = fd
        self.note(holder)

    def note(self, holder: Holder) -> None:
        """Write (again) who holds the lock, e.g. once the gateway's URL is known."""
        if self._fd is None:
            return
        data = json.dumps(asdict(holder)).encode()
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
        except OSError as exc:  # the lock holds all the same; only the next refusal says less
            log.warning("cannot write the holder into %s: %s", self.path, exc)

    def _holder(self) -> Holder:
        """Whoever wrote the file; it writes just after taking the lock, so an empty file is
        read again for a moment."""
        deadline = time.monotonic() + 0.5
        while True:
            try:
                data: Any = json.loads(self.path.read_bytes() or b"null")
            except (OSError, ValueError):
                data = None
            if isinstance(data, dict):
                try:
                    return Holder(str(data.get("what") or "jobvisor"), int(data["pid"]) if data.get("pid") else None,
                                  str(data.get("url") or ""), str(data.get("host") or ""))
                except (TypeError, ValueError):
                    return Holder()
            if time.monotonic() > deadline:
                return Holder()
            time.sleep(0.05)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # while still held: no one reads a holder that has gone
        os.close(fd)  # drops the flock


class DatabaseLock:
    """A session-level advisory lock on a PostgreSQL database, on a connection of its own
    (asyncpg's, outside SQLAlchemy's pool: a pooled connection could be returned, reset or
    recycled, and the lock with it)."""

    def __init__(self, url: str, check_every: float = DB_LOCK_CHECK) -> None:
        parsed = make_url(url)
        self.check_every = check_every
        # asyncpg's arguments as the store's engine gets them (host, port, ssl=... of the URL's query)
        _, self.connect_args = PGDialect_asyncpg().create_connect_args(parsed.set(drivername="postgresql+asyncpg"))
        self.shown = parsed.set(drivername="postgresql").render_as_string()  # a password as ***
        self._conn: Any = None
        self._holder = Holder()
        self._watch: asyncio.Task | None = None

    async def acquire(self, holder: Holder) -> None:
        """Take the lock, or raise InUse naming its holder (Unavailable: no database)."""
        self._holder = holder
        await self._take()
        self._watch = asyncio.create_task(self._keep(), name="database-lock")

    async def note(self, holder: Holder) -> None:
        """Rename the session after its holder (and take that name again after a reconnect)."""
        self._holder = holder
        try:
            await self._conn.execute("SELECT set_config('application_name', $1, false)", holder.application_name())
        except Exception as exc:  # noqa: BLE001 - the lock holds all the same; the next refusal says less
            log.warning("cannot rename the session holding the database lock: %s", exc)

    async def _take(self) -> None:
        import asyncpg

        try:
            conn = await asyncpg.connect(**{**self.connect_args, "timeout": DB_CONNECT_TIMEOUT, "server_settings": {
                **self.connect_args.get("server_settings", {}), "application_name": self._holder.application_name(),
                **DB_KEEPALIVES}})
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
            raise Unavailable(f"cannot open the database {self.shown}: {exc}") from exc
        try:
            if conn.get_server_version().major >= 14:  # a server's idle_session_timeout must not end it
                await conn.execute("SET idle_session_timeout = 0")
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *ADVISORY_KEYS):
                holder = await self._holder_of(conn)
                raise InUse(refusal(f"the database {self.shown}", holder, "give another [database] url"))
        except BaseException:
            await conn.close()
            raise
        self._conn = conn

    @staticmethod
    async def _holder_of(conn: Any) -> Holder:
        row = await conn.fetchrow(
            "SELECT a.application_name, host(a.client_addr) AS address FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 2 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            *ADVISORY_KEYS)
        return Holder.of_application_name(row["application_name"], row["address"]) if row else Holder()

    async def _keep(self) -> None:
        """The session is checked now and then; one that was lost (the server restarted, a
        network cut) is opened again and the lock taken again."""
        while True:
            await asyncio.sleep(self.check_every)
            try:
                await self._conn.fetchval("SELECT 1")
                continue
            except Exception as exc:  # noqa: BLE001 - whatever ended the session
                log.error("the session holding the database lock ended (%s); taking the lock again", exc)
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=2)
            try:
                await self._take()
                log.info("the database lock is held again")
            except InUse as exc:
                log.critical("%s: another supervisor took the database while this one lost its session; "
                             "stop one of them", exc)
            except Unavailable as exc:
                log.error("%s; trying again in %.0f s", exc, self.check_every)

    async def release(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)  # the session's end drops the lock


def refusal(what: str, holder: Holder, way_out: str) -> str:
    """'the state dir /tmp/s is in use by another jobvisor up (pid 20930, http://...); stop it
    first, or give another --state-dir'."""
    return f"{what} is in use by {holder.describe()}; stop it first, or {way_out}"


class SupervisorLock:
    """What one supervisor holds for its life: its state dir, and its database when that is
    elsewhere (a SQLite file outside the state dir, or PostgreSQL)."""

    def __init__(self, files: list[FileLock], database: DatabaseLock | None, holder: Holder) -> None:
        self.files = files
        self.database = database
        self.holder = holder

    @classmethod
    async def take(cls, config: Config, what: str) -> "SupervisorLock":
        """Before anything of the state dir or the database is opened. InUse when another
        supervisor holds one of them; nothing is left held then."""
        holder = Holder.this_process(what, config.gateway_url)
        state_dir = config.state_dir
        files = [FileLock(state_dir / LOCK_FILE, f"the state dir {state_dir}", "give another --state-dir")]
        url = make_url(config.database_url)
        database = None
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            db_file = Path(url.database).resolve()
            if db_file.parent != state_dir.resolve():
                files.append(FileLock(db_file.with_name(db_file.name + ".lock"), f"the database {db_file}",
                                      "give another [database] url"))
        elif url.get_backend_name() == "postgresql":
            database = DatabaseLock(config.database_url)
        lock = cls([], database, holder)
        try:
            for file in files:
                await asyncio.to_thread(file.acquire, holder)  # a refusal reads the holder, waiting a moment
                lock.files.append(file)
            if database is not None:
                await database.acquire(holder)
        except BaseException:
            lock.database = None
            await lock.release()
            raise
        return lock

    async def note_url(self, url: str) -> None:
        """The gateway's URL as bound (its port may have been 0), for the next refusal."""
        self.holder = replace(self.holder, url=url)
        for file in self.files:
            file.note(self.holder)
        if self.database is not None:
            await self.database.note(self.holder)

    async def release(self) -> None:
        if self.database is not None:
            await self.database.release()
        for file in reversed(self.files):
            file.release()
