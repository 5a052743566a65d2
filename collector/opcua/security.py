"""OPC UA security and trust: policies and modes, certificates, and the checks of the
server's and the client's certificate made before the secure channel opens.

:class:`Security` is a mixin of :class:`~collector.opcua.driver.OpcUaCollector` (its methods use the
collector's device and trust list); the functions are plain.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from asyncua import Client, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import security_policies, uacrypto
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from config.errors import ConnectError
from config.opcua import OpcUaDevice

__all__ = ["MODES", "POLICIES", "POLICY_URIS", "Security", "load_cert", "offers", "thumbprint"]

log = logging.getLogger("tierproof.collector.opcua")

POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
MODES = {
    "None": ua.MessageSecurityMode.None_,
    "Sign": ua.MessageSecurityMode.Sign,
    "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
}
POLICY_URIS = {
    "None": security_policies.SecurityPolicyNone.URI,
    **{name: cls.URI for name, cls in POLICIES.items()},
}
_MODE_NAMES = {v: k for k, v in MODES.items()}


def thumbprint(cert: x509.Certificate) -> str:
    """SHA-1 thumbprint as OPC UA tools show it: upper-case hex, colon-separated."""
    return cert.fingerprint(hashes.SHA1()).hex(":").upper()


def load_cert(path: str) -> x509.Certificate:
    data = Path(path).read_bytes()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


#: (device, what...) of the configuration messages logged already (see OpcUaCollector._once)
_LOGGED_ONCE: set[tuple[Any, ...]] = set()


def offers(endpoints: list[ua.EndpointDescription]) -> str:
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


class Security:
    """The trust and certificate checks of :class:`~collector.opcua.driver.OpcUaCollector`."""

    _dev: OpcUaDevice
    _trusted: dict[str, str]  # thumbprint -> file
    _untrusted: tuple[str, str] | None  # (subject, thumbprint) refused

    async def _validate_server_cert(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        # the certificate of the session: the one checked before connecting, unless the
        # server presents another one
        thumb = thumbprint(cert)
        if thumb not in self._trusted:
            self._untrusted = (cert.subject.rfc4514_string(), thumb)
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

    def _cannot_connect(self, cause: str) -> ConnectError:
        return ConnectError(f"{self._dev.name}: cannot connect to {self._dev.endpoint}: {cause}")

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
                    f"{offers(with_users)} do: set security_policy and security_mode to one "
                    "of these")
            raise self._cannot_connect(
                "no endpoint of the server accepts a user name and password: remove username "
                "and password, or enable users on the server")
        if all(not t.SecurityPolicyUri or t.SecurityPolicyUri == POLICY_URIS["None"]
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
        policy = POLICIES[d.security_policy](
            uacrypto.x509_from_der(server_der), cert, key, MODES[d.security_mode])
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
