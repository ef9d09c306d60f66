"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

Receivers verify with any Standard Webhooks library: the signed content is
``{webhook-id}.{webhook-timestamp}.{body}`` and the key is the base64-decoded secret
(after the ``whsec_`` prefix). Secrets are stored so we can sign; they are never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64


def generate_secret() -> str:
    """A new ``whsec_`` secret: base64 of 24 random bytes, as the spec recommends."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(MIN_SECRET_BYTES)).decode("ascii")


def secret_bytes(secret: str) -> bytes:
    """The HMAC key of ``secret`` (``whsec_`` optional); ValueError if not valid base64."""
    encoded = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("secret must be base64 (optionally prefixed with 'whsec_')") from None


def normalise_secret(secret: str) -> str:
    """``whsec_<base64>`` form of a caller-supplied secret, checking its length."""
    key = secret_bytes(secret.strip())
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(f"secret must decode to {MIN_SECRET_BYTES}-{MAX_SECRET_BYTES} bytes")
    return SECRET_PREFIX + base64.b64encode(key).decode("ascii")


def sign(secret: str, event_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` header value for one attempt."""
    content = f"{event_id}.{timestamp}.{body}".encode()
    digest = hmac.new(secret_bytes(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(secret: str, event_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers plus the content type."""
    return {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, event_id, timestamp, body),
    }
