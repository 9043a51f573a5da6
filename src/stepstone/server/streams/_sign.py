"""Signing for the reserved subscription APIs: Ed25519 webhook signatures (published as a JWKS)
and HMAC callback tokens that fence stale wake generations.

Webhook receivers verify ``Webhook-Signature: t=<unix>,kid=<key id>,ed25519=<base64url>`` over
``"<t>.<raw body>"`` with the key from ``__ds/jwks.json``. Keys live for the process (as in the
reference server): a restart publishes a new key under a new ``kid``.

Needs the ``cryptography`` package (``server`` extra) for Ed25519, which the standard library lacks;
imported only when subscriptions are enabled. Never imported by ``stepstone/__init__.py``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from typing import Any

__all__ = ["CallbackTokens", "WebhookSigner"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class WebhookSigner:
    """An Ed25519 key pair for this process, its JWKS, and ``Webhook-Signature`` values."""

    def __init__(self) -> None:
        try:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
            from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
        except ImportError as exc:  # pragma: no cover - the server extra installs it
            raise RuntimeError(
                "webhook subscriptions sign with Ed25519, which needs the 'cryptography' package: "
                "pip install 'stepstone[server]'"
            ) from exc
        self._key = Ed25519PrivateKey.generate()
        raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.x = b64url(raw)
        thumbprint = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": self.x}, separators=(",", ":"))
        self.kid = "ds_" + b64url(hashlib.sha256(thumbprint.encode()).digest())

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": self.x, "kid": self.kid, "use": "sig", "alg": "EdDSA"}]}

    def sign(self, body: str, now: float | None = None) -> str:
        timestamp = int(time.time() if now is None else now)
        signature = self._key.sign(f"{timestamp}.{body}".encode())
        return f"t={timestamp},kid={self.kid},ed25519={b64url(signature)}"


class CallbackTokens:
    """Bearer tokens ``base64url(payload).base64url(hmac)`` naming a subscription and a wake
    generation; valid for an hour."""

    def __init__(self, lifetime: float = 3600.0) -> None:
        self._key = os.urandom(32)
        self.lifetime = lifetime

    def issue(self, subject: str, epoch: int) -> str:
        payload = {"sub": subject, "epoch": epoch, "exp": int(time.time() + self.lifetime), "jti": os.urandom(8).hex()}
        encoded = b64url(json.dumps(payload, separators=(",", ":")).encode())
        return f"{encoded}.{self._mac(encoded)}"

    def check(self, token: str, subject: str) -> tuple[str | None, int]:
        """``(None, epoch)`` for a valid token, else ``(error code, 0)``."""
        encoded, _, mac = token.partition(".")
        if not mac or not hmac.compare_digest(mac, self._mac(encoded)):
            return "TOKEN_INVALID", 0
        try:
            payload = json.loads(_unb64url(encoded))
        except ValueError:
            return "TOKEN_INVALID", 0
        if not isinstance(payload, dict) or payload.get("sub") != subject:
            return "TOKEN_INVALID", 0
        if time.time() > payload.get("exp", 0):
            return "TOKEN_EXPIRED", 0
        epoch = payload.get("epoch")
        return (None, epoch) if isinstance(epoch, int) else ("TOKEN_INVALID", 0)

    def _mac(self, encoded: str) -> str:
        return b64url(hmac.new(self._key, encoded.encode(), hashlib.sha256).digest())
