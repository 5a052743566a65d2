"""The configuration as an auditor sees it: its fingerprint, the effective values with every
secret redacted, and which values were set at runtime rather than by the file.

The **fingerprint** is the first 16 hex digits of the SHA-256 of the settings *as validated
from the file* -- before the runtime overrides that ``tierproof demo`` and tests make with
``model_copy`` (store path, the embedded MQTT broker's URL, free ports) -- serialised as
canonical JSON (every field, defaults included, keys sorted, no whitespace). So comments,
formatting, key order, anchors and whether a default is written out do not change it; any
change of meaning does. ``${VAR}`` values count with the value they had at load time.
Secrets (``SecretStr``: InfluxDB token and password, MQTT and OPC UA passwords) count only as
set or unset: their value never enters the hash, so the fingerprint reveals nothing about
them and an auditor without them can reproduce it (``tierproof check-config FILE``, with any
value for their variables). Declared items supplied through the API (``api.declared``) are
part of what was validated, not runtime overrides: the settings in force then carry them.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Final

from .settings import Settings

__all__ = ["REDACTED", "SECRET_KEYS", "config_fingerprint", "effective_view", "file_view",
           "redact", "runtime_overrides"]

#: how every secret reads in the API (pydantic's rendering of a SecretStr)
REDACTED: Final = "**********"
#: field names whose values are secrets whatever their type (defence in depth: the settings
#: declare every secret as SecretStr, which pydantic already renders as REDACTED)
SECRET_KEYS: Final = frozenset({"password", "token", "secret", "api_key", "passphrase"})
# user:password@ in a URL (scheme://user:password@host)
_URL_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://[^/@:\s]*):[^/@\s]*@")


def redact(value: Any) -> Any:
    """JSON ``value`` with every secret replaced by REDACTED: values of SECRET_KEYS and the
    password of a URL's user:password@."""
    if isinstance(value, dict):
        return {k: REDACTED if k in SECRET_KEYS and v is not None else redact(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return _URL_PASSWORD.sub(rf"\1:{REDACTED}@", value)
    return value


def effective_view(settings: Settings) -> dict[str, Any]:
    """The settings in force (runtime overrides included) as JSON, secrets redacted."""
    out: dict[str, Any] = redact(settings.model_dump(mode="json"))
    return out


def file_view(settings: Settings) -> dict[str, Any]:
    """The settings as validated from the file (no runtime override) as JSON, secrets
    redacted: what the fingerprint hashes."""
    return effective_view(settings.as_validated())


def config_fingerprint(settings: Settings) -> str:
    """The fingerprint of the file's meaning (module docstring)."""
    blob = json.dumps(file_view(settings), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def runtime_overrides(settings: Settings) -> list[str]:
    """Field paths (``store.path``, ``devices[9].broker``) whose value in force differs from the
    file's."""
    out: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k), b.get(k), f"{path}.{k}" if path else k)
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{path}[{i}]")
        elif a != b:
            out.append(path or "(top level)")

    walk(file_view(settings), effective_view(settings), "")
    return out
