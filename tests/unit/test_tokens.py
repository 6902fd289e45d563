"""The App's JWT, token scopes, and the cipher that seals cached installation tokens."""

from __future__ import annotations

import jwt
import pytest
from cryptography.fernet import InvalidToken
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from worker.tokens import app_jwt, cache_cipher, parse_expiry, scope_id

NOW = 1_700_000_000.9


def _key() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


@pytest.fixture(scope="module")
def key() -> tuple[bytes, bytes]:
    return _key()


@pytest.fixture(scope="module")
def other_key() -> tuple[bytes, bytes]:
    return _key()


def test_app_jwt_is_rs256_signed_by_the_apps_key(key: tuple[bytes, bytes]) -> None:
    token = app_jwt(app_id="4242", private_key=key[0], now=NOW)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, key[1], algorithms=["RS256"], options={"verify_exp": False})
    assert claims["iss"] == "4242"
    assert isinstance(claims["iss"], str)
    assert claims["iat"] == int(NOW) - 60
    assert claims["exp"] == claims["iat"] + 600


def test_app_jwt_issuer_is_a_string_even_for_an_int_id(key: tuple[bytes, bytes]) -> None:
    token = app_jwt(app_id=4242, private_key=key[0], now=NOW)  # type: ignore[arg-type]
    claims = jwt.decode(token, key[1], algorithms=["RS256"], options={"verify_exp": False})
    assert claims["iss"] == "4242"


def test_app_jwt_does_not_verify_under_another_key(
    key: tuple[bytes, bytes], other_key: tuple[bytes, bytes]
) -> None:
    token = app_jwt(app_id="1", private_key=key[0], now=NOW)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other_key[1], algorithms=["RS256"], options={"verify_exp": False})


def test_scope_id_ignores_order() -> None:
    a = scope_id((3, 1, 2), {"contents": "read", "metadata": "read"})
    b = scope_id((1, 2, 3), {"metadata": "read", "contents": "read"})
    assert a == b


@pytest.mark.parametrize(
    ("repository_ids", "permissions"),
    [
        ((1, 2), {"contents": "read"}),
        ((1,), {"contents": "write"}),
        ((1,), {"contents": "read", "metadata": "read"}),
        ((12,), {"contents": "read"}),
        ((), {"contents": "read"}),
        ((1,), {}),
    ],
)
def test_scope_id_differs_for_different_scopes(
    repository_ids: tuple[int, ...], permissions: dict[str, str]
) -> None:
    assert scope_id(repository_ids, permissions) != scope_id((1,), {"contents": "read"})


def test_cache_cipher_round_trips(key: tuple[bytes, bytes]) -> None:
    sealed = cache_cipher(key[0]).encrypt(b"ghs_token")
    assert b"ghs_token" not in sealed
    assert cache_cipher(key[0]).decrypt(sealed) == b"ghs_token"


def test_cache_cipher_from_another_key_cannot_decrypt(
    key: tuple[bytes, bytes], other_key: tuple[bytes, bytes]
) -> None:
    sealed = cache_cipher(key[0]).encrypt(b"ghs_token")
    with pytest.raises(InvalidToken):
        cache_cipher(other_key[0]).decrypt(sealed)


def test_token_cache_key_material_gives_a_different_cipher(key: tuple[bytes, bytes]) -> None:
    sealed = cache_cipher(key[0]).encrypt(b"ghs_token")
    with pytest.raises(InvalidToken):
        cache_cipher(key[0], "cache-key-material").decrypt(sealed)


def test_token_cache_key_material_survives_a_key_rotation(
    key: tuple[bytes, bytes], other_key: tuple[bytes, bytes]
) -> None:
    sealed = cache_cipher(key[0], "cache-key-material").encrypt(b"ghs_token")
    assert cache_cipher(other_key[0], "cache-key-material").decrypt(sealed) == b"ghs_token"


def test_parse_expiry_reads_githubs_utc_timestamps() -> None:
    assert parse_expiry("2026-01-01T00:00:00Z") == 1_767_225_600.0
    assert parse_expiry("2026-01-01T02:00:00+02:00") == 1_767_225_600.0
