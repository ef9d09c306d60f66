"""Bearer-token authentication: tokens are kept only as SHA-256 hashes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

from sqlalchemy import select

from monitor.store.database import Database
from monitor.store.models import ApiToken

TOKEN_PREFIX = "thm_"
CACHE_SECONDS = 5.0


def hash_token(token: str) -> str:
    """SHA-256 hex digest; tokens are random, so no salt or slow hash is needed."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(db: Database, name: str) -> str:
    """Store a new token's hash and return the token (shown once)."""
    token = new_token()
    with db.write_session() as session:
        session.add(ApiToken(name=name, token_hash=hash_token(token)))
    return token


class TokenVerifier:
    """Checks presented tokens against configured ones and the stored hashes."""

    def __init__(self, db: Database, configured: str) -> None:
        self._db = db
        self._configured = [hash_token(t.strip()) for t in configured.split(",") if t.strip()]
        self._stored: list[str] = []
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def _stored_hashes(self) -> list[str]:
        """Hashes from the database, refreshed every few seconds (new tokens work quickly)."""
        with self._lock:
            if time.monotonic() - self._loaded_at > CACHE_SECONDS:
                with self._db.read_session() as session:
                    self._stored = list(session.scalars(select(ApiToken.token_hash)))
                self._loaded_at = time.monotonic()
            return self._stored

    def is_valid(self, token: str | None) -> bool:
        """True when the token matches one we know; every candidate is compared (constant time)."""
        return self._matches(token, self._stored_hashes())

    def cached_verdict(self, token: str | None) -> bool | None:
        """The answer from memory, or None when the stored hashes are due a database refresh.

        Why: the event loop can answer almost every request without a thread hop, which
        under load costs more than the check itself.
        """
        if time.monotonic() - self._loaded_at > CACHE_SECONDS:
            return None
        return self._matches(token, self._stored)

    def _matches(self, token: str | None, stored: list[str]) -> bool:
        """Compare against every known hash (constant time, no early exit)."""
        if not token:
            return False
        presented = hash_token(token)
        matched = False
        for known in self._configured + stored:
            matched |= hmac.compare_digest(presented, known)
        return matched

    @property
    def has_any(self) -> bool:
        """Whether any token exists at all (serve warns when none does)."""
        return bool(self._configured or self._stored_hashes())
