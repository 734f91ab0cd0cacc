"""Users and API tokens: in their own SQLite file `<state_dir>/gateway.sqlite`, or, when
`[database] url` is PostgreSQL, in that database beside the jobs (tables `users`, `tokens`).

Tokens come from `jobvisor.secrets.new_token("jv")`; only their hash is stored, so a token is
shown once, when it is made. SQLite's file is opened in WAL mode with a busy timeout, so the CLI
(`jobvisor user add`, `token create`) can write it while `jobvisor up` serves requests. The
schema is Alembic's (`api_gateway.migrations`): `open` upgrades it, stamping a gateway.sqlite
made before migrations, and refuses one a newer jobvisor wrote.

Validated tokens are cached for `gateway.token_cache_seconds`: a revocation takes effect
within that time. Unknown tokens are not cached, so a new token works at once. A token's last
use is written at most once a minute per token (`LAST_USE_PRECISION`), so a busy client does
not turn every request into a write.

A token is listed by its id and a masked prefix of its value (`jv_AbCd…`): enough to tell
which one a person holds, never enough to use it.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import Boolean, Connection, DateTime, ForeignKey, String, delete, event, func, inspect, or_, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jobvisor.config import Config
from jobvisor.errors import AuthError, Conflict, InvalidRequest, NotFound, Unavailable
from jobvisor.ids import UserId
from jobvisor.migrate import Schema, upgrade
from jobvisor.secrets import hash_token, new_token

log = logging.getLogger(__name__)

TOKEN_PREFIX = "jv"
ADMIN_USER = UserId("admin")
_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_CACHE_LIMIT = 10_000
PREFIX_SHOWN = 7  # characters of a token kept to recognise it by: "jv_" and 4 of its secret
LAST_USE_PRECISION = 60.0  # seconds: a token's last use is written at most this often


def store_path(state_dir: Path) -> Path:
    return state_dir / "gateway.sqlite"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; they were stored as UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


class Base(DeclarativeBase):
    pass


class UserRow(Base):
    __tablename__ = "users"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TokenRow(Base):
    __tablename__ = "tokens"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user: Mapped[str] = mapped_column(ForeignKey("users.name"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(16), default="", server_default="")
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    @property
    def masked(self) -> str:
        """What a list shows of the token: its first characters, masked after them."""
        return (self.prefix or TOKEN_PREFIX + "_") + "…"

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        expires_at = _utc(self.expires_at)
        return "expired" if expires_at is not None and expires_at <= now else "active"


def _legacy(connection: Connection) -> bool:
    """A gateway.sqlite made before migrations: its tables are there, with no version."""
    return inspect(connection).has_table(UserRow.__tablename__)


SCHEMA = Schema(
    name="the user store",
    script_location="api_gateway:migrations",
    version_table="alembic_version_gateway",
    metadata=Base.metadata,
    legacy=_legacy,
)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated user."""

    user: UserId
    is_admin: bool
    token_id: str


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token just made: `token` is the only time the secret is visible."""

    id: str
    user: UserId
    token: str
    expires_at: datetime | None


class AuthStore:
    def __init__(self, url: str, *, cache_seconds: float = 2.0) -> None:
        self._url = url
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker | None = None
        self._last_use_written: dict[str, float] = {}  # token id -> monotonic time of the last write

    @classmethod
    def for_config(cls, config: Config) -> "AuthStore":
        """PostgreSQL's database when the jobs are there, else gateway.sqlite in the state dir."""
        url = config.database_url
        if make_url(url).get_backend_name() != "postgresql":
            url = f"sqlite+aiosqlite:///{store_path(config.state_dir)}"
        return cls(url, cache_seconds=config.gateway.token_cache_seconds)

    async def open(self) -> "AuthStore":
        url = make_url(self._url)
        sqlite = url.get_backend_name() == "sqlite"
        if sqlite and url.database not in (None, "", ":memory:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        await upgrade(self._url, SCHEMA)  # Unavailable, or SchemaTooNew: permanent
        engine = create_async_engine(self._url, connect_args={"timeout": 30})
        if sqlite:

            @event.listens_for(engine.sync_engine, "connect")
            def _pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 - SQLAlchemy's signature
                cursor = dbapi_conn.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA busy_timeout=30000")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.close()

        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        return self

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
            self._sessions = None

    async def __aenter__(self) -> "AuthStore":
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _session(self):  # noqa: ANN202
        if self._sessions is None:
            raise RuntimeError("AuthStore is not open")
        return self._sessions()

    # ------------------------------------------------------------------ users

    async def add_user(self, name: str, *, is_admin: bool = False) -> None:
        if not _USER_NAME.match(name or ""):
            raise InvalidRequest(
                f"user name {name!r} must start with a letter or digit, followed by up to 63 letters, digits, "
                "dots, dashes, underscores or @",
                field="name",
            )
        try:
            async with self._session() as session, session.begin():
                session.add(UserRow(name=name, is_admin=is_admin, created_at=_now()))
        except IntegrityError as exc:
            raise Conflict(f"user {name!r} already exists", field="name") from exc

    async def get_user(self, name: str) -> UserRow | None:
        async with self._session() as session:
            return await session.get(UserRow, name)

    async def list_users(self) -> list[tuple[UserRow, int]]:
        """Every user, by name, with the number of its tokens that still work."""
        now = _now()
        active = (
            select(TokenRow.user, func.count().label("n"))
            .where(TokenRow.revoked_at.is_(None))
            .where((TokenRow.expires_at.is_(None)) | (TokenRow.expires_at > now))
            .group_by(TokenRow.user)
            .subquery()
        )
        query = select(UserRow, func.coalesce(active.c.n, 0)).outerjoin(active, active.c.user == UserRow.name)
        async with self._session() as session:
            rows = (await session.execute(query.order_by(UserRow.name))).all()
        return [(row[0], int(row[1])) for row in rows]

    async def remove_user(self, name: str) -> int:
        """Remove a user and its tokens (its jobs stay, as they are); the number of tokens
        that went with it. NotFound for an unknown user; Conflict for the last admin, who
        alone could add another."""
        async with self._session() as session, session.begin():
            user = await session.get(UserRow, name)
            if user is None:
                raise NotFound(f"no user {name!r}", field="name")
            if user.is_admin:
                admins = (await session.execute(select(func.count()).where(UserRow.is_admin.is_(True)))).scalar_one()
                if admins <= 1:
                    raise Conflict(f"{name!r} is the last admin: add another admin first", field="name")
            hashes = list((await session.execute(select(TokenRow.token_hash).where(TokenRow.user == name))).scalars())
            await session.execute(delete(TokenRow).where(TokenRow.user == name))
            await session.execute(delete(UserRow).where(UserRow.name == name))
        for token_hash in hashes:
            self._cache.pop(token_hash, None)
        return len(hashes)

    async def has_users(self) -> bool:
        async with self._session() as session:
            return (await session.execute(select(UserRow.name).limit(1))).first() is not None

    async def ensure_admin(self) -> str | None:
        """On first start (no users at all) make user `admin` and return its new token."""
        if await self.has_users():
            return None
        try:
            await self.add_user(ADMIN_USER, is_admin=True)
        except Conflict:
            return None  # another process won the race
        issued = await self.create_token(ADMIN_USER, label="bootstrap")
        log.info("created user %s (admin) with token %s", ADMIN_USER, issued.id)
        return issued.token

    # ------------------------------------------------------------------ tokens

    async def create_token(
        self, user: str, *, expires_in: float | None = None, label: str = ""
    ) -> IssuedToken:
        if expires_in is not None and expires_in <= 0:
            raise InvalidRequest("expiry must be positive", field="expires")
        token = new_token(TOKEN_PREFIX)
        token_id = "tok_" + secrets.token_hex(6)
        now = _now()
        expires_at = now + timedelta(seconds=expires_in) if expires_in is not None else None
        async with self._session() as session, session.begin():
            if await session.get(UserRow, user) is None:
                raise NotFound(f"no user {user!r}; add it with `jobvisor user add {user}`", field="user")
            session.add(
                TokenRow(
                    id=token_id,
                    user=user,
                    token_hash=hash_token(token),
                    created_at=now,
                    expires_at=expires_at,
                    label=label,
                    prefix=token[:PREFIX_SHOWN],
                )
            )
        return IssuedToken(id=token_id, user=UserId(user), token=token, expires_at=expires_at)

    async def revoke_token(self, token_or_id: str) -> str:
        """Revoke by token id (`tok_...`) or by the token itself; returns the token id.
        Conflict for the last working token of any admin: after it nobody could reach the admin
        routes (a new token would need the server's state dir)."""
        if token_or_id.startswith(TOKEN_PREFIX + "_"):
            where = TokenRow.token_hash == hash_token(token_or_id)
        else:
            where = TokenRow.id == token_or_id
        async with self._session() as session, session.begin():
            row = (await session.execute(select(TokenRow).where(where))).scalar_one_or_none()
            if row is None:
                raise NotFound("no such token", field="token")
            if row.revoked_at is None:
                if await self._is_last_admin_token(session, row):
                    raise Conflict(f"{row.id} is the last working token of an admin ({row.user}): create another "
                                   f"first (jobvisor token create {row.user}), then revoke this one", field="id")
                await session.execute(update(TokenRow).where(TokenRow.id == row.id).values(revoked_at=_now()))
            token_id, token_hash = row.id, row.token_hash
        self._cache.pop(token_hash, None)
        return token_id

    @staticmethod
    async def _is_last_admin_token(session: Any, row: TokenRow) -> bool:
        now = _now()
        others = (await session.execute(
            select(func.count()).select_from(TokenRow).join(UserRow, UserRow.name == TokenRow.user).where(
                UserRow.is_admin.is_(True), TokenRow.id != row.id, TokenRow.revoked_at.is_(None),
                or_(TokenRow.expires_at.is_(None), TokenRow.expires_at > now),
            )
        )).scalar_one()
        if others:
            return False
        user = await session.get(UserRow, row.user)
        return user is not None and user.is_admin and row.state(now) == "active"

    async def list_tokens(self, user: str | None = None) -> list[TokenRow]:
        query = select(TokenRow).order_by(TokenRow.created_at)
        if user is not None:
            query = query.where(TokenRow.user == user)
        async with self._session() as session:
            return list((await session.execute(query)).scalars())

    async def authenticate(self, token: str) -> Principal:
        """The user a bearer token stands for; AuthError if it is unknown, expired or revoked."""
        if not token:
            raise AuthError("missing bearer token")
        token_hash = hash_token(token)
        now = time.monotonic()
        cached = self._cache.get(token_hash)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            async with self._session() as session:
                row = (
                    await session.execute(
                        select(TokenRow, UserRow.is_admin)
                        .join(UserRow, UserRow.name == TokenRow.user)
                        .where(TokenRow.token_hash == token_hash)
                    )
                ).first()
        except (SQLAlchemyError, OSError) as exc:
            raise Unavailable(f"user store unavailable: {exc}") from exc
        if row is None:
            self._cache.pop(token_hash, None)
            raise AuthError("invalid token")
        token_row, is_admin = row
        wall_now = _now()
        expires_at = _utc(token_row.expires_at)
        if token_row.revoked_at is not None:
            self._cache.pop(token_hash, None)
            raise AuthError("token has been revoked")
        if expires_at is not None and expires_at <= wall_now:
            self._cache.pop(token_hash, None)
            raise AuthError("token has expired")
        principal = Principal(user=UserId(token_row.user), is_admin=bool(is_admin), token_id=token_row.id)
        await self._note_use(token_row.id, wall_now)
        ttl = self._cache_seconds
        if expires_at is not None:
            ttl = min(ttl, (expires_at - wall_now).total_seconds())
        if ttl > 0:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[token_hash] = (principal, now + ttl)
        return principal

    async def _note_use(self, token_id: str, at: datetime) -> None:
        """Write the token's last use, at most once per LAST_USE_PRECISION; a failed write
        costs the request nothing."""
        now = time.monotonic()
        last = self._last_use_written.get(token_id)
        if last is not None and now - last < LAST_USE_PRECISION:
            return
        if len(self._last_use_written) >= _CACHE_LIMIT:
            self._last_use_written.clear()
        self._last_use_written[token_id] = now
        try:
            async with self._session() as session, session.begin():
                await session.execute(update(TokenRow).where(TokenRow.id == token_id).values(last_used_at=at))
        except (SQLAlchemyError, OSError) as exc:
            log.warning("token %s: its last use could not be written: %s", token_id, exc)


async def bootstrap_admin(store: AuthStore) -> str | None:
    """First start: create user `admin` and return its token (print it once); else None."""
    return await store.ensure_admin()
