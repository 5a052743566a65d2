"""OPC UA collector: monitored items in subscriptions, or batched reads on a poll interval.

**subscribe** (default): the tags are split over subscriptions of at most
``max_items_per_subscription`` monitored items, created with the configured publishing and
sampling intervals, queue size and deadband. Each data-change notification appends one row
(tag index, timestamp, value, quality, text) to plain lists; :meth:`OpcUaCollector.batches`
turns what arrived into one columnar :class:`~store.batch.Batch` every publishing interval.
No notification object is kept past its handler call.

**poll**: every ``poll_interval_s`` one Read service call reads the Value of all tags (a
drift-free grid, missed ticks skipped like the Modbus collector's).

Timestamps: all three are kept, as columns of the Batch. ``ts_ns`` (the time KPIs use) is
the **source** timestamp when the server sends one, else the server timestamp, else the
gateway's clock at arrival; ``server_ts_ns`` is the ServerTimestamp (``TS_UNKNOWN`` when the
server sends none); ``gateway_ts_ns`` is the collector's clock when the value arrived (a
notification's handler call, or the return of a poll's Read). A timestamp a store cannot
hold (:func:`config.times.datetime_ns`: the null date 1601-01-01 that node-opcua sends as
ServerTimestamp, before 1970, after 2262) counts as not sent; a value that cannot be
converted is BAD_CONFIG. Neither costs the other samples of the batch.

Quality: the StatusCode's severity: Good -> GOOD, Uncertain -> UNCERTAIN, Bad -> BAD with
value NaN (never the last good value). A node the server does not know (or a ``nsu=``
namespace it does not have) is ``BAD_CONFIG`` with the reason in :attr:`tag_errors`; the
other tags keep going. Booleans are stored as 0/1, strings (and other texts) in
``Batch.text``; a value of another type (arrays, structures) is ``BAD_CONFIG``.

Connecting first lists the server's endpoints (GetEndpoints, unsecured as every server
allows), so that each error a user can cause is one sentence naming the device, the cause
and the fix, not an asyncua exception: an unreachable or silent host, a policy or mode the
server does not offer (with those it offers), a server certificate that is untrusted,
expired or issued for another host (refused with ``trusted_certificates``, logged once
without), a client certificate the server refuses (its file and thumbprint), a refused or
unoffered user. asyncua's log records of those refusals are kept at DEBUG.

A lost connection (the client's keep-alive probe fails, the transport closes, a subscription
reports a bad status) or a failed request raises :class:`~config.errors.ConnectError` out of
:meth:`batches`. asyncua's own reconnect (``auto_reconnect``) stays off: the supervisor
reconnects, and the new collector creates its subscriptions on the new connection.

Browse-path discovery: the device's ``browse`` rules (:class:`~config.opcua.BrowseRule`)
are resolved against the server at every connect; what they find is in
:attr:`OpcUaCollector.discovered`, the supervisor registers those tags in the store and hands
their ids to :meth:`OpcUaCollector.adopt`, and they are collected like configured tags (a tag
path that is configured already keeps its configured address). :func:`discover` (on a
connected client) and :func:`discover_tags` (connects, browses, disconnects) return the same
tags for ``tierproof`` users who prefer to paste them into ``tags``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import ipaddress
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlparse

import numpy as np
import numpy.typing as npt
from asyncua import Client, Node, ua
from asyncua.common.subscription import DataChangeNotif, Subscription
from asyncua.common.utils import ServiceError
from asyncua.crypto import security_policies, uacrypto
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from config.base import DeviceBase
from config.errors import ConfigError, ConnectError
from config.opcua import BrowseRule, OpcUaDevice, OpcUaTag, parse_node_id
from config.signals import Quality
from config.times import datetime_ns
from store.batch import TS_UNKNOWN, Batch

from ..base import scaling, unregistered_tags

__all__ = ["MAX_BROWSE_NODES", "OpcUaCollector", "discover", "discover_tags", "thumbprint"]

log = logging.getLogger("tierproof.collector.opcua")

_POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
_MODES = {
    "None": ua.MessageSecurityMode.None_,
    "Sign": ua.MessageSecurityMode.Sign,
    "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
}
_POLICY_URIS = {
    "None": security_policies.SecurityPolicyNone.URI,
    **{name: cls.URI for name, cls in _POLICIES.items()},
}
_MODE_NAMES = {v: k for k, v in _MODES.items()}
_SESSION_TIMEOUT_MS = 600_000
_DEADBAND = {"none": 0, "absolute": 1, "percent": 2}
#: status codes that say the configuration is wrong, not the value
_CONFIG_CODES = frozenset({
    ua.StatusCodes.BadNodeIdUnknown,
    ua.StatusCodes.BadNodeIdInvalid,
    ua.StatusCodes.BadAttributeIdInvalid,
    ua.StatusCodes.BadNotReadable,
    ua.StatusCodes.BadUserAccessDenied,
    ua.StatusCodes.BadDeadbandFilterInvalid,
    ua.StatusCodes.BadFilterNotAllowed,
    ua.StatusCodes.BadMonitoredItemFilterUnsupported,
})
_AUTH_CODES = frozenset({
    ua.StatusCodes.BadUserAccessDenied,
    ua.StatusCodes.BadIdentityTokenRejected,
    ua.StatusCodes.BadIdentityTokenInvalid,
})
#: every exception asyncua (and the socket under it) raises for a failed request
_UA_ERRORS: tuple[type[BaseException], ...] = (ua.UaError, OSError, TimeoutError, asyncio.TimeoutError)


def thumbprint(cert: x509.Certificate) -> str:
    """SHA-1 thumbprint as OPC UA tools show it: upper-case hex, colon-separated."""
    return cert.fingerprint(hashes.SHA1()).hex(":").upper()


def _load_cert(path: str) -> x509.Certificate:
    data = Path(path).read_bytes()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


#: (device, what...) of the configuration messages logged already (see OpcUaCollector._once)
_LOGGED_ONCE: set[tuple[Any, ...]] = set()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _offers(endpoints: list[ua.EndpointDescription]) -> str:
    """'None/None, Basic256Sha256/SignAndEncrypt': the security policy/mode pairs offered."""
    pairs: list[str] = []
    for ep in endpoints:
        policy = ep.SecurityPolicyUri.rsplit("#", 1)[-1]
        mode = _MODE_NAMES.get(ep.SecurityMode, str(ep.SecurityMode))
        if f"{policy}/{mode}" not in pairs:
            pairs.append(f"{policy}/{mode}")
    return ", ".join(pairs) or "nothing"


def _first_der(chain: bytes) -> bytes:
    """The first certificate of a DER chain (an endpoint may send its issuers after it)."""
    if len(chain) > 4 and chain[0] == 0x30 and chain[1] & 0x80:
        n = chain[1] & 0x7F
        length = int.from_bytes(chain[2:2 + n], "big")
        return chain[:2 + n + length]
    return chain


def _cert_hosts(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses a certificate is issued for (its common name if it
    has no subject alternative names)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return [*san.get_values_for_type(x509.DNSName),
            *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))]


def _names_host(names: list[str], host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host.lower().rstrip(".") in {n.lower().rstrip(".") for n in names}
    return any(n == str(ip) for n in names)


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


def _quiet_asyncua() -> None:
    """Install the filters of _ASYNCUA_NOISE (once)."""
    for name in {n for n, _ in _ASYNCUA_NOISE}:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _AsyncuaNoise) for f in logger.filters):
            logger.addFilter(_AsyncuaNoise(tuple(m for n, m in _ASYNCUA_NOISE if n == name)))


def _known_ns(dt: datetime | None) -> int | None:
    """A UA DateTime in ns, or None when the server sent none or one a store cannot hold
    (the null date 1601-01-01 that node-opcua sends as ServerTimestamp, before 1970, after
    2262): an unknown timestamp, never an error."""
    return None if dt is None else datetime_ns(dt)


def _server_ns(dv: ua.DataValue | None) -> int:
    """A value's ServerTimestamp in ns, or TS_UNKNOWN when it is unknown."""
    ns = _known_ns(dv.ServerTimestamp) if dv is not None else None
    return TS_UNKNOWN if ns is None else ns


def _severity(code: int) -> Quality:
    sev = code & 0xC0000000
    if sev == 0:
        return Quality.GOOD
    if sev == 0x40000000:
        return Quality.UNCERTAIN
    return Quality.BAD


def _status_name(code: int) -> str:
    with contextlib.suppress(Exception):
        return ua.StatusCode(ua.UInt32(code)).name
    return f"0x{code:08X}"


@dataclass(slots=True)
class OpcUaStats:
    notifications: int = 0
    reads: int = 0
    overruns: int = 0


class _SubHandler:
    """Data changes of one subscription; client handle k is tag ``members[k - 1]``."""

    def __init__(self, owner: OpcUaCollector, members: list[int]) -> None:
        self._owner = owner
        self._members = members

    def datachange_notification(self, node: Node, val: Any, data: DataChangeNotif) -> None:
        handle = data.subscription_data.client_handle
        if handle is None or not 0 < handle <= len(self._members):
            return
        self._owner._record(self._members[handle - 1], data.monitored_item.Value)

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        code = status.Status.value if status.Status is not None else 0
        if code & 0x80000000:
            self._owner._connection_lost(
                f"subscription status {_status_name(code)}", None
            )


class OpcUaCollector:
    """Collects one :class:`~config.opcua.OpcUaDevice`.

    ``tag_ids`` maps tag paths to store ids; every tag of the device must be in it.
    """

    device: DeviceBase

    def __init__(
        self,
        device: DeviceBase,
        tag_ids: Mapping[str, int],
        *,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if not isinstance(device, OpcUaDevice):
            raise ConfigError(f"device {device.name}: OpcUaCollector needs an opcua device")
        self.device = device
        self._dev = device
        self._tags: list[OpcUaTag] = list(device.tags)
        self._clock = clock
        problems = unregistered_tags(device, self._tags, tag_ids)
        for field in ("certificate", "private_key"):
            p = getattr(device, field)
            if p is not None and not Path(p).is_file():
                problems.append((f"devices[{device.name}].{field}", f"no file {p}"))
        self._trusted: dict[str, str] = {}  # thumbprint -> file
        for i, p in enumerate(device.trusted_certificates):
            try:
                self._trusted[thumbprint(_load_cert(p))] = p
            except (OSError, ValueError) as exc:
                problems.append((f"devices[{device.name}].trusted_certificates[{i}]",
                                 f"cannot read certificate {p}: {exc}"))
        if problems:
            raise ConfigError(f"device {device.name}: cannot collect its tags", problems)
        self._ids = np.array([tag_ids[t.path] for t in self._tags], dtype=np.int32)
        self._scaling = scaling(self._tags)
        #: tag path -> why the server refuses it
        self.tag_errors: dict[str, str] = {}
        #: tags the device's browse rules found at connect (not collected; see discover_tags)
        self.discovered: list[OpcUaTag] = []
        #: "browse[i]" -> why that browse rule found nothing at connect
        self.browse_errors: dict[str, str] = {}
        self.stats = OpcUaStats()
        self._client: Client | None = None
        self._nodes: list[ua.NodeId | None] = []  # resolved at connect; None: unresolvable
        self._subs: list[Subscription] = []
        self._lost: str | None = None
        self._lost_exc: BaseException | None = None
        self._lost_event = asyncio.Event()
        self._untrusted: tuple[str, str] | None = None  # (subject, thumbprint) refused
        self._channel_open = False  # the last connect opened its secure channel
        # rows received since the last batch (subscribe mode)
        self._r_idx: list[int] = []
        self._r_ts: list[int] = []
        self._r_sts: list[int] = []  # server timestamps (TS_UNKNOWN: none)
        self._r_gts: list[int] = []  # the gateway's clock at arrival
        self._r_val: list[float] = []
        self._r_q: list[int] = []
        self._r_text: list[str | None] = []
        self._r_has_text = False

    # ------------------------------------------------------------------ errors

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
                    f"{d.name}: {d.endpoint} rejected user {d.username!r} ({_status_name(code)}): "
                    "check username and password"
                )
            return ConnectError(
                f"{d.name}: {d.endpoint} rejected anonymous access ({_status_name(code)}): the "
                "server wants a user: set username and password"
            )
        if connecting and not self._channel_open and isinstance(exc, OSError | TimeoutError):
            return self._unreachable(exc)
        if isinstance(code, int):
            reason = _status_name(code)
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
        status = f" ({_status_name(code)})" if isinstance(code, int) else ""
        which = f"the client certificate {d.certificate}"
        with contextlib.suppress(OSError, ValueError):
            assert d.certificate is not None
            cert = _load_cert(d.certificate)
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
            reason = f"the server ended the session ({_status_name(code)})"
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

    # ------------------------------------------------------------------ connection

    async def _validate_server_cert(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        # the certificate of the session: the one checked before connecting, unless the
        # server presents another one
        thumb = thumbprint(cert)
        if thumb not in self._trusted:
            self._untrusted = (cert.subject.rfc4514_string(), thumb)
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

    async def __aenter__(self) -> Self:
        d = self._dev
        _quiet_asyncua()
        client = Client(d.endpoint, timeout=d.timeout_s)
        client.name = client.description = f"tierproof {d.name}"
        # asyncua asks for an hour, servers revise it and asyncua warns at every connect;
        # ten minutes is within what servers grant (node-opcua: at most 50 min)
        client.session_timeout = _SESSION_TIMEOUT_MS
        if d.username is not None and d.password is not None:
            client.set_user(d.username)
            client.set_password(d.password.get_secret_value())
        if self._trusted:
            client.certificate_validator = self._validate_server_cert
        try:
            try:
                endpoint = await self._endpoint(client)
                if d.security_policy != "None":
                    await self._set_security(client, endpoint)
                await self._connect(client)
            except ConnectError:
                raise
            except Exception as exc:
                # asyncua fails some refusals with internal errors (an AssertionError for a
                # refused OpenSecureChannel): every failure to connect is a ConnectError
                raise self._connect_error(exc, "connect to") from exc
            self._client = client
            client.connection_lost_callback = self._on_connection_lost
            with self._translate("read the namespace array of"):
                await self._resolve()
            if d.browse:
                with self._translate("browse"):
                    self.discovered = await self._discover(client)
        except BaseException:
            await self._disconnect(client)
            self._client = None
            raise
        return self

    def _cannot_connect(self, cause: str) -> ConnectError:
        return ConnectError(f"{self._dev.name}: cannot connect to {self._dev.endpoint}: {cause}")

    async def _endpoint(self, client: Client) -> ua.EndpointDescription:
        """The server's endpoint for the device's security policy and mode (GetEndpoints over
        an unsecured channel, as every server allows); ConnectError naming what it offers."""
        d = self._dev
        try:
            endpoints = await client.connect_and_get_server_endpoints()
        except Exception as exc:
            raise self._unreachable(exc) from exc
        policy_uri = _POLICY_URIS[d.security_policy]
        mode = _MODES[d.security_mode]
        offered = [ep for ep in endpoints if ep.EndpointUrl.startswith(ua.OPC_TCP_SCHEME)]
        chosen = next((ep for ep in offered
                       if ep.SecurityPolicyUri == policy_uri and ep.SecurityMode == mode), None)
        if chosen is None:
            raise self._cannot_connect(
                f"the server offers no endpoint with security policy {d.security_policy} and mode "
                f"{d.security_mode}, only {_offers(offered)}: set security_policy and "
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
                f"the server refused to list its endpoints ({_status_name(code)}): check the "
                "endpoint URL")
        return self._cannot_connect(
            f"the server did not answer as an OPC UA server ({exc or type(exc).__name__}): check the "
            "endpoint URL")

    def _check_user_token(self, chosen: ua.EndpointDescription,
                          offered: list[ua.EndpointDescription]) -> None:
        d = self._dev
        tokens = [t for t in chosen.UserIdentityTokens or []
                  if t.TokenType == ua.UserTokenType.UserName]
        if not tokens:
            with_users = [ep for ep in offered if any(
                t.TokenType == ua.UserTokenType.UserName for t in ep.UserIdentityTokens or [])]
            if with_users:
                raise self._cannot_connect(
                    f"the endpoint with security policy {d.security_policy} and mode "
                    f"{d.security_mode} accepts no user name and password, those with "
                    f"{_offers(with_users)} do: set security_policy and security_mode to one "
                    "of these")
            raise self._cannot_connect(
                "no endpoint of the server accepts a user name and password: remove username "
                "and password, or enable users on the server")
        if all(not t.SecurityPolicyUri or t.SecurityPolicyUri == _POLICY_URIS["None"]
               for t in tokens) and d.security_mode != "SignAndEncrypt":
            self._once(("plain-password",), logging.WARNING,
                       "%s: %s receives the password of user %r unencrypted (security mode %s, and "
                       "the server asks for no password encryption): use security_mode "
                       "SignAndEncrypt", d.name, d.endpoint, d.username, d.security_mode)

    async def _set_security(self, client: Client, endpoint: ua.EndpointDescription) -> None:
        """Check the server certificate of ``endpoint`` and secure the channel with the
        client certificate (asyncua's set_security would fetch the endpoints a second time
        and warn at every connect about the client certificate's host name)."""
        d = self._dev
        assert d.certificate is not None and d.private_key is not None
        if not endpoint.ServerCertificate:
            raise self._cannot_connect(
                f"the endpoint with security policy {d.security_policy} has no server certificate")
        server_der = _first_der(endpoint.ServerCertificate)
        self._check_server_cert(x509.load_der_x509_certificate(server_der))
        cert = await uacrypto.load_certificate(d.certificate)
        key = await uacrypto.load_private_key(d.private_key)
        self._check_client_cert(cert)
        with contextlib.suppress(x509.ExtensionNotFound):
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
            if uris:  # the server checks that the certificate names this client
                client.application_uri = uris[0]
        policy = _POLICIES[d.security_policy](
            uacrypto.x509_from_der(server_der), cert, key, _MODES[d.security_mode])
        client.security_policy = policy  # type: ignore[assignment]  # asyncua types it as None policy
        client.uaclient.set_security(policy)

    def _check_server_cert(self, cert: x509.Certificate) -> None:
        """Trust list, validity and host name of the server certificate. With a trust list
        a problem refuses the server; without one (any server is trusted) it is logged once."""
        d = self._dev
        thumb = thumbprint(cert)
        subject = cert.subject.rfc4514_string()
        which = f"the server certificate of {d.endpoint} ({subject}, SHA-1 thumbprint {thumb})"
        if self._trusted and thumb not in self._trusted:
            self._untrusted = (subject, thumb)
            raise ConnectError(
                f"{d.name}: {which} is not trusted: if it is the right server, add its "
                f"certificate file to devices[{d.name}].trusted_certificates")
        problems: list[tuple[str, str]] = []
        now = datetime.now(UTC)
        if cert.not_valid_after_utc < now:
            problems.append((f"expired on {cert.not_valid_after_utc:%Y-%m-%d}",
                             "renew the server's certificate"))
        elif cert.not_valid_before_utc > now:
            problems.append((f"is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
                             "check the clocks of the gateway and the server"))
        host = urlparse(d.endpoint).hostname or ""
        names = _cert_hosts(cert)
        if not _names_host(names, host):
            problems.append((
                f"is issued for {', '.join(names) or 'no host name'}, not {host}",
                f"use a host the certificate names in devices[{d.name}].endpoint, or issue the "
                f"server's certificate for {host}"))
        if not problems:
            return
        cause = " and ".join(c for c, _ in problems)
        fix = ", and ".join(f for _, f in problems)
        if self._trusted:
            raise ConnectError(f"{d.name}: {which} {cause}: {fix}")
        self._once(("server-cert", thumb, cause), logging.WARNING,
                   "%s: %s %s; accepted because devices[%s].trusted_certificates is empty (any "
                   "server certificate is trusted): %s", d.name, which, cause, d.name, fix)

    def _check_client_cert(self, cert: x509.Certificate) -> None:
        """What asyncua would warn about at every connect, said once: a client certificate
        that has expired (the server will refuse it) or does not name this host (servers
        seldom check that)."""
        d = self._dev
        which = f"the client certificate {d.certificate} (SHA-1 thumbprint {thumbprint(cert)})"
        now = datetime.now(UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            self._once(("client-time", which), logging.WARNING,
                       "%s: %s is valid only from %s to %s: servers refuse it; issue a new one and "
                       "trust it on the server", d.name, which, cert.not_valid_before_utc,
                       cert.not_valid_after_utc)
        me = socket.gethostname()
        names = _cert_hosts(cert)
        if not _names_host(names, me):
            self._once(("client-host", which, me), logging.INFO,
                       "%s: %s is issued for %s, not this gateway's host name %s: most servers "
                       "accept that; one that refuses it needs a certificate issued for %s",
                       d.name, which, ", ".join(names) or "no host name", me, me)

    def _once(self, key: tuple[Any, ...], level: int, msg: str, *args: Any) -> None:
        """Log a message about this device's configuration once per process, not at every
        reconnect."""
        full = (self._dev.name, *key)
        if full not in _LOGGED_ONCE:
            _LOGGED_ONCE.add(full)
            log.log(level, msg, *args)

    async def _connect(self, client: Client) -> None:
        """asyncua's connect, noting whether the secure channel opened: a server refuses the
        client certificate there, and asyncua cannot say so (it fails decoding the answer)."""
        self._channel_open = False
        open_channel = client.open_secure_channel

        async def noted(renew: bool = False) -> None:
            await open_channel(renew)
            self._channel_open = True

        setattr(client, "open_secure_channel", noted)  # noqa: B010 (an instance attribute)
        try:
            await client.connect()
        finally:
            with contextlib.suppress(AttributeError):
                delattr(client, "open_secure_channel")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        self._subs = []
        if client is not None:
            await self._disconnect(client)

    async def _disconnect(self, client: Client) -> None:
        # the server may be gone already: closing is best effort and bounded
        try:
            await asyncio.wait_for(client.disconnect(), self._dev.timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("%s: disconnect: %r", self._dev.name, exc)
            with contextlib.suppress(Exception):
                client.disconnect_socket()

    async def _resolve(self) -> None:
        """Node ids of the tags; ``nsu=`` namespaces through the server's namespace array."""
        assert self._client is not None
        parsed = [parse_node_id(t.node_id) for t in self._tags]
        namespaces: list[str] = []
        if any(isinstance(ns, str) for ns, _, _ in parsed):
            namespaces = await self._client.get_namespace_array()
        self._nodes = []
        for t, (ns, kind, ident) in zip(self._tags, parsed, strict=True):
            if isinstance(ns, str):
                if ns not in namespaces:
                    self._nodes.append(None)
                    self._tag_error(t, f"namespace {ns!r} is not in the server's namespace array")
                    continue
                index = namespaces.index(ns)
            else:
                index = ns
            self._nodes.append(ua.NodeId.from_string(f"ns={index};{kind}={ident}"))

    async def _discover(self, client: Client) -> list[OpcUaTag]:
        """The browse rules at connect: a rule that fails is logged, the others still count."""
        d = self._dev
        namespaces = await client.get_namespace_array()
        tags: list[OpcUaTag] = []
        self.browse_errors = {}
        for i, rule in enumerate(d.browse):
            try:
                tags += await _browse_rule(client, d, i, rule, namespaces, MAX_BROWSE_NODES)
            except ConfigError as exc:
                self.browse_errors[f"browse[{i}]"] = str(exc)
                log.warning("%s", exc)
        return _unique(d, tags)

    async def adopt(self, tag_ids: Mapping[str, int]) -> list[OpcUaTag]:
        """Collect the discovered tags that ``tag_ids`` has ids for (the supervisor registers
        :attr:`discovered` in the store, then calls this before :meth:`batches`). Returns the
        tags added."""
        known = {t.path for t in self._tags}
        new = [t for t in self.discovered if t.path in tag_ids and t.path not in known]
        if not new:
            return []
        self._tags += new
        self._ids = np.concatenate([self._ids, np.array([tag_ids[t.path] for t in new], np.int32)])
        self._scaling = scaling(self._tags)
        with self._translate("resolve the discovered nodes of"):
            await self._resolve()
        log.info("%s: collecting %d discovered tag(s)", self._dev.name, len(new))
        return new

    def _tag_error(self, t: OpcUaTag, reason: str) -> None:
        if self.tag_errors.get(t.path) != reason:
            log.warning("%s: tag %s (%s): %s", self._dev.name, t.path, t.node_id, reason)
        self.tag_errors[t.path] = reason

    # ------------------------------------------------------------------ values

    def _record(self, i: int, dv: ua.DataValue | None) -> None:
        """Append one sample of tag i (a data-change notification or a read result)."""
        self.stats.notifications += 1
        now = self._clock()
        ts, value, q, text = self._convert(i, dv, now)
        self._r_idx.append(i)
        self._r_ts.append(ts)
        self._r_sts.append(_server_ns(dv))
        self._r_gts.append(now)
        self._r_val.append(value)
        self._r_q.append(q)
        self._r_text.append(text)
        if text is not None:
            self._r_has_text = True

    def _convert(self, i: int, dv: ua.DataValue | None, now: int) -> tuple[int, float, int, str | None]:
        """(ts_ns, value, quality, text) of one sample; a value that cannot be converted is
        BAD_CONFIG with the reason in tag_errors, never an exception that loses the batch."""
        try:
            return self._convert_value(i, dv, now)
        except Exception as exc:
            self._tag_error(self._tags[i], f"cannot convert its value: {type(exc).__name__}: {exc}")
            return now, np.nan, Quality.BAD_CONFIG, None

    def _convert_value(
        self, i: int, dv: ua.DataValue | None, now: int
    ) -> tuple[int, float, int, str | None]:
        if dv is None:
            return now, np.nan, Quality.BAD, None
        # source, else server, else the gateway's clock: the first that is known
        ts = _known_ns(dv.SourceTimestamp)
        if ts is None:
            ts = _known_ns(dv.ServerTimestamp)
        if ts is None:
            ts = now
        code = dv.StatusCode.value if dv.StatusCode is not None else 0
        q = _severity(code)
        if q >= Quality.BAD:
            t = self._tags[i]
            if code & 0xFFFF0000 in _CONFIG_CODES:
                self._tag_error(t, f"the server answers {_status_name(code)}")
                return ts, np.nan, Quality.BAD_CONFIG, None
            return ts, np.nan, q, None
        if self.tag_errors:  # it reads again
            self.tag_errors.pop(self._tags[i].path, None)
        raw = dv.Value.Value if dv.Value is not None else None
        if isinstance(raw, bool):
            return ts, float(raw), q, None
        if isinstance(raw, int | float):
            return ts, float(raw), q, None
        if isinstance(raw, str):
            return ts, np.nan, q, raw
        if isinstance(raw, ua.LocalizedText):
            return ts, np.nan, q, raw.Text or ""
        if isinstance(raw, datetime):
            return ts, np.nan, q, raw.isoformat()
        if raw is None:
            return ts, np.nan, Quality.BAD, None
        self._tag_error(self._tags[i], f"values of type {type(raw).__name__} are not supported")
        return ts, np.nan, Quality.BAD_CONFIG, None

    def _batch(
        self,
        idx: npt.NDArray[np.intp],
        ts: npt.NDArray[np.int64],
        value: npt.NDArray[np.float64],
        quality: npt.NDArray[np.uint8],
        text: npt.NDArray[np.object_] | None,
        server_ts: npt.NDArray[np.int64],
        gateway_ts: npt.NDArray[np.int64],
    ) -> Batch:
        if self._scaling is not None:
            value = self._scaling.apply(value, idx)
        return Batch(self._ids[idx], ts, value, quality, text, server_ts, gateway_ts)

    def _drain(self) -> Batch:
        """The rows received since the last call, as one batch."""
        if not self._r_idx:
            return Batch.empty()
        idx = np.array(self._r_idx, dtype=np.intp)
        ts = np.array(self._r_ts, dtype=np.int64)
        server_ts = np.array(self._r_sts, dtype=np.int64)
        gateway_ts = np.array(self._r_gts, dtype=np.int64)
        value = np.array(self._r_val, dtype=np.float64)
        quality = np.array(self._r_q, dtype=np.uint8)
        text = np.array(self._r_text, dtype=object) if self._r_has_text else None
        self._r_idx, self._r_ts, self._r_val, self._r_q, self._r_text = [], [], [], [], []
        self._r_sts, self._r_gts = [], []
        self._r_has_text = False
        return self._batch(idx, ts, value, quality, text, server_ts, gateway_ts)

    # ------------------------------------------------------------------ batches

    async def batches(self) -> AsyncIterator[Batch]:
        """Batches until the connection is lost (ConnectError)."""
        if self._client is None:
            raise ConnectError(f"{self._dev.name}: not connected (use 'async with collector')")
        if self._dev.mode == "poll":
            async for b in self._poll_batches():
                yield b
        else:
            async for b in self._subscribe_batches():
                yield b

    def _unresolved_rows(self) -> None:
        now = self._clock()
        for i, node in enumerate(self._nodes):
            if node is None:
                self._r_idx.append(i)
                self._r_ts.append(now)
                self._r_sts.append(TS_UNKNOWN)
                self._r_gts.append(now)
                self._r_val.append(np.nan)
                self._r_q.append(Quality.BAD_CONFIG)
                self._r_text.append(None)

    async def _subscribe_batches(self) -> AsyncIterator[Batch]:
        client = self._client
        assert client is not None
        d = self._dev
        self._unresolved_rows()
        members = [i for i, n in enumerate(self._nodes) if n is not None]
        size = d.max_items_per_subscription
        with self._translate("subscribe to"):
            for start in range(0, len(members), size):
                await self._subscribe(client, members[start:start + size])
        interval = d.publishing_interval_ms / 1000.0
        while True:
            self._raise_if_lost()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost_event.wait(), interval)
            self._raise_if_lost()
            batch = self._drain()
            if len(batch):
                yield batch

    async def _subscribe(self, client: Client, chunk: list[int]) -> None:
        d = self._dev
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = d.publishing_interval_ms
        keepalive = client.get_keepalive_count(d.publishing_interval_ms)
        params.RequestedMaxKeepAliveCount = keepalive
        # the lifetime must be at least three keep-alives (Part 4 5.13.2); servers revise a
        # shorter one and asyncua then warns at every subscription
        params.RequestedLifetimeCount = max(10000, 3 * keepalive)
        params.MaxNotificationsPerPublish = 0  # no limit
        params.PublishingEnabled = True
        params.Priority = 0
        sub = await client.create_subscription(params, _SubHandler(self, chunk))
        self._subs.append(sub)
        mfilter: ua.DataChangeFilter | None = None
        if d.deadband.type != "none":
            mfilter = ua.DataChangeFilter(
                Trigger=ua.DataChangeTrigger.StatusValue,
                DeadbandType=_DEADBAND[d.deadband.type],
                DeadbandValue=d.deadband.value,
            )
        requests = []
        for k, i in enumerate(chunk, start=1):
            rv = ua.ReadValueId()
            rv.NodeId = self._nodes[i]
            rv.AttributeId = ua.AttributeIds.Value
            mp = ua.MonitoringParameters()
            mp.ClientHandle = k
            mp.SamplingInterval = d.sampling_ms
            mp.QueueSize = d.queue_size
            mp.DiscardOldest = True
            if mfilter is not None:
                mp.Filter = mfilter
            mir = ua.MonitoredItemCreateRequest()
            mir.ItemToMonitor = rv
            mir.MonitoringMode = ua.MonitoringMode.Reporting
            mir.RequestedParameters = mp
            requests.append(mir)
        results = await sub.create_monitored_items(requests)
        now = self._clock()
        for i, res in zip(chunk, results, strict=True):
            if isinstance(res, ua.StatusCode):
                code = res.value
                t = self._tags[i]
                self._tag_error(t, f"the server refuses to monitor it: {_status_name(code)}")
                q = Quality.BAD_CONFIG if code & 0xFFFF0000 in _CONFIG_CODES else Quality.BAD
                self._r_idx.append(i)
                self._r_ts.append(now)
                self._r_sts.append(TS_UNKNOWN)
                self._r_gts.append(now)
                self._r_val.append(np.nan)
                self._r_q.append(q)
                self._r_text.append(None)

    async def _poll_batches(self) -> AsyncIterator[Batch]:
        client = self._client
        assert client is not None
        members = [i for i, n in enumerate(self._nodes) if n is not None]
        missing = [i for i, n in enumerate(self._nodes) if n is None]
        params = ua.ReadParameters()
        params.MaxAge = 0
        params.TimestampsToReturn = ua.TimestampsToReturn.Both
        for i in members:
            rv = ua.ReadValueId()
            rv.NodeId = self._nodes[i]
            rv.AttributeId = ua.AttributeIds.Value
            params.NodesToRead.append(rv)
        order = np.array(members + missing, dtype=np.intp)
        n = len(order)
        loop = asyncio.get_running_loop()
        interval = self._dev.poll_interval_s
        due = loop.time()
        while True:
            self._raise_if_lost()
            results: list[ua.DataValue] = []
            if members:
                with self._translate("read from"):
                    results = await client.uaclient.read(params)
                self.stats.reads += 1
            now = self._clock()
            ts = np.full(n, now, dtype=np.int64)
            server_ts = np.full(n, TS_UNKNOWN, dtype=np.int64)
            value = np.full(n, np.nan, dtype=np.float64)
            quality = np.full(n, Quality.BAD_CONFIG, dtype=np.uint8)
            text: npt.NDArray[np.object_] | None = None
            for j, (i, dv) in enumerate(zip(members, results, strict=False)):
                ts[j], value[j], quality[j], s = self._convert(i, dv, now)
                server_ts[j] = _server_ns(dv)
                if s is not None:
                    if text is None:
                        text = np.full(n, None, dtype=object)
                    text[j] = s
            if n:
                yield self._batch(order, ts, value, quality, text, server_ts,
                                  np.full(n, now, dtype=np.int64))
            due += interval
            now_t = loop.time()
            if due <= now_t:
                missed = int((now_t - due) // interval) + 1
                due += missed * interval
                self.stats.overruns += missed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost_event.wait(), due - now_t)


# --------------------------------------------------------------------------- browse discovery

#: hard cap on the nodes one browse rule visits (a server with a huge address space)
MAX_BROWSE_NODES = 50_000
_BROWSE_CHUNK = 500  # nodes per Browse request
_NOT_TAG_CHAR = re.compile(r"[^A-Za-z0-9_.\-]")


def _tag_name(prefix: str, path: tuple[str, ...]) -> str:
    return _NOT_TAG_CHAR.sub("_", prefix + ".".join(path))


def _node_id_text(nid: ua.NodeId, namespaces: list[str]) -> str:
    """The node id as config text; ``nsu=`` for namespaces above 0 (indices may change)."""
    text: str = nid.to_string()
    idx = nid.NamespaceIndex
    if 0 < idx < len(namespaces) and ";" not in namespaces[idx]:
        prefix = f"ns={idx};"
        if text.startswith(prefix):
            return f"nsu={namespaces[idx]};{text[len(prefix):]}"
    return text


async def _browse(client: Client, nodes: list[ua.NodeId]) -> list[list[ua.ReferenceDescription]]:
    """Forward hierarchical references to Objects and Variables of each node (one request)."""
    params = ua.BrowseParameters()
    params.RequestedMaxReferencesPerNode = 0
    for n in nodes:
        desc = ua.BrowseDescription()
        desc.NodeId = n
        desc.BrowseDirection = ua.BrowseDirection.Forward
        desc.ReferenceTypeId = ua.NodeId(ua.Int32(ua.ObjectIds.HierarchicalReferences))
        desc.IncludeSubtypes = True
        desc.NodeClassMask = ua.NodeClass.Object | ua.NodeClass.Variable
        desc.ResultMask = ua.BrowseResultMask.All
        params.NodesToBrowse.append(desc)
    results = await client.uaclient.browse(params)
    out: list[list[ua.ReferenceDescription]] = []
    for res in results:
        refs = list(res.References or [])
        cp = res.ContinuationPoint
        while cp:
            nxt = ua.BrowseNextParameters()
            nxt.ContinuationPoints = [cp]
            nxt.ReleaseContinuationPoints = False
            more = await client.uaclient.browse_next(nxt)
            if not more:
                break
            refs += more[0].References or []
            cp = more[0].ContinuationPoint
        out.append(refs)
    return out


async def _browse_rule(
    client: Client, device: OpcUaDevice, i: int, rule: BrowseRule, namespaces: list[str],
    max_nodes: int,
) -> list[OpcUaTag]:
    """Breadth-first from the rule's root, at most ``max_depth`` levels and ``max_nodes`` nodes."""
    where = f"devices[{device.name}].browse[{i}].root"
    what = f"device {device.name}: browse rule {i} (root {rule.root})"
    ns, kind, ident = parse_node_id(rule.root)
    if isinstance(ns, str):
        if ns not in namespaces:
            raise ConfigError(f"{what} cannot be browsed", [
                (where, f"namespace {ns!r} is not in the server's namespace array")])
        ns = namespaces.index(ns)
    root = ua.NodeId.from_string(f"ns={ns};{kind}={ident}")
    rv = ua.ReadValueId()
    rv.NodeId = root
    rv.AttributeId = ua.AttributeIds.NodeClass
    params = ua.ReadParameters()
    params.NodesToRead = [rv]
    (dv,) = await client.uaclient.read(params)
    code = dv.StatusCode.value if dv.StatusCode is not None else 0
    if code & 0x80000000:
        raise ConfigError(f"{what} cannot be browsed", [
            (where, f"the server has no node {rule.root} ({_status_name(code)})")])
    visited: set[ua.NodeId] = {root}
    frontier: list[tuple[ua.NodeId, tuple[str, ...]]] = [(root, ())]
    found: list[OpcUaTag] = []
    depth = 0
    while frontier and depth < rule.max_depth:
        depth += 1
        nxt: list[tuple[ua.NodeId, tuple[str, ...]]] = []
        for start in range(0, len(frontier), _BROWSE_CHUNK):
            chunk = frontier[start:start + _BROWSE_CHUNK]
            results = await _browse(client, [n for n, _ in chunk])
            for (_, path), refs in zip(chunk, results, strict=True):
                for ref in refs:
                    e = ref.NodeId
                    if getattr(e, "ServerIndex", 0):
                        continue  # on another server
                    nid = ua.NodeId(e.Identifier, e.NamespaceIndex, e.NodeIdType)
                    if nid in visited:
                        continue
                    if len(visited) >= max_nodes:
                        log.warning("%s: stopped after %d nodes; narrow root or max_depth",
                                    what, max_nodes)
                        return found
                    visited.add(nid)
                    name = ref.BrowseName.Name or ""
                    child = (*path, name)
                    nxt.append((nid, child))
                    if ref.NodeClass == ua.NodeClass.Variable and fnmatch.fnmatchcase(
                        name, rule.name_filter
                    ):
                        tag_name = _tag_name(rule.name_prefix, child)
                        if not tag_name:
                            continue
                        found.append(OpcUaTag(
                            name=tag_name, asset=rule.asset, role=rule.role,
                            node_id=_node_id_text(nid, namespaces),
                        ))
        frontier = nxt
    return found


def _unique(device: OpcUaDevice, tags: list[OpcUaTag]) -> list[OpcUaTag]:
    """Drop tags whose path is configured already or was found first by another node."""
    seen = {t.path for t in device.tags}
    out: list[OpcUaTag] = []
    for t in tags:
        if t.path in seen:
            log.info("%s: discovered %s (%s) skipped: tag path already used", device.name,
                     t.path, t.node_id)
            continue
        seen.add(t.path)
        out.append(t)
    return out


async def discover(client: Client, device: OpcUaDevice, *,
                   max_nodes: int = MAX_BROWSE_NODES) -> list[OpcUaTag]:
    """The tags ``device.browse`` finds on a connected client, in rule then browse order.

    A rule whose root the server does not have raises ConfigError naming
    ``devices[<name>].browse[<i>].root``. A discovered tag whose path is already configured
    (or found earlier) is left out.
    """
    namespaces = await client.get_namespace_array()
    tags: list[OpcUaTag] = []
    for i, rule in enumerate(device.browse):
        tags += await _browse_rule(client, device, i, rule, namespaces, max_nodes)
    return _unique(device, tags)


async def discover_tags(device: OpcUaDevice, *, max_nodes: int = MAX_BROWSE_NODES) -> list[OpcUaTag]:
    """Connect to ``device`` (its security and user settings), resolve its browse rules and
    return the tags found, ready to go into the device's ``tags``.

    ConfigError for a bad rule, ConnectError if the server cannot be reached.
    """
    if not isinstance(device, OpcUaDevice):
        raise ConfigError(f"device {device.name}: discover_tags needs an opcua device")
    # the connection without the tags and rules (those are not collected here)
    bare = device.model_copy(update={"tags": [], "browse": []})
    async with OpcUaCollector(bare, {}) as collector:
        client = collector._client
        assert client is not None
        with collector._translate("browse"):
            return await discover(client, device, max_nodes=max_nodes)
