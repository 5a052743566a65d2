"""The HTTP server's bounds: a connection flood degrades the API, never collection.

uvicorn alone keeps a connection that never sends a request open for ever (its keep-alive
timeout starts only after a first answer), accepts connections until the process runs out of
file descriptors, and then the collectors cannot open a socket nor the store a file. Here:

* :class:`BoundedH11Protocol` answers a connection beyond ``api.max_connections`` with a 503
  problem and closes it at once, and closes a connection that has not sent a complete
  request's headers within ``api.header_timeout_s`` of opening (or of its last answer): idle,
  half-open and slow-header (slowloris) connections cannot pile up; and cuts a connection whose
  client takes nothing of an answer for as long (a slow reader holds its answer's memory and
  a connection slot, not both for ever). Refusals are logged
  through a :class:`~collector.lograte.LogLimiter` (one line, then a summary per minute);
* every connection gets ``TCP_NODELAY`` (:func:`_no_delay`): uvicorn writes an answer's head
  and body in two writes, and Nagle's algorithm held the body back until the client's
  delayed ACK, ~40 ms per answer;
* :func:`raise_fd_limit` raises the soft file limit to the hard one at start, and
  :func:`connection_limit` keeps ``FD_RESERVE`` descriptors (plus the accept backlog) free for
  the collectors, the store, the spool and the KPI readers whatever the API does;
* :func:`limit_loop_errors` rate-limits the event loop's own error log (an ``accept()`` that
  fails with EMFILE is logged by asyncio once per retry, for every listening socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any, Final

from uvicorn.protocols.http.h11_impl import H11Protocol

from collector.lograte import LogLimiter

__all__ = ["BACKLOG", "FD_RESERVE", "BoundedH11Protocol", "bounded_protocol", "connection_limit",
           "limit_loop_errors", "raise_fd_limit"]

log = logging.getLogger("tierproof.api.serving")

#: file descriptors kept free for everything but HTTP connections
FD_RESERVE: Final = 256
#: the listening socket's accept backlog (asyncio accepts up to this many per wake-up)
BACKLOG: Final = 128

_BUSY = (b'{"type":"about:blank","title":"Service Unavailable","status":503,'
         b'"detail":"too many open connections (api.max_connections); retry later"}')
_BUSY_RESPONSE: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n"
    b"retry-after: 1\r\nconnection: close\r\ncontent-length: " + str(len(_BUSY)).encode()
    + b"\r\n\r\n" + _BUSY)


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a connection cap and a request-header timeout (see the
    module doc). :func:`bounded_protocol` makes a subclass with the limits set."""

    max_connections: int = 512
    header_timeout_s: float = 10.0
    limiter: LogLimiter | None = None
    refused: int = 0  # connections refused, class-wide (the running server's count)
    timed_out: int = 0  # connections closed for sending no request in time

    _header_timer: asyncio.TimerHandle | None = None
    _write_timer: asyncio.TimerHandle | None = None
    _header_cycle: object = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _no_delay(transport)
        if len(self.connections) > self.max_connections:
            type(self).refused += 1
            if self.limiter is not None:
                self.limiter.log("api", "max_connections reached",
                                 "refusing HTTP connections beyond api.max_connections=%d "
                                 "(503 and closed)", self.max_connections)
            transport.write(_BUSY_RESPONSE)
            transport.close()
            return
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_cycle = self.cycle
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        # no new request began since the timer was armed, and none is being answered
        if self.cycle is self._header_cycle and (self.cycle is None or self.cycle.response_complete):
            type(self).timed_out += 1
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()

    def pause_writing(self) -> None:
        # the client stopped taking the answer: it has header_timeout_s to take some more
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.header_timeout_s, self._write_timeout)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _write_timeout(self) -> None:
        self._write_timer = None
        if not self.transport.is_closing():
            type(self).timed_out += 1
        # close() would wait for the buffer the client never takes -- also a close() the
        # keep-alive timer made after the whole answer was handed to the transport
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._header_timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._write_timer = None
        super().connection_lost(exc)


def _no_delay(transport: asyncio.BaseTransport) -> None:
    """TCP_NODELAY on a TCP connection, whatever socket it was accepted from. asyncio sets it
    only when the listening socket was made with ``proto=IPPROTO_TCP``; without it, Nagle's
    algorithm held an answer's body (uvicorn writes head and body apart) until the client's
    delayed ACK, ~40 ms per answer on Linux (issue 12)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):  # a connection already reset: nothing to tune
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def bounded_protocol(max_connections: int, header_timeout_s: float) -> type[BoundedH11Protocol]:
    """A :class:`BoundedH11Protocol` class with these limits (one per server)."""
    limiter = LogLimiter(log, "api")
    return type("BoundedH11", (BoundedH11Protocol,), {
        "max_connections": max_connections, "header_timeout_s": header_timeout_s,
        "limiter": limiter, "refused": 0, "timed_out": 0})


def raise_fd_limit() -> int:
    """Raise the soft limit of open files to the hard limit; return the soft limit now."""
    try:
        import resource
    except ImportError:  # not on POSIX: nothing to raise, no number to bound by
        return 1 << 20
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    if want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, want, exc)
    return int(soft)


def connection_limit(configured: int, fd_limit: int) -> int:
    """``api.max_connections``, lowered so that connections plus the accept backlog leave
    :data:`FD_RESERVE` descriptors for everything else (at least 16 connections)."""
    room = fd_limit - FD_RESERVE - BACKLOG
    if configured > room:
        got = max(16, room)
        log.warning("api.max_connections=%d lowered to %d: the open-file limit is %d and %d are "
                    "kept for the collectors and the store", configured, got, fd_limit,
                    FD_RESERVE + BACKLOG)
        return got
    return configured


def limit_loop_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Rate-limit what the loop logs about errors outside any task (failing accept() calls):
    the first of each message in full, then a summary line per minute."""
    limiter = LogLimiter(logging.getLogger("asyncio"), "event loop", level=logging.ERROR)

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        reason = f"{context.get('message', '')}: {type(exc).__name__}: {exc}" if exc else str(
            context.get("message", ""))
        if limiter.admit("event loop", reason):
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
