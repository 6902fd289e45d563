"""RSA key generation for a simulated GitHub App (tests and the demo make keys at runtime)."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def generate_app_key() -> tuple[bytes, bytes]:
    """Return ``(private_pem, public_pem)`` for a fresh 2048-bit RSA key.

    The private key is unencrypted PKCS8 PEM, the public key SubjectPublicKeyInfo PEM.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    return private_pem, public_pem
