"""Opaque cursors of ``/tags/{path}/samples``: where the next page starts.

A cursor holds the tag's path, the window the first page resolved (its ``from`` and ``to``:
relative times are not resolved again), the time of the last sample delivered and how many
samples at exactly that time have been delivered (a page can end inside a run of samples that
share a timestamp; the next starts at that time and skips them). It is URL-safe base64 of that
JSON and a keyed BLAKE2b checksum of it: a cursor that was altered, cut, or minted for another
tag is refused (400 naming ``cursor``). It is not secret -- it holds nothing the request does
not -- and stays valid across restarts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Final

from starlette.requests import Request

from .problems import BadParameter

__all__ = ["MAX_CURSOR", "Cursor", "decode_cursor", "encode_cursor", "next_link"]

_KEY: Final = b"tierproof samples cursor v1"
_MAC_BYTES: Final = 12
#: characters of a cursor at most (a path of 1,000 characters fits)
MAX_CURSOR: Final = 2048


@dataclass(frozen=True, slots=True)
class Cursor:
    path: str
    start_ns: int  # the window's from, as the first page resolved it
    end_ns: int  # the window's to
    last_ns: int  # the time of the last sample delivered
    skip: int  # samples at last_ns already delivered


def _mac(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, key=_KEY, digest_size=_MAC_BYTES).digest()


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def encode_cursor(c: Cursor) -> str:
    payload = json.dumps([1, c.path, c.start_ns, c.end_ns, c.last_ns, c.skip],
                         separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_mac(payload))}"


def decode_cursor(text: str, path: str) -> Cursor:
    """The cursor ``text`` of tag ``path``; anything else is a BadParameter naming ``cursor``."""

    def bad(why: str) -> BadParameter:
        return BadParameter("cursor", f"not a cursor of this tag's samples ({why}): pass "
                            "`next_cursor` of the previous answer unchanged, or leave it out "
                            "to start from `from`")

    if len(text) > MAX_CURSOR or text.count(".") != 1:
        raise bad("malformed")
    body, mac = text.split(".")
    try:
        payload, got = _unb64(body), _unb64(mac)
    except (binascii.Error, ValueError) as exc:
        raise bad("not base64") from exc
    if not hmac.compare_digest(got, _mac(payload)):
        raise bad("checksum does not match: altered or cut")
    try:
        v, p, start, end, last, skip = json.loads(payload)
    except (ValueError, TypeError) as exc:  # cannot happen for a cursor we made
        raise bad("unreadable") from exc
    if v != 1 or not all(isinstance(x, int) for x in (start, end, last, skip)):
        raise bad("unknown version")
    if p != path:
        raise bad("it belongs to another tag")
    return Cursor(p, start, end, last, skip)


def next_link(request: Request, cursor: str) -> str:
    """The request's own path and query with ``cursor`` set: the target of ``rel="next"``
    (relative, so that it holds behind a proxy that rewrites the host)."""
    url = request.url.include_query_params(cursor=cursor)
    return f"{url.path}?{url.query}"
