"""OPC UA connection-error diagnosis.

Connecting first lists the server's endpoints (GetEndpoints, unsecured as every server
allows), so that each error a user can cause is one sentence naming the device, the cause
and the fix, not an asyncua exception: an unreachable or silent host, a policy or mode the
server does not offer (with those it offers), a server certificate that is untrusted,
expired or issued for another host (refused with ``trusted_certificates``, logged once
without), a client certificate the server refuses (its file and thumbprint), a refused or
unoffered user. asyncua's log records of those refusals are kept at DEBUG.

A lost connection (the keep-alive probe fails, the transport closes, a subscription reports a
bad status) becomes the reason of the :class:`~config.errors.ConnectError` that
:meth:`~collector.opcua.driver.OpcUaCollector.batches` raises. :class:`Diagnosis` is a mixin
of :class:`~collector.opcua.driver.OpcUaCollector`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlparse

from asyncua import Client, ua

from config.errors import ConnectError

from .security import MODES, POLICY_URIS, Security, load_cert, offers, thumbprint

__all__ = ["Diagnosis", "quiet_asyncua", "status_name"]

log = logging.getLogger("tierproof.collector.opcua")

_AUTH_CODES = frozenset({
    ua.StatusCodes.BadUserAccessDenied,
    ua.StatusCodes.BadIdentityTokenRejected,
    ua.StatusCodes.BadIdentityTokenInvalid,
})
#: every exception asyncua (and the socket under it) raises for a failed request
_UA_ERRORS: tuple[type[BaseException], ...] = (ua.UaError, OSError, TimeoutError, asyncio.TimeoutError)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


#: asyncua log records that a ConnectError of this module says in one sentence (or that say
#: nothing a user can act on): (logger, message start). Kept at DEBUG, dropped otherwise.
_ASYNCUA_NOISE: tuple[tuple[str, str], ...] = (
    # a refused OpenSecureChannel (node-opcua answers with a ServiceFault asyncua cannot decode)
    ("asyncua.client.ua_client.UASocketProtocol", "Exception raised while parsing message"),
    ("asyncua.client.ua_client.UASocketProtocol", "Received an error"),
    ("asyncua.client.ua_client.UASocketProtocol", "Got error status from server"),
    ("asyncua.client.ua_client.UaClient", "close_secure_channel was called but connection is closed"),
    ("asyncua.client.client", "create_session fault response"),
    ("asyncua.client.client", "Requested session timeout"),
    ("asyncua.client.client", "Sending plain-text password"),
    # a lost connection, which the collector reports as such
    ("asyncua.client.ua_session.UaSession", "Publish iteration crashed"),
    ("asyncua.client.ua_session.UaSession", "close_session was called but connection is closed"),
)


class _AsyncuaNoise(logging.Filter):
    def __init__(self, starts: tuple[str, ...]) -> None:
        super().__init__()
        self._starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG or not str(record.msg).startswith(self._starts):
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def quiet_asyncua() -> None:
    """Install the filters of _ASYNCUA_NOISE (once)."""
    for name in {n for n, _ in _ASYNCUA_NOISE}:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _AsyncuaNoise) for f in logger.filters):
            logger.addFilter(_AsyncuaNoise(tuple(m for n, m in _ASYNCUA_NOISE if n == name)))


def status_name(code: int) -> str:
    with contextlib.suppress(Exception):
        return ua.StatusCode(ua.UInt32(code)).name
    return f"0x{code:08X}"


class Diagnosis(Security):
    """Turns what asyncua raises into :class:`~config.errors.ConnectError` (see the module)."""

    _channel_open: bool  # the last connect opened its secure channel
    _lost: str | None
    _lost_exc: BaseException | None
    _lost_event: asyncio.Event

    def _connect_error(self, exc: BaseException, doing: str) -> ConnectError:
        """The one place asyncua exceptions become tierproof errors."""
        d = self._dev
        if self._untrusted is not None:
            subject, thumb = self._untrusted
            return ConnectError(
                f"{d.name}: the server certificate of {d.endpoint} ({subject}, SHA-1 thumbprint "
                f"{thumb}) is not trusted: if it is the right server, add its certificate file "
                f"to devices[{d.name}].trusted_certificates"
            )
        code = getattr(exc, "code", None)
        connecting = doing == "connect to"
        if connecting and not self._channel_open and isinstance(exc, TimeoutError | asyncio.TimeoutError):
            return self._unreachable(exc)
        if connecting and not self._channel_open and d.security_policy != "None":
            return self._channel_refused(code)
        if isinstance(code, int) and code in _AUTH_CODES and connecting:
            if d.username is not None:
                return ConnectError(
                    f"{d.name}: {d.endpoint} rejected user {d.username!r} ({status_name(code)}): "
                    "check username and password"
                )
            return ConnectError(
                f"{d.name}: {d.endpoint} rejected anonymous access ({status_name(code)}): the "
                "server wants a user: set username and password"
            )
        if connecting and not self._channel_open and isinstance(exc, OSError | TimeoutError):
            return self._unreachable(exc)
        if isinstance(code, int):
            reason = status_name(code)
        elif isinstance(exc, TimeoutError | asyncio.TimeoutError):
            reason = f"no answer within {d.timeout_s:g} s (timeout_s)"
        elif isinstance(exc, OSError):
            reason = f"the connection failed ({exc.strerror or exc or 'closed'})"
        else:
            reason = _describe(exc)
        return ConnectError(f"{d.name}: cannot {doing} {d.endpoint}: {reason}")

    def _channel_refused(self, code: int | None) -> ConnectError:
        """The server refused the secure channel: its verdict on the client certificate."""
        d = self._dev
        status = f" ({status_name(code)})" if isinstance(code, int) else ""
        which = f"the client certificate {d.certificate}"
        with contextlib.suppress(OSError, ValueError):
            assert d.certificate is not None
            cert = load_cert(d.certificate)
            which += f" (SHA-1 thumbprint {thumbprint(cert)})"
            now = datetime.now(UTC)
            if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                return self._cannot_connect(
                    f"the server refused the secure channel{status}: {which} is valid only from "
                    f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}: "
                    "issue a new client certificate and trust it on the server")
        return self._cannot_connect(
            f"the server refused the secure channel{status}: it does not trust {which}: trust "
            "it on the server (many servers keep a refused certificate in their PKI's rejected "
            "folder: move it to trusted)")

    @contextlib.contextmanager
    def _translate(self, doing: str) -> Iterator[None]:
        try:
            yield
        except ConnectError:
            raise
        except _UA_ERRORS as exc:
            raise self._connect_error(exc, doing) from exc

    def _connection_lost(self, reason: str, exc: BaseException | None) -> None:
        if self._lost is None:
            self._lost, self._lost_exc = reason, exc
            log.warning("%s: connection lost: %s", self._dev.name, reason)
        self._lost_event.set()

    async def _on_connection_lost(self, exc: Exception) -> None:
        code = getattr(exc, "code", None)
        if isinstance(code, int):
            reason = f"the server ended the session ({status_name(code)})"
        elif isinstance(exc, TimeoutError | asyncio.TimeoutError):
            reason = "the server stopped answering (keep-alive timed out)"
        elif isinstance(exc, OSError):  # ConnectionError included
            reason = f"the server closed the connection, or the network dropped it ({exc or 'closed'})"
        else:
            reason = _describe(exc)
        self._connection_lost(reason, exc)

    def _raise_if_lost(self) -> None:
        if self._lost is not None:
            err = ConnectError(f"{self._dev.name}: connection to {self._dev.endpoint} lost: {self._lost}")
            if self._lost_exc is not None:
                raise err from self._lost_exc
            raise err

    async def _endpoint(self, client: Client) -> ua.EndpointDescription:
        """The server's endpoint for the device's security policy and mode (GetEndpoints over
        an unsecured channel, as every server allows); ConnectError naming what it offers."""
        d = self._dev
        try:
            endpoints = await client.connect_and_get_server_endpoints()
        except Exception as exc:
            raise self._unreachable(exc) from exc
        policy_uri = POLICY_URIS[d.security_policy]
        mode = MODES[d.security_mode]
        offered = [ep for ep in endpoints if ep.EndpointUrl.startswith(ua.OPC_TCP_SCHEME)]
        chosen = next((ep for ep in offered
                       if ep.SecurityPolicyUri == policy_uri and ep.SecurityMode == mode), None)
        if chosen is None:
            raise self._cannot_connect(
                f"the server offers no endpoint with security policy {d.security_policy} and mode "
                f"{d.security_mode}, only {offers(offered)}: set security_policy and "
                f"security_mode to one of these")
        path = urlparse(d.endpoint).path.rstrip("/")
        urls = sorted({ep.EndpointUrl for ep in offered})
        if urls and all(urlparse(u).path.rstrip("/") != path for u in urls):
            self._once(("path", tuple(urls)), logging.WARNING,
                       "%s: %s is not an endpoint URL of the server, which offers %s; it answers "
                       "anyway (some servers refuse): correct the path of devices[%s].endpoint",
                       d.name, d.endpoint, ", ".join(urls), d.name)
        if d.username is not None:
            self._check_user_token(chosen, offered)
        return chosen

    def _unreachable(self, exc: BaseException) -> ConnectError:
        """A failure to reach the server at all, as cause and fix."""
        d = self._dev
        url = urlparse(d.endpoint)
        host, port = url.hostname or "", url.port or 4840
        if isinstance(exc, socket.gaierror):
            return self._cannot_connect(
                f"the host name {host!r} does not resolve ({exc.strerror}): check the host of "
                f"devices[{d.name}].endpoint, or use the server's IP address")
        if isinstance(exc, ConnectionRefusedError):
            return self._cannot_connect(
                f"nothing accepts connections on {host} port {port} (connection refused): check "
                "the port of the endpoint and that the OPC UA server is running")
        if isinstance(exc, TimeoutError | asyncio.TimeoutError):
            return self._cannot_connect(
                f"no answer from {host} port {port} within {d.timeout_s:g} s: check that the "
                "host is reachable from the gateway (network, firewall) and serves OPC UA on that "
                "port")
        if isinstance(exc, ConnectionError):  # reset or closed during the handshake
            return self._cannot_connect(
                f"{host} port {port} closed the connection during the OPC UA handshake "
                f"({exc.strerror or exc or 'closed'}): check that the port is the OPC UA server's")
        if isinstance(exc, OSError):
            return self._cannot_connect(
                f"cannot reach {host} port {port} ({exc.strerror or exc}): check the "
                "network between the gateway and the server")
        code = getattr(exc, "code", None)
        if isinstance(code, int):
            return self._cannot_connect(
                f"the server refused to list its endpoints ({status_name(code)}): check the "
                "endpoint URL")
        return self._cannot_connect(
            f"the server did not answer as an OPC UA server ({exc or type(exc).__name__}): check the "
            "endpoint URL")
