"""The gateway's Ed25519 signing key for evidence packs: ``<data dir>/evidence_key.pem``.

The data directory is the one the API keys file lives in by default (``api.auth.keys_path``):
the directory of the embedded store's file, or of the InfluxDB store's ``meta_path``. The key
is made on first use, readable by its owner only (0600), and never leaves the gateway: a pack
carries the public key alone (``public_key.pem`` and the manifest's ``public_key``).
"""

from __future__ import annotations

import base64
import contextlib
import os
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from config.errors import TierproofError
from config.settings import Settings

__all__ = ["KEY_FILE", "EvidenceKeyError", "key_path", "load_or_create_key", "public_pem",
           "public_raw_b64", "read_public_key", "signature_ok"]

KEY_FILE: Final = "evidence_key.pem"


class EvidenceKeyError(TierproofError):
    """The signing key or a public key cannot be read."""


def key_path(settings: Settings) -> Path:
    """Where the gateway's signing key lives (module docstring)."""
    store = settings.store
    where = store.path if store.type == "sqlite" else store.meta_path
    return Path(where).parent / KEY_FILE


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The key in ``path``; made there (0600) when there is none. Two processes making it at
    once agree: the second finds the first's file."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):  # another process made it first
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise EvidenceKeyError(f"{path}: cannot read the evidence signing key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise EvidenceKeyError(f"{path}: not an Ed25519 private key ({type(key).__name__})")
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_raw_b64(key: Ed25519PublicKey) -> str:
    """The raw 32-byte public key, base64: how the manifest names its signer."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def read_public_key(data: bytes, where: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM bytes; an EvidenceKeyError naming ``where`` otherwise."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise EvidenceKeyError(f"{where}: not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise EvidenceKeyError(f"{where}: not an Ed25519 public key ({type(key).__name__})")
    return key


def signature_ok(key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True
