"""Authenticate as the App (a JWT) and as an installation (a short-lived token, cached in Redis).

Tokens are cached per installation and scope, encrypted with a key derived from the App's
private key, shared by every worker, and minted under a Redis lock so a burst mints once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import jwt
import redis
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from redis.exceptions import LockError

from ghapp.core import metrics, redis_keys

from .failures import RateLimited, Transient, waits_in_place
from .github_api import ClockSkew, GitHubAPI

log = logging.getLogger("ghapp.worker.tokens")
T = TypeVar("T")

JWT_BACKDATE = 60  # seconds: GitHub's advice against clock drift
JWT_LIFETIME = 600  # GitHub's maximum
REFRESH_MARGIN = 300  # a cached token is reused until 5 minutes before it expires
# Held while minting: longer than urllib3's retries plus a short rate-limit wait can take.
LOCK_TIMEOUT = 120


def app_jwt(*, app_id: str, private_key: bytes, now: float) -> str:
    """The App's JWT: RS256, ``iat`` backdated 60 s, ``exp`` 10 minutes after ``iat``."""
    issued = int(now) - JWT_BACKDATE
    claims = {"iat": issued, "exp": issued + JWT_LIFETIME, "iss": str(app_id)}
    return jwt.encode(claims, private_key, algorithm="RS256")


def cache_cipher(private_key: bytes, key_material: str | None = None) -> Fernet:
    """The Fernet key for cached tokens: from ``key_material`` if set, else from the App's key."""
    secret = key_material.encode() if key_material else private_key
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"ghapp token cache", info=b"fernet-v1"
    ).derive(secret)
    return Fernet(base64.urlsafe_b64encode(derived))


def scope_id(repository_ids: tuple[int, ...], permissions: Mapping[str, str]) -> str:
    """A short stable name for a token's scope (which repositories, which permissions)."""
    canonical = json.dumps(
        {
            "repository_ids": sorted(repository_ids),
            "permissions": dict(sorted(permissions.items())),
        },
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def parse_expiry(expires_at: str) -> float:
    return datetime.fromisoformat(expires_at.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class TokenScope:
    """Which repositories and permissions a token is narrowed to."""

    repository_ids: tuple[int, ...]
    permissions: Mapping[str, str]

    @property
    def id(self) -> str:
        return scope_id(self.repository_ids, self.permissions)


@dataclass(frozen=True)
class Token:
    """An installation token; ``minted_at`` is set when this call minted it (else None)."""

    value: str = field(repr=False)
    expires_at: float
    minted_at: float | None = None


@dataclass
class TokenSource:
    """Installation tokens for one App, cached in ``connection``."""

    connection: redis.Redis
    api: GitHubAPI
    app_id: str
    private_key: bytes = field(repr=False)
    cipher: Fernet = field(repr=False)
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep

    def github_now(self) -> float:
        """Our clock corrected by the offset GitHub's answers taught us (shared in Redis)."""
        offset = self.connection.get(redis_keys.CLOCK_OFFSET)
        return self.clock() + (float(offset) if offset else 0.0)

    def app_jwt(self) -> str:
        return app_jwt(app_id=self.app_id, private_key=self.private_key, now=self.github_now())

    def call_as_app(self, call: Callable[[str], T]) -> T:
        """Run ``call(jwt)``; on clock skew, learn GitHub's offset and try once more; wait out
        a short rate limit in place (a long one is raised for the job to reschedule)."""
        skew_retried = False
        while True:
            try:
                return call(self.app_jwt())
            except ClockSkew as exc:
                if skew_retried:
                    raise
                skew_retried = True
                log.warning("correcting for GitHub's clock: %+.0f s", exc.offset)
                self.connection.set(redis_keys.CLOCK_OFFSET, repr(exc.offset))
            except RateLimited as exc:
                if not waits_in_place(exc):
                    raise
                log.warning("%s: waiting", exc)
                self.sleep(exc.wait)

    def _cached(self, key: str, scope: str) -> Token | None:
        raw = self.connection.hget(key, scope)
        if raw is None:
            return None
        try:
            entry = json.loads(self.cipher.decrypt(raw))
        except (InvalidToken, ValueError):
            return None  # written with another key, or damaged: mint a fresh one
        if entry["expires_at"] - self.github_now() <= REFRESH_MARGIN:
            return None
        return Token(str(entry["token"]), float(entry["expires_at"]))

    def token(self, installation_id: int, scope: TokenScope) -> Token:
        """A token for exactly this scope, from the cache or freshly minted (once per burst)."""
        repository_ids, permissions = scope.repository_ids, scope.permissions
        scope_key = scope.id
        key = redis_keys.tokens(installation_id)
        cached = self._cached(key, scope_key)
        if cached:
            return cached
        lock = self.connection.lock(
            redis_keys.token_lock(installation_id, scope_key),
            timeout=LOCK_TIMEOUT,
            blocking_timeout=LOCK_TIMEOUT,
        )
        if not lock.acquire():
            raise Transient(f"another worker held the token lock for {LOCK_TIMEOUT} s")
        try:
            cached = self._cached(key, scope_key)
            if cached:
                return cached
            answer = self.call_as_app(
                lambda bearer: self.api.create_installation_token(
                    bearer, installation_id, repository_ids=repository_ids, permissions=permissions
                )
            )
            metrics.count_quietly(self.connection, "ghapp_token_mints_total")
            token = Token(
                str(answer["token"]), parse_expiry(str(answer["expires_at"])), self.clock()
            )
            sealed = self.cipher.encrypt(
                json.dumps({"token": token.value, "expires_at": token.expires_at}).encode()
            )
            with self.connection.pipeline() as pipe:
                pipe.hset(key, scope_key, sealed)
                pipe.expire(key, max(1, int(token.expires_at - self.github_now())))
                pipe.execute()
            log.info(
                "minted a token for installation %s (scope %s, expires %s)",
                installation_id,
                scope_key[:8],
                answer["expires_at"],
            )
            return token
        finally:
            try:
                lock.release()
            except LockError:
                pass  # expired while minting: another worker may mint too, which is harmless

    def forget(self, installation_id: int, scope: TokenScope) -> None:
        """Drop one cached token (GitHub refused it)."""
        self.connection.hdel(redis_keys.tokens(installation_id), scope.id)
