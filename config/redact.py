"""Secrets are never echoed: the password of a URL and the value of a secret field are
replaced by ``***`` in every message the configuration produces (errors, logs, the CLI)."""

from __future__ import annotations

import re

__all__ = ["SECRET_FIELDS", "is_secret_field", "redact", "redact_url", "url_credentials_error"]

#: field names whose values are secrets wherever they appear
SECRET_FIELDS = frozenset({"password", "token", "secret", "api_key", "passphrase"})

# scheme://user:password@ -- the password is anything up to the last @ before the path
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^/@:\s]*):(?P<pw>[^/\s]*)@")


def is_secret_field(name: str) -> bool:
    return name.lower() in SECRET_FIELDS or name.lower().endswith(("_password", "_token", "_secret"))


# scheme://credential@ without a colon: a token in the user part, shown as *** too
_TOKEN_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/@:\s*]+@")


def redact_url(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` in it as ``***`` (and
    a lone ``scheme://credential@``, which may be a token, as ``***@``)."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _TOKEN_USERINFO.sub(lambda m: f"{m['scheme']}***@", text)


def redact(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """``text`` without URL passwords and without any of ``secrets`` (the values of secret
    fields)."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return redact_url(text)


def url_credentials_error(url: str, use: str) -> ValueError | None:
    """The error for a URL that holds credentials (``user:password@``), showing it redacted,
    or None when it holds none. ``use`` says where the credentials go instead."""
    rest = url.split("://", 1)[1] if "://" in url else url
    if "@" not in rest.split("/", 1)[0]:
        return None
    # a password in the URL would end up in logs, errors and /api/v1/health
    return ValueError(f"{redact_url(url)}: the URL must not hold credentials (user:password@): {use}")
