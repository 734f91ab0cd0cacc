"""Secrets that live in files of the state dir (never defaults in code) and token hashing."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path


def new_token(prefix: str) -> str:
    """A random bearer token: 32 bytes of entropy, prefixed so a leaked one is recognisable."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    """SHA-256 of a token. Tokens are 256-bit random values, so a fast hash is safe (no
    dictionary to guess from) and lookups by hash stay O(1)."""
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def load_or_create_secret(path: Path) -> str:
    """Read the secret in `path`, creating it (mode 0600, atomically) on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    value = secrets.token_urlsafe(32)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    try:
        os.link(tmp, path)  # fails if another process created it first: theirs wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()


def internal_secret_path(state_dir: Path) -> Path:
    return state_dir / "internal_secret"
