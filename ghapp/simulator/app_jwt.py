"""Verification of GitHub App JWTs the way GitHub does it (RS256, iss, iat, exp rules)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

MAX_JWT_LIFETIME = 600
IAT_LEEWAY = 60

UNDECODABLE = "A JSON web token could not be decoded"
REQUIRES_AUTH = "Requires authentication"
BAD_ISS = "'Issuer' claim ('iss') must be an Integer"
BAD_IAT = (
    "'Issued at' claim ('iat') must be an Integer representing the time that the assertion "
    "was issued"
)
BAD_EXP = (
    "'Expiration time' claim ('exp') must be a numeric value representing the future time at "
    "which the assertion expires"
)
EXP_TOO_FAR = "'Expiration time' claim ('exp') is too far in the future"


class JwtRejected(Exception):
    """The JWT is not acceptable; ``message`` is what GitHub would answer with a 401."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def load_app_public_key(public_key_pem: bytes) -> RSAPublicKey:
    """The App's RSA public key; ValueError for anything else."""
    key = load_pem_public_key(public_key_pem)
    if not isinstance(key, RSAPublicKey):
        raise ValueError("a GitHub App's public key is an RSA key")
    return key


class AppJwtVerifier:
    """Checks ``Authorization: Bearer <JWT>`` headers against the App named by the JWT's
    ``iss`` (``public_key_of(app_id)`` gives its key, None for no such App), judging
    ``iat``/``exp`` by ``clock`` (the simulator's possibly skewed time)."""

    def __init__(
        self,
        public_key_of: Callable[[str], RSAPublicKey | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._public_key_of = public_key_of
        self._clock = clock

    def verify(self, authorization: str | None, now: float | None = None) -> dict[str, Any]:
        """Return the JWT's claims, or raise JwtRejected with GitHub's message."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise JwtRejected(REQUIRES_AUTH)
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise JwtRejected(UNDECODABLE) from None
        if header.get("alg") != "RS256":
            raise JwtRejected(UNDECODABLE)
        public_key = self._public_key_of(_issuer(token))
        if public_key is None:
            raise JwtRejected(UNDECODABLE)
        try:
            claims = jwt.decode(
                token,
                public_key,
                algorithms=["RS256"],
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "verify_iss": False,
                    "verify_aud": False,
                    "require": ["iss", "iat", "exp"],
                },
            )
        except jwt.MissingRequiredClaimError as exc:
            raise JwtRejected(_missing_claim_message(exc.claim)) from None
        except jwt.PyJWTError:
            raise JwtRejected(UNDECODABLE) from None
        self._check_claims(claims, self._clock() if now is None else now)
        return claims

    def _check_claims(self, claims: dict[str, Any], now: float) -> None:
        iss, iat, exp = claims["iss"], claims["iat"], claims["exp"]
        if not _is_int(iss) and not (isinstance(iss, str) and iss.isdigit()):
            raise JwtRejected(BAD_ISS)
        if not _is_int(iat) or iat > now + IAT_LEEWAY:
            raise JwtRejected(BAD_IAT)
        if not _is_int(exp) or exp <= now:
            raise JwtRejected(BAD_EXP)
        if exp - iat > MAX_JWT_LIFETIME:
            raise JwtRejected(EXP_TOO_FAR)


def _issuer(token: str) -> str:
    """The unverified ``iss`` claim, as a string (a missing or odd one: a malformed iss claim)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise JwtRejected(UNDECODABLE) from None
    iss = claims.get("iss")
    if iss is None:
        raise JwtRejected(BAD_ISS)
    if not _is_int(iss) and not (isinstance(iss, str) and iss.isdigit()):
        raise JwtRejected(BAD_ISS)
    return str(iss)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _missing_claim_message(claim: str) -> str:
    return {"iss": BAD_ISS, "iat": BAD_IAT, "exp": BAD_EXP}.get(claim, UNDECODABLE)
