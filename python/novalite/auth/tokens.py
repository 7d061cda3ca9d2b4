"""Signed, expiring bearer tokens (docs/control-plane.md, Tokens).

A token is ``base64url(claims JSON) + "." + base64url(HMAC-SHA256(secret, first
part))``, both parts without padding. The claims are ``{project_id, user_id, roles,
iat, exp, jti}`` (times in whole seconds since the epoch). Nothing is stored: any
service holding the shared secret checks a token on its own, and a token stays valid
until it expires or is revoked: the signer keeps the ids of the revoked ones
(``Revocations``), which every service refreshes from the database.

The signature covers the encoded first part, so a verifier checks it before it
parses anything the caller sent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable

from novalite import errors

ADMIN = "admin"
MEMBER = "member"
READER = "reader"
SERVICE = "service"
# Every role a token may carry: admins manage the cloud, members use their
# project, readers may only look at it (Keystone's default roles), services are
# the control plane's own processes calling each other.
ROLES = frozenset({ADMIN, MEMBER, READER, SERVICE})
# Keystone's implied roles: a token carries every role the assigned one implies.
IMPLIED_ROLES = {ADMIN: frozenset({ADMIN, MEMBER, READER}),
                 MEMBER: frozenset({MEMBER, READER}),
                 READER: frozenset({READER})}

# CreateTokenRequest's bounds: 1 second to 30 days; unset means an hour.
MIN_TTL_SECONDS = 1
MAX_TTL_SECONDS = 30 * 24 * 3600
DEFAULT_TTL_SECONDS = 3600
MIN_SECRET_BYTES = 16
# Far above any real token (a few hundred bytes); bounds the work done on junk.
MAX_TOKEN_CHARS = 4096
_ID_MAX = 255
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Claims:
    """Who the caller is, as a verified token says."""

    project_id: str
    user_id: str
    roles: frozenset[str]
    issued_at: datetime
    expires_at: datetime
    token_id: str

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    def has_any_role(self, roles: Iterable[str]) -> bool:
        return not self.roles.isdisjoint(roles)


# How many genuine tokens a signer remembers (it forgets them all when full).
GENUINE_CACHE_SIZE = 4096


class Revocations:
    """The ids of tokens revoked before their expiry, each with that expiry. A
    service adds what it revokes at once, and ``replace``s the whole set with the
    database's every second or so (services.runner), so a token revoked anywhere is
    refused everywhere soon after, and at once where it was revoked."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[str, datetime] = {}

    def add(self, token_id: str, expires_at: datetime) -> None:
        with self._lock:
            self._ids[token_id] = expires_at

    def replace(self, ids: dict[str, datetime]) -> None:
        with self._lock:
            self._ids = dict(ids)

    def __contains__(self, token_id: object) -> bool:
        return token_id in self._ids


class TokenSigner:
    """Issues and verifies tokens with one shared secret.

    ``clock`` returns the current time in seconds since the epoch (tests pass
    their own).
    """

    def __init__(self, secret: bytes, *, clock: Callable[[], float] = time.time) -> None:
        if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the token secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self._clock = clock
        self.revocations = Revocations()
        # Tokens already found genuine, and their claims: a client sends the same
        # token with every call, and checking it again cost ~10% of a cheap call.
        # Expiry is still checked on every call.
        self._genuine: dict[str, Claims] = {}

    def now(self) -> float:
        """The signer's clock: seconds since the epoch."""
        return self._clock()

    def issue(self, project_id: str, user_id: str, roles: Iterable[str],
              ttl_seconds: int = DEFAULT_TTL_SECONDS) -> str:
        """A token for ``user_id`` acting in ``project_id`` with ``roles``.

        Raises errors.Invalid naming the field (as CreateTokenRequest spells it)
        for an empty or over-long id, an unknown role, no role, or a lifetime
        outside 1 second .. 30 days.
        """
        return self.issue_with_claims(project_id, user_id, roles, ttl_seconds)[0]

    def issue_with_claims(self, project_id: str, user_id: str, roles: Iterable[str],
                          ttl_seconds: int = DEFAULT_TTL_SECONDS) -> tuple[str, Claims]:
        """As issue(), and also the claims the token carries (its expiry, for one)."""
        _check_id("project_id", project_id)
        _check_id("user_id", user_id)
        if isinstance(roles, str):
            raise errors.Invalid("roles", "give a list of roles, not one string")
        role_set = frozenset(roles)
        unknown = sorted(r for r in role_set if r not in ROLES)
        if unknown:
            raise errors.Invalid("roles", f"unknown role {unknown[0]!r}; "
                                          f"known roles: {', '.join(sorted(ROLES))}")
        if not role_set:
            raise errors.Invalid("roles", "at least one role is required")
        if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) \
                or not MIN_TTL_SECONDS <= ttl_seconds <= MAX_TTL_SECONDS:
            raise errors.Invalid("ttl_seconds", f"must be an integer from {MIN_TTL_SECONDS} "
                                                f"to {MAX_TTL_SECONDS}, got {ttl_seconds!r}")
        issued_at = int(self._clock())
        body = {
            "project_id": project_id,
            "user_id": user_id,
            "roles": sorted(role_set),
            "iat": issued_at,
            "exp": issued_at + ttl_seconds,
            "jti": uuid.uuid4().hex,
        }
        payload = _b64encode(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
        token = f"{payload}.{_b64encode(self._sign(payload))}"
        return token, _claims(body)

    def verify(self, token: str) -> Claims:
        """The claims of a genuine, unexpired, unrevoked token.

        Raises errors.Unauthenticated saying whether the token is malformed, forged
        (or signed with another secret), expired or revoked.
        """
        claims = self._genuine.get(token) if isinstance(token, str) else None
        if claims is None:
            claims = self._genuine_claims(token)
            if len(self._genuine) >= GENUINE_CACHE_SIZE:
                self._genuine.clear()
            self._genuine[token] = claims
        now = self._clock()
        if now >= claims.expires_at.timestamp():
            raise errors.Unauthenticated(
                f"token expired at {claims.expires_at.strftime('%Y-%m-%dT%H:%M:%SZ')}")
        if claims.token_id in self.revocations:
            raise errors.Unauthenticated("token revoked")
        return claims

    def _genuine_claims(self, token: str) -> Claims:
        """The claims of a token this signer signed, expired or not."""
        if not isinstance(token, str) or not token:
            raise errors.Unauthenticated("malformed token: empty")
        if len(token) > MAX_TOKEN_CHARS:
            raise errors.Unauthenticated(f"malformed token: longer than {MAX_TOKEN_CHARS} characters")
        parts = token.split(".")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise errors.Unauthenticated(
                "malformed token: expected two base64url parts separated by '.'")
        payload, signature_text = parts
        signature = _b64decode(signature_text, "signature")
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise errors.Unauthenticated(
                "token signature does not match: forged, altered, or signed with another secret")
        raw = _b64decode(payload, "claims")
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise errors.Unauthenticated("malformed token: claims are not JSON") from None
        if not isinstance(body, dict):
            raise errors.Unauthenticated("malformed token: claims are not a JSON object")
        return _claims(body)

    def _sign(self, payload: str) -> bytes:
        return hmac.new(self._secret, payload.encode("ascii"), hashlib.sha256).digest()


class RefreshingToken:
    """A token source for a long-running process: calling it returns a valid token
    for the given identity, issuing a new one once the last has used up ``refresh``
    of its lifetime. Internal services use one with role ``service``.
    """

    def __init__(self, signer: TokenSigner, project_id: str, user_id: str,
                 roles: Iterable[str], ttl_seconds: int = DEFAULT_TTL_SECONDS,
                 *, refresh: float = 0.5, clock: Callable[[], float] = time.time) -> None:
        if not 0.0 < refresh < 1.0:
            raise ValueError("refresh must be a fraction of the lifetime between 0 and 1")
        self._signer = signer
        self._identity = (project_id, user_id, frozenset(roles), ttl_seconds)
        self._refresh_after = ttl_seconds * refresh
        self._clock = clock
        self._lock = threading.Lock()
        self._token = ""
        self._renew_at = 0.0

    def __call__(self) -> str:
        with self._lock:
            now = self._clock()
            if not self._token or now >= self._renew_at:
                project_id, user_id, roles, ttl = self._identity
                self._token = self._signer.issue(project_id, user_id, roles, ttl)
                self._renew_at = now + self._refresh_after
            return self._token


def _check_id(field: str, value: object) -> None:
    if not isinstance(value, str) or not 1 <= len(value) <= _ID_MAX:
        raise errors.Invalid(field, f"must be 1 to {_ID_MAX} characters")
    if not value.isprintable():
        raise errors.Invalid(field, "must not contain control characters")


def _claims(body: dict[str, object]) -> Claims:
    """Claims from a token's decoded JSON body; Unauthenticated if any is ill-typed."""
    def text(key: str) -> str:
        value = body.get(key)
        if not isinstance(value, str) or not value:
            raise errors.Unauthenticated(f"malformed token: claim {key!r} must be a non-empty string")
        return value

    def seconds(key: str) -> datetime:
        value = body.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise errors.Unauthenticated(f"malformed token: claim {key!r} must be an integer")
        try:
            return datetime.fromtimestamp(value, timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise errors.Unauthenticated(f"malformed token: claim {key!r} is out of range") from None

    roles = body.get("roles")
    if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
        raise errors.Unauthenticated("malformed token: claim 'roles' must be a non-empty list of strings")
    unknown = sorted(set(roles) - ROLES)
    if unknown:
        raise errors.Unauthenticated(f"malformed token: unknown role {unknown[0]!r}")
    issued_at, expires_at = seconds("iat"), seconds("exp")
    if expires_at <= issued_at:
        raise errors.Unauthenticated("malformed token: 'exp' is not after 'iat'")
    return Claims(project_id=text("project_id"), user_id=text("user_id"),
                  roles=frozenset(roles), issued_at=issued_at, expires_at=expires_at,
                  token_id=text("jti"))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str, part: str) -> bytes:
    # Only the unpadded URL-safe alphabet that _b64encode produces is accepted, so
    # one token has one spelling.
    if not _B64URL.match(text) or len(text) % 4 == 1:
        raise errors.Unauthenticated(f"malformed token: {part} is not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise errors.Unauthenticated(f"malformed token: {part} is not base64url") from None
    if _b64encode(data) != text:  # stray bits in the last character
        raise errors.Unauthenticated(f"malformed token: {part} is not canonical base64url")
    return data
