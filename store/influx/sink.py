"""Posting line protocol to InfluxDB, and the one place where its failures become errors.

Two write paths with one contract, :meth:`Sink.post`: it returns once the server accepted the
body, and otherwise raises

- :class:`SinkUnavailable` when the server is unreachable, timed out (``unreachable``), or
  answered 5xx or 429 (with ``retry_after_s`` from ``Retry-After``): the same body can succeed
  later;
- :class:`SinkUnauthorized` (a :class:`SinkUnavailable`) for 401 and 403: our credentials or
  permissions are refused, which an operator can fix (a rotated token, a revoked grant), so the
  spool keeps retrying rather than quarantining;
- :class:`SinkRejected` for any other 4xx (``status``, and ``reason``: the server's message):
  the same body will never succeed.

:meth:`Sink.ping` asks the server's ``/ping`` whether it answers at all: the spool's cheap probe
while the server is unreachable.

A *partial write* is neither: InfluxDB stored the body's other points and dropped some for
good (older than the retention policy, a field-type conflict, an unparsable line). 1.x says so
with ``400 {"error": "partial write: <reason> dropped=<n>"}``, 2.x with ``422`` and the same
text after a prefix. Sending the body again would drop the same points again (and rewrite the
rest), so :meth:`Sink.post` returns, with the number of points dropped (the store counts them
once the whole batch is taken), and each reason is logged once.

:meth:`Sink.post_lanes` posts several lanes of bodies at once (``posts_in_flight``, from
:meth:`~store.influx.lp.LineEncoder.encode_lanes`: each series in one lane), each lane's bodies
one after another, and returns only when every lane is done: all taken, or it raises as
:meth:`Sink.post` would for the first lane that failed (:class:`SinkUnavailable` before
:class:`SinkRejected`: the whole write is then retried or quarantined, the lanes that were taken
sent again, which InfluxDB takes as the same points). No POST of a failed write is still in
flight when it raises, so nothing of it can land after what is written next.

Neither path retries (the spool does, with its backoff). Secrets never appear in messages:
each message passes through :meth:`Sink.scrub`, which also removes the token and password
should a server or library echo them.
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import threading
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol

import httpx

from config.errors import SinkRejected, SinkUnauthorized, SinkUnavailable
from config.store import InfluxStoreSettings

if TYPE_CHECKING:
    from influxdb_client import InfluxDBClient
    from influxdb_client.service.write_service import WriteService

__all__ = ["Sink", "V1Sink", "V2Sink", "gzip_body", "make_sink", "partial_write", "retry_after_s"]

log = logging.getLogger("tierproof.store.influx")

#: gzip level: 1 costs a fifth of level 9 (influxdb-client's own) for ~20 % more bytes
GZIP_LEVEL = 1

#: influxd 1.x: "partial write: <reason> dropped=<n>" (tsdb.PartialWriteError); 2.x embeds the
#: same text in its message ("failure writing points to database: partial write: ...")
_PARTIAL = re.compile(r"(?:^|: )partial write: (?P<reason>.*?)\s*dropped=(?P<n>\d+)\s*$", re.S)
#: 1.x reports lines it could not parse in the reason, with dropped=0 (they never reached the
#: storage layer): one "unable to parse '<line>': <why>" per line
_UNPARSED = re.compile(r"unable to parse '.*?': ", re.S)
#: distinct partial-write reasons logged; more are only counted (a flood must not fill the log)
MAX_LOGGED_REASONS = 100


def partial_write(status: int, message: str) -> tuple[str, int] | None:
    """``(reason, dropped points)`` when the answer reports a partial write, else None.

    1.6 answers 400 (checked live); 2.x answers 422 "unprocessable entity" with the same text
    (from its documentation and source, not run here)."""
    if status not in (400, 422):
        return None
    m = _PARTIAL.search(message)
    if m is None:
        return None
    reason = m["reason"].strip()
    return reason, int(m["n"]) + len(_UNPARSED.findall(reason))


def gzip_body(body: bytes) -> bytes:
    return zlib.compress(body, GZIP_LEVEL, wbits=31)  # wbits 31: gzip framing


def retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def server_message(body: bytes | str | None, fallback: str) -> str:
    """The error text of an InfluxDB answer: ``{"error": ...}`` (1.x), ``{"message": ...}``
    (2.x/3.x), else the body itself, shortened."""
    if body is None:
        return fallback
    text = body.decode(errors="replace") if isinstance(body, bytes) else body
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        for key in ("error", "message"):
            if isinstance(doc.get(key), str) and doc[key]:
                return str(doc[key])
    text = text.strip()
    return text[:500] if text else fallback


#: the probe's timeout at most (a probe must stay cheap; the write timeout may be long)
PING_TIMEOUT_S = 2.0


class Sink(Protocol):
    def post(self, body: bytes) -> int: ...

    def post_lanes(self, lanes: Sequence[Sequence[bytes]]) -> int: ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


class _Base:
    def __init__(self, settings: InfluxStoreSettings) -> None:
        self.settings = settings
        self._gzip = settings.compress  # request bodies: store.gzip, auto resolved by the url
        self.where = f"InfluxDB {settings.url}"
        self._secrets = [s.get_secret_value() for s in (settings.token, settings.password)
                         if s is not None and s.get_secret_value()]
        self._partial_lock = threading.Lock()  # post() runs in the writer and the drain thread
        self._partial_reasons: set[str] = set()
        self._lanes: ThreadPoolExecutor | None = None  # post_lanes' other lanes, made at first use
        self._lanes_lock = threading.Lock()

    def post(self, body: bytes) -> int:
        raise NotImplementedError

    def _post_all(self, bodies: Sequence[bytes]) -> int:
        return sum(self.post(b) for b in bodies)

    def post_lanes(self, lanes: Sequence[Sequence[bytes]]) -> int:
        """Post every lane, the lanes at once (the first on this thread), each lane's bodies in
        order; the points the server dropped (partial writes), summed. Raises only after every
        lane finished (see the module docstring)."""
        if len(lanes) <= 1:
            return self._post_all(lanes[0]) if lanes else 0
        with self._lanes_lock:
            if self._lanes is None:
                self._lanes = ThreadPoolExecutor(max_workers=max(1, self.settings.posts_in_flight - 1),
                                                 thread_name_prefix="tierproof-influx-post")
            pool = self._lanes
        others: list[Future[int]] = [pool.submit(self._post_all, bodies) for bodies in lanes[1:]]
        outcomes: list[int | BaseException] = []
        try:
            outcomes.append(self._post_all(lanes[0]))
        except Exception as exc:
            outcomes.append(exc)
        for f in others:  # every lane, failed or not, before returning or raising
            try:
                outcomes.append(f.result())
            except Exception as exc:
                outcomes.append(exc)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if errors:
            raise next((e for e in errors if isinstance(e, SinkUnavailable)),
                       next((e for e in errors if isinstance(e, SinkRejected)), errors[0]))
        return sum(o for o in outcomes if isinstance(o, int))

    def _close_lanes(self) -> None:
        with self._lanes_lock:
            pool, self._lanes = self._lanes, None
        if pool is not None:
            pool.shutdown(wait=True)

    def scrub(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    def _answered(self, status: int, message: str, retry_after: str | None) -> int:
        """Raise for an answer that is not a success; for a partial write, return the number of
        points dropped."""
        message = self.scrub(message)
        partial = partial_write(status, message)
        if partial is None:
            raise self._status(status, message, retry_after)
        reason, dropped = partial
        # the line (and its values) is no part of the reason's identity: one log per kind
        key = _UNPARSED.sub("unable to parse: ", reason)[:300]
        with self._partial_lock:
            first = key not in self._partial_reasons and len(self._partial_reasons) < MAX_LOGGED_REASONS
            if first:
                self._partial_reasons.add(key)
        if first:
            log.warning("%s stored a write but dropped %d of its points (answered %d: partial write: "
                        "%s); further drops for this reason are only counted (store stats: "
                        "partial_write_dropped_points)", self.where, dropped, status, reason)
        return dropped

    def ping(self) -> bool:
        """Whether the server answers ``GET /ping`` (any answer below 500: it is up; whether it
        takes our writes, the next write tells). Never raises."""
        try:
            r = httpx.get(f"{self.settings.url.rstrip('/')}/ping", verify=self.settings.verify_tls,
                          timeout=min(self.settings.timeout_s, PING_TIMEOUT_S))
        except httpx.HTTPError:
            return False
        return r.status_code < 500

    def _status(self, status: int, message: str, retry_after: str | None) -> Exception:
        if status in (401, 403):
            return SinkUnauthorized(f"{self.where} refuses our credentials ({status}): {message}", status)
        if status == 429 or status >= 500:
            return SinkUnavailable(f"{self.where}: write answered {status}: {message}",
                                   retry_after_s=retry_after_s(retry_after))
        return SinkRejected(f"{self.where}: write rejected ({status}): {message}",
                            status=status, reason=message)

    def _unreachable(self, exc: BaseException) -> SinkUnavailable:
        detail = self.scrub(str(exc) or type(exc).__name__)
        return SinkUnavailable(f"{self.where}: write failed: {type(exc).__name__}: {detail}",
                               unreachable=True)


class V1Sink(_Base):
    """POST ``/write?db=&rp=&precision=ns`` (InfluxDB 1.x, and the 1.x compatibility API of
    2.x/3.x), basic auth when a username is set."""

    def __init__(self, settings: InfluxStoreSettings) -> None:
        super().__init__(settings)
        params = {"db": settings.database or "", "precision": "ns"}
        if settings.retention_policy:
            params["rp"] = settings.retention_policy
        auth = None
        if settings.username is not None and settings.password is not None:
            # a header, not the u/p query parameters: URLs end up in logs and exception texts
            auth = httpx.BasicAuth(settings.username, settings.password.get_secret_value())
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self._gzip:
            headers["Content-Encoding"] = "gzip"
        self._client = httpx.Client(
            base_url=settings.url, params=params, headers=headers, auth=auth,
            timeout=settings.timeout_s, verify=settings.verify_tls,
        )

    def post(self, body: bytes) -> int:
        if self._gzip:
            body = gzip_body(body)
        try:
            r = self._client.post("/write", content=body)
        except httpx.HTTPError as exc:  # connect, timeout, protocol: nothing was accepted
            raise self._unreachable(exc) from exc
        if r.status_code >= 300:
            return self._answered(r.status_code, server_message(r.content, r.reason_phrase),
                                  r.headers.get("Retry-After"))
        return 0

    def close(self) -> None:
        self._close_lanes()
        self._client.close()


class V2Sink(_Base):
    """``/api/v2/write`` through influxdb-client's ``WriteService`` (the layer below
    ``WriteApi``: the body is our line protocol, compressed here at a cheaper gzip level than the
    client's, and the client's urllib3 pool has retries off)."""

    def __init__(self, settings: InfluxStoreSettings) -> None:
        super().__init__(settings)
        # imported here: the v1 path and the embedded store need none of influxdb-client
        from influxdb_client import InfluxDBClient
        from influxdb_client.service.write_service import WriteService

        assert settings.token is not None and settings.org and settings.bucket
        self._client: InfluxDBClient = InfluxDBClient(
            url=settings.url, token=settings.token.get_secret_value(), org=settings.org,
            timeout=int(settings.timeout_s * 1000), verify_ssl=settings.verify_tls,
            enable_gzip=False, retries=False,
        )
        self._service: WriteService = WriteService(self._client.api_client)

    def post(self, body: bytes) -> int:
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        kw: dict[str, str] = {}
        if self._gzip:
            body = gzip_body(body)
            kw["content_encoding"] = "gzip"
        try:
            self._service.post_write(
                org=self.settings.org, bucket=self.settings.bucket, body=body, precision="ns",
                content_type="text/plain; charset=utf-8", **kw,
            )
        except ApiException as exc:
            status = int(exc.status or 0)
            if not status:  # the client's own failure without an answer
                raise self._unreachable(exc) from exc
            try:
                return self._answered(status, server_message(exc.body, str(exc.reason)),
                                      getattr(exc, "retry_after", None))
            except (SinkRejected, SinkUnavailable) as err:
                raise err from exc
        except (Urllib3Error, OSError) as exc:
            raise self._unreachable(exc) from exc
        return 0

    def close(self) -> None:
        self._close_lanes()
        self._client.close()


def make_sink(settings: InfluxStoreSettings) -> V1Sink | V2Sink:
    return V1Sink(settings) if settings.api == "v1" else V2Sink(settings)
