"""API keys and scopes, decided in one place for every route.

A key reads ``tp_<id>_<secret>``: ``id`` (8 hex digits) is public -- ``tierproof keys list``
shows it, ``keys revoke ID`` names it, logs may print it -- and the secret is 32 random bytes
(``secrets.token_urlsafe``). The keys file (:func:`keys_path`, JSON, mode 0600, replaced
atomically under a lock) holds each key's id, name, scope, creation and revocation times and
the SHA-256 of the whole key, never the key: a stolen file opens nothing, and a key is
compared in constant time (``hmac.compare_digest``). A key of 256 random bits needs no slow
hash (no dictionary to guess from).

Scopes: ``read`` < ``write`` < ``admin``; each implies those before it. :func:`required_scope`
decides what a request needs from its method and path alone: GET and HEAD need ``read``, any
other method ``write``, the paths of :data:`ADMIN_PATHS` ``admin``; :data:`OPEN_PATHS` and
:data:`OPEN_PREFIXES` (health, the dashboard's page and static files, the API docs: no plant
data) need nothing. A route is protected by being under the app, not by remembering to
declare it: nothing per route can be forgotten.

:class:`AuthMiddleware` answers: no key, an unknown or revoked key -> 401 problem with
``WWW-Authenticate: Bearer``; a key of too low a scope -> 403 problem naming the scope needed;
over ``api.rate_limit_per_s`` -> 429 problem with ``Retry-After`` (a token bucket per key).
The key of a request it let through is in ``request.state.api_key`` (:class:`Principal`: id,
name, scope), for audit trails. :class:`HostAllowList` refuses a Host header outside
``api.allowed_hosts`` (DNS rebinding) with a 400 problem."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final, get_args

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from config.api_auth import ConfiguredKey
from config.api_auth import Scope as ScopeName
from config.errors import TierproofError
from config.settings import Settings
from config.times import iso

from .problems import echo, problem

__all__ = [
    "ADMIN_PATHS", "OPEN_PATHS", "OPEN_PREFIXES", "SCOPES", "AuthMiddleware", "HostAllowList",
    "KeyFile", "KeyFileError", "KeyRecord", "KeyRing", "NoKeyError", "Principal",
    "install_auth", "keys_path", "required_scope",
]

log = logging.getLogger("api.auth")

SCOPES: Final[tuple[ScopeName, ...]] = get_args(ScopeName)
_RANK: Final[dict[str, int]] = {s: i for i, s in enumerate(SCOPES)}

#: paths anyone may ask (any method; a method the route lacks is a 405): they show no plant
#: data -- health (a load balancer's probe), the dashboard's page (it asks for a key before
#: showing anything), the OpenAPI document and its Swagger UI / ReDoc pages
OPEN_PATHS: Final = frozenset({"/", "/api/v1/health", "/docs", "/docs/oauth2-redirect",
                               "/redoc", "/openapi.json"})
#: path prefixes anyone may ask: the dashboard's static files and the docs pages' assets
#: (Swagger UI and ReDoc from fastapi-offline, under /static-offline-docs/)
OPEN_PREFIXES: Final = ("/static/", "/static-offline-docs/", "/docs/", "/redoc/")
#: paths that need ``admin`` whatever the method: the whole configuration in force (device
#: addresses, store URL: the plant network's map, secrets redacted)
ADMIN_PATHS: Final = frozenset({"/api/v1/config"})
_SAFE: Final = frozenset({"GET", "HEAD"})

KEY_PREFIX: Final = "tp_"
_FILE_VERSION: Final = 1
#: how often the keys' last use is written to the keys file at most
LAST_USED_EVERY_S: Final = 60.0


def required_scope(method: str, path: str) -> ScopeName | None:
    """The scope a request needs (None: open), from its method and path alone."""
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return None
    if path in ADMIN_PATHS:
        return "admin"
    return "read" if method.upper() in _SAFE else "write"


def implies(have: str, need: str) -> bool:
    """Whether scope ``have`` allows what ``need`` allows."""
    return _RANK.get(have, -1) >= _RANK[need]


def keys_path(settings: Settings) -> Path:
    """The keys file: ``api.auth.keys_file``, else ``api_keys.json`` in the directory of the
    store's file (the embedded store's ``path``, InfluxDB's ``meta_path``): the gateway's
    data directory, a volume in a container."""
    if settings.api.auth.keys_file:
        return Path(settings.api.auth.keys_file)
    store = settings.store
    where = store.path if store.type == "sqlite" else store.meta_path
    return Path(where).parent / "api_keys.json"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def _now_iso() -> str:
    out = iso(time.time_ns(), timespec="seconds")
    assert out is not None
    return out


class KeyFileError(TierproofError):
    """The keys file cannot be read, parsed or written; the message names it and why."""


class NoKeyError(TierproofError):
    """``api.auth.required`` and no usable key: the gateway does not start."""


@dataclass(frozen=True)
class KeyRecord:
    """One key as the keys file holds it: never the key itself."""

    id: str
    name: str
    scope: ScopeName
    sha256: str
    created: str
    revoked: str | None = None
    last_used: str | None = None


@dataclass(frozen=True)
class Principal:
    """Who made a request: the key's id, name and scope (``request.state.api_key``)."""

    id: str
    name: str
    scope: ScopeName


class KeyFile:
    """The keys file: read, and changed under an exclusive lock (``<file>.lock``) by
    replacing it atomically (write a temporary file, fsync, rename), mode 0600, so that the
    CLI and a running gateway never lose each other's changes nor read half a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    # ------------------------------------------------------------------ reading

    def load(self) -> list[KeyRecord]:
        """Every key of the file (none when it does not exist)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyFileError(f"keys file {self.path}: cannot be read: "
                               f"{getattr(exc, 'strerror', None) or exc}") from exc
        return self.parse(text)

    def parse(self, text: str) -> list[KeyRecord]:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise KeyFileError(f"keys file {self.path}: not JSON ({exc})") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise KeyFileError(f"keys file {self.path}: not a keys file (no 'keys' list)")
        out = []
        for i, k in enumerate(doc["keys"]):
            try:
                rec = KeyRecord(**k)
            except TypeError as exc:
                raise KeyFileError(f"keys file {self.path}: keys[{i}]: {exc}") from exc
            if rec.scope not in SCOPES or not isinstance(rec.sha256, str) or len(rec.sha256) != 64:
                raise KeyFileError(f"keys file {self.path}: keys[{i}] ({rec.id!r}): scope must be "
                                   f"one of {', '.join(SCOPES)} and sha256 64 hex digits")
            out.append(rec)
        return out

    # ------------------------------------------------------------------ changing

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[KeyRecord]]:
        """The records, locked against other writers; what the block leaves in the list is
        written when it ends without an exception."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise KeyFileError(f"keys file {self.path}: cannot be written: "
                               f"{exc.strerror or exc}") from exc
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
            records = self.load()
            before = list(records)
            yield records
            if records != before:
                self._write(records)
        finally:
            os.close(fd)  # releases the lock

    def _write(self, records: Sequence[KeyRecord]) -> None:
        doc = {"version": _FILE_VERSION,
               "note": "API keys of tierproof: SHA-256 of each key, never the key; "
                       "manage with `tierproof keys create|list|revoke`",
               "keys": [asdict(r) for r in records]}
        try:
            fd, tmp = tempfile.mkstemp(prefix=".api_keys.", dir=self.path.parent)  # mode 0600
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(doc, f, indent=2)
                    f.write("\n")
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, 0o600)
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            with contextlib.suppress(OSError):  # the rename itself durable
                dfd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        except OSError as exc:
            raise KeyFileError(f"keys file {self.path}: cannot be written: "
                               f"{exc.strerror or exc}") from exc

    def create(self, name: str, scope: ScopeName) -> tuple[KeyRecord, str]:
        """A new key: its record (as stored) and the key itself, which nothing keeps."""
        if scope not in SCOPES:
            raise KeyFileError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
        with self._locked() as records:
            taken = {r.id for r in records}
            key_id = secrets.token_hex(4)
            while key_id in taken:
                key_id = secrets.token_hex(4)
            key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
            rec = KeyRecord(id=key_id, name=name, scope=scope, sha256=_digest(key),
                            created=_now_iso())
            records.append(rec)
        return rec, key

    def revoke(self, key_id: str) -> tuple[KeyRecord, bool]:
        """Revoke key ``key_id``: its record and whether it was revoked now (False: before)."""
        with self._locked() as records:
            for i, r in enumerate(records):
                if r.id == key_id:
                    if r.revoked is not None:
                        return r, False
                    records[i] = replace(r, revoked=_now_iso())
                    return records[i], True
        raise KeyFileError(f"no API key with id {echo(key_id, 40)} in {self.path} "
                           "(`tierproof keys list` shows the ids)")

    def remove(self, names: set[str]) -> int:
        """Delete the keys named ``names`` (the demo's own keys, replaced at every start)."""
        with self._locked() as records:
            keep = [r for r in records if r.name not in names]
            gone = len(records) - len(keep)
            records[:] = keep
        return gone

    def touch(self, last_used: dict[str, str]) -> None:
        """Record when keys were last used (ids the file no longer has are ignored)."""
        if not last_used:
            return
        with self._locked() as records:
            for i, r in enumerate(records):
                if r.id in last_used and r.last_used != last_used[r.id]:
                    records[i] = replace(r, last_used=last_used[r.id])


@dataclass(frozen=True)
class _Known:
    principal: Principal
    sha256: str
    revoked: str | None


class KeyRing:
    """The keys a running gateway accepts: those of the keys file (read again whenever it
    changes: a key created or revoked by ``tierproof keys`` counts at the next request) and
    those of ``api.auth.keys``."""

    def __init__(self, path: Path, configured: Sequence[ConfiguredKey] = ()) -> None:
        self.file = KeyFile(path)
        self._configured = [
            _Known(Principal(id=f"config:{k.name}", name=k.name, scope=k.scope),
                   _digest(k.key.get_secret_value()), None) for k in configured]
        self._by_id: dict[str, _Known] = {}
        self._signature: tuple[int, int, int] | None = None
        self._loaded = False
        self._lock = threading.Lock()
        self._used: dict[str, int] = {}
        self._flushed = time.monotonic()
        self._bad_signature: tuple[int, int, int] | None = None

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.file.path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:  # e.g. the directory's permissions changed: keep what we have
            if self._bad_signature != self._signature:
                self._bad_signature = self._signature
                log.error("keys file %s: cannot be checked (%s); the keys read before stay in "
                          "force", self.file.path, exc.strerror or exc)
            return self._signature
        return st.st_mtime_ns, st.st_size, st.st_ino

    def refresh(self, strict: bool = False) -> None:
        """Read the keys file again if it changed. A file that cannot be read: ``strict``
        raises (at start); otherwise the keys read before stay in force, and it is logged."""
        sig = self._stat()
        if self._loaded and sig == self._signature:
            return
        with self._lock:
            try:
                records = self.file.load()
            except KeyFileError as exc:
                if strict:
                    raise
                if sig != self._bad_signature:
                    self._bad_signature = sig
                    log.error("%s; the keys read before stay in force", exc)
                return
            self._by_id = {r.id: _Known(Principal(r.id, r.name, r.scope), r.sha256, r.revoked)
                           for r in records}
            self._signature = sig
            self._loaded = True

    def active(self) -> int:
        """Keys that are not revoked."""
        self.refresh(strict=True)
        return sum(k.revoked is None for k in self._by_id.values()) + len(self._configured)

    def lookup(self, key: str) -> tuple[Principal | None, str]:
        """The principal of ``key``, or None and why not (for the 401's detail)."""
        self.refresh()
        digest = _digest(key)
        if key.startswith(KEY_PREFIX):
            key_id = key[len(KEY_PREFIX):].split("_", 1)[0]
            known = self._by_id.get(key_id)
            if known is not None and hmac.compare_digest(known.sha256, digest):
                if known.revoked is not None:
                    return None, f"API key {key_id} was revoked at {known.revoked}"
                self._used[key_id] = time.time_ns()  # formatted when written (flush)
                return known.principal, ""
        for k in self._configured:  # few: each compared, in constant time
            if hmac.compare_digest(k.sha256, digest):
                return k.principal, ""
        return None, "the API key is not known (`tierproof keys list` shows the keys in force)"

    def flush_due(self) -> bool:
        return bool(self._used) and time.monotonic() - self._flushed >= LAST_USED_EVERY_S

    def flush(self) -> None:
        """Write the keys' last use to the keys file (at most every LAST_USED_EVERY_S)."""
        used, self._used = self._used, {}
        self._flushed = time.monotonic()
        try:
            self.file.touch({k: iso(ns, timespec="seconds") or "" for k, ns in used.items()})
        except KeyFileError as exc:
            log.warning("could not record the API keys' last use: %s", exc)


# --------------------------------------------------------------------------- middleware

_WWW_AUTH: Final = 'Bearer realm="tierproof"'


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return str(v.decode("latin-1"))
    return None


def presented_key(scope: Scope) -> tuple[str | None, str]:
    """The key of a request -- ``X-API-Key: <key>`` or ``Authorization: Bearer <key>`` --
    or None and why: neither header, an Authorization header that is not ``Bearer <key>``,
    or the two headers carrying different keys (every credential presented must hold)."""
    key = (_header(scope, b"x-api-key") or "").strip() or None
    auth = _header(scope, b"authorization")
    if auth is not None:
        kind, _, value = auth.strip().partition(" ")
        if kind.lower() != "bearer" or not value.strip():
            return None, "the Authorization header is not 'Bearer <key>'"
        if key is not None and value.strip() != key:
            return None, "X-API-Key and Authorization: Bearer carry different keys"
        key = value.strip()
    if key is None:
        return None, ("no API key: send one as 'X-API-Key: <key>' or 'Authorization: Bearer "
                      "<key>' (`tierproof keys create` makes one)")
    return key, ""


class _Bucket:
    __slots__ = ("t", "tokens")

    def __init__(self, tokens: float, t: float) -> None:
        self.tokens, self.t = tokens, t


class AuthMiddleware:
    """Every request but the open ones needs a key of the scope :func:`required_scope` says
    (module doc); keys are rate-limited each on its own token bucket."""

    def __init__(self, app: ASGIApp, ring: KeyRing, required: bool = True,
                 rate_per_s: float | None = None, burst: int | None = None) -> None:
        self.app = app
        self.ring = ring
        self.required = required
        self.rate = rate_per_s
        self.burst = float(burst if burst is not None else max(1, math.ceil(rate_per_s or 1)))
        self._buckets: dict[str, _Bucket] = {}

    def _admit(self, key_id: str) -> float:
        """0 when the key may make this request now, else the seconds until it may."""
        if self.rate is None:
            return 0.0
        now = time.monotonic()
        b = self._buckets.get(key_id)
        if b is None:
            b = self._buckets[key_id] = _Bucket(self.burst, now)
        b.tokens = min(self.burst, b.tokens + (now - b.t) * self.rate)
        b.t = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return 0.0
        return (1.0 - b.tokens) / self.rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.required:
            await self.app(scope, receive, send)
            return
        need = required_scope(scope["method"], scope["path"])
        if need is None:
            await self.app(scope, receive, send)
            return
        key, why = presented_key(scope)
        if key is None:
            await self._deny(401, why, scope, receive, send)
            return
        who, why = self.ring.lookup(key)
        if who is None:
            await self._deny(401, why, scope, receive, send)
            return
        if not implies(who.scope, need):
            await problem(
                403, "Forbidden", f"{scope['method']} {echo(scope['path'], 80)} needs scope "
                f"'{need}'; API key {who.id} ({who.name}) has scope '{who.scope}'",
                needed_scope=need)(scope, receive, send)
            return
        wait = self._admit(who.id)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            await problem(429, "Too Many Requests",
                          f"API key {who.id} is over api.rate_limit_per_s ({self.rate:g} "
                          f"requests/s); retry after {retry} s",
                          headers={"Retry-After": str(retry)})(scope, receive, send)
            return
        scope.setdefault("state", {})["api_key"] = who
        if self.ring.flush_due():
            await asyncio.to_thread(self.ring.flush)
        await self.app(scope, receive, send)

    @staticmethod
    async def _deny(status: int, why: str, scope: Scope, receive: Receive, send: Send) -> None:
        await problem(status, "Unauthorized", why,
                      headers={"WWW-Authenticate": _WWW_AUTH})(scope, receive, send)


def _host_matches(host: str, patterns: Sequence[str]) -> bool:
    for p in patterns:
        p = p.lower()
        if p == "*" or host == p or (p.startswith("*.") and host.endswith(p[1:])):
            return True
    return False


class HostAllowList:
    """A Host header outside ``api.allowed_hosts`` is a 400 problem (DNS rebinding: a page
    of the attacker's own name resolved to the gateway's address)."""

    def __init__(self, app: ASGIApp, allowed: Sequence[str]) -> None:
        self.app = app
        self.allowed = [h.lower() for h in allowed]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or "*" in self.allowed:
            await self.app(scope, receive, send)
            return
        raw = (_header(scope, b"host") or "").strip().lower()
        if raw.startswith("["):  # [IPv6]:port
            host = raw[1:].split("]", 1)[0]
        elif raw.count(":") == 1:  # name:port
            host = raw.split(":", 1)[0]
        else:
            host = raw
        if not _host_matches(host, self.allowed) and not _host_matches(f"[{host}]", self.allowed):
            await problem(400, "Invalid host",
                          f"Host {echo(raw, 80)} is not in api.allowed_hosts")(scope, receive, send)
            return
        await self.app(scope, receive, send)


# --------------------------------------------------------------------------- app wiring

_HTTP_METHODS: Final = frozenset({"get", "put", "post", "delete", "options", "head", "patch",
                                   "trace"})
_AUTH_WHY: Final = {
    401: "No API key, or one that is unknown or revoked: send `X-API-Key: <key>` or "
         "`Authorization: Bearer <key>`",
    403: "The API key's scope is too low: `needed_scope` names the one this operation needs",
    429: "The API key is over `api.rate_limit_per_s`: retry after `Retry-After` seconds",
}


def _install_openapi(app: FastAPI) -> None:
    """Declare the key (two schemes: ``X-API-Key`` and HTTP bearer), which operations need
    it and with what scope, and their 401/403/429 problems, in ``app.openapi()``."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if getattr(app.state, "auth_openapi", False):
            assert app.openapi_schema is not None
            return app.openapi_schema
        schema = build()
        comps = schema.setdefault("components", {})
        comps.setdefault("securitySchemes", {}).update({
            "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                             "description": "an API key (`tierproof keys create`)"},
            "Bearer": {"type": "http", "scheme": "bearer",
                       "description": "the same key as `Authorization: Bearer <key>`"},
        })
        for path, item in schema.get("paths", {}).items():
            for method, op in item.items():
                if method not in _HTTP_METHODS:  # a path item's `parameters`, `summary`
                    continue
                need = required_scope(method, path)
                if need is None:
                    op["security"] = []
                    continue
                op["security"] = [{"ApiKeyHeader": []}, {"Bearer": []}]
                op["x-required-scope"] = need
                responses = op.setdefault("responses", {})
                for status, why in _AUTH_WHY.items():
                    out: dict[str, Any] = {
                        "description": why,
                        "content": {"application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/Problem"}}}}
                    if status == 401:
                        out["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
                    if status == 429:
                        out["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
                    responses[str(status)] = out
        app.state.auth_openapi = True
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_auth(app: FastAPI, settings: Settings) -> KeyRing:
    """Keys and scopes, the Host allow-list and CORS, as ASGI middleware around the app
    (outermost first: Host allow-list, CORS -- so that a preflight needs no key and a 401
    carries CORS headers --, keys); returns the app's key ring."""
    api = settings.api
    ring = KeyRing(keys_path(settings), api.auth.keys)
    app.add_middleware(AuthMiddleware, ring=ring, required=api.auth.required,
                       rate_per_s=api.rate_limit_per_s, burst=api.rate_limit_burst)
    if api.cors.origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(api.cors.origins),
                           allow_methods=list(api.cors.methods),
                           allow_headers=list(api.cors.headers), max_age=api.cors.max_age_s,
                           expose_headers=["Retry-After", "WWW-Authenticate"])
    app.add_middleware(HostAllowList, allowed=list(api.allowed_hosts))
    _install_openapi(app)
    return ring


def check_keys(settings: Settings, ring: KeyRing) -> None:
    """At start: with ``api.auth.required``, at least one key that is not revoked, or a
    :class:`NoKeyError` saying how to make one; a keys file that cannot be read is named."""
    if not settings.api.auth.required:
        return
    if ring.active() == 0:
        raise NoKeyError(
            f"api.auth.required is true and {ring.file.path} holds no API key that is not "
            "revoked: create one with `tierproof keys create --config FILE --scope admin --name "
            "NAME` (or set api.auth.required: false)")
