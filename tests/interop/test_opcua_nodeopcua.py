"""tierproof's OPC UA collector against node-opcua (npm, pinned in node/package-lock.json):
a real third-party server, started as a subprocess (node/opcua_server.js), with the real
supervisor, writer and SqliteStore.

What node-opcua 2.186 does, as found here (not as our simulator does it):

- A variable set with ``setValueFromSource(value, status, sourceTimestamp)`` carries that
  SourceTimestamp and the *same* instant as ServerTimestamp. A getter-backed variable (and
  the standard ``Server_ServerStatus_CurrentTime``) carries ServerTimestamp 0, the OPC UA
  null date 1601-01-01: the regression of issue 9 (OverflowError, every batch lost).
- Its own self-signed certificate names the machine's host name (and an IP address of it),
  not 127.0.0.1.
- A client certificate it does not trust is answered with a ServiceFault
  (BadSecurityChecksFailed) to the OpenSecureChannel, which asyncua cannot decode (it fails
  with an AssertionError and logs a traceback); the certificate lands in ``pki/rejected``,
  and moving it to ``pki/trusted/certs`` lets the next connect in.
- On an endpoint with security None it offers user names only with an encrypted password
  (token policy Basic256Sha256), and only if the server offers Basic256Sha256 at all.
- It answers any endpoint path (a wrong path connects).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from peers import NODE_DIR, NodePeer
from pydantic import SecretStr

from collector import Supervisor
from collector.opcua import OpcUaCollector, thumbprint
from config.base import Backoff
from config.errors import ConnectError
from config.opcua import BrowseRule, OpcUaDevice, OpcUaTag
from config.signals import Quality
from store import TS_UNKNOWN
from store.sqlite import SqliteStore
from store.writer import Writer
from tests.helpers import FAST, free_port, register, wait_until

NS = "urn:tierproof:interop"
ASSET = "interop/opcua/line1/machine"
END = 2**62
HOST = socket.gethostname()  # what node-opcua's own certificate names
ALL_POLICIES = ["None", "Basic256Sha256", "Aes256_Sha256_RsaPss"]
ALL_MODES = ["None", "Sign", "SignAndEncrypt"]

#: the variables of opcua_server.js and how tierproof stores them
NUMBERS = ["Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64",
           "Float", "Double"]
TEXTS = ["String", "DateTime", "LocalizedText"]
STATUS = {"Bad": Quality.BAD, "Uncertain": Quality.UNCERTAIN}


# --------------------------------------------------------------------------- helpers

@dataclass
class UaServer:
    """A running node-opcua server."""

    peer: NodePeer
    port: int
    pki: Path
    info: dict[str, Any]

    def endpoint(self, host: str = "127.0.0.1", path: str = "/UA/interop") -> str:
        return f"opc.tcp://{host}:{self.port}{path}"

    @property
    def certificate(self) -> Path:
        return Path(self.info["certificate"])

    def history(self) -> dict[str, list[tuple[int, Any]]]:
        """Every value the server set: name -> [(source timestamp ns, value)]."""
        got = self.peer.command(cmd="history")["ok"]
        return {k: [(int(ms) * 1_000_000, v) for ms, v in rows] for k, rows in got.items()}

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.peer.stop(sig)


def start_server(pki: Path, port: int | None = None, trust: tuple[Path, ...] = (),
                 **options: Any) -> UaServer:
    """node opcua_server.js with ``options`` (see the script); ``trust``: client
    certificates put in its trust list before it starts."""
    (pki / "trusted" / "certs").mkdir(parents=True, exist_ok=True)
    for cert in trust:
        shutil.copy(cert, pki / "trusted" / "certs" / cert.name)
    port = port or free_port()
    peer = NodePeer("opcua_server.js", json.dumps({"port": port, "pki": str(pki), **options}))
    info = peer.start()
    return UaServer(peer, port, pki, info)


@contextlib.contextmanager
def running(pki: Path, **kw: Any) -> Iterator[UaServer]:
    server = start_server(pki, **kw)
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class Certs:
    gw: tuple[Path, Path]  # trusted by the servers (cert, key)
    stranger: tuple[Path, Path]  # never trusted
    dir: Path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("client-pki")

    async def make(name: str) -> tuple[Path, Path]:
        cert, key = d / f"{name}-cert.der", d / f"{name}-key.pem"
        await setup_self_signed_certificate(
            key, cert, f"urn:tierproof:interop:{name}", HOST, [ExtendedKeyUsageOID.CLIENT_AUTH],
            {"commonName": f"tierproof {name}"})
        return cert, key

    async def both() -> Certs:
        return Certs(await make("gw"), await make("stranger"), d)

    return asyncio.run(both())


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[UaServer]:
    """Every policy and mode, anonymous access, the gateway's certificate trusted."""
    with running(tmp_path_factory.mktemp("pki-open"), trust=(certs.gw[0],),
                 policies=ALL_POLICIES, modes=ALL_MODES) as server:
        yield server


@pytest.fixture(scope="module")
def user_server(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[UaServer]:
    """User op/secret required; None and Basic256Sha256 SignAndEncrypt only."""
    with running(tmp_path_factory.mktemp("pki-users"), trust=(certs.gw[0],),
                 policies=["None", "Basic256Sha256"], modes=["None", "SignAndEncrypt"],
                 users={"op": "secret"}) as server:
        yield server


def device(endpoint: str, names: list[str], **kw: Any) -> OpcUaDevice:
    kw.setdefault("timeout_s", 4.0)
    kw.setdefault("publishing_interval_ms", 50)
    kw.setdefault("poll_interval_s", 0.1)
    kw.setdefault("backoff", FAST)
    tags = kw.pop("tags", [OpcUaTag(name=n, asset=ASSET, node_id=f"nsu={NS};s=Machine.{n}")
                           for n in names])
    return OpcUaDevice(protocol="opcua", name=kw.pop("name", "ua1"), endpoint=endpoint,
                       tags=tags, **kw)


def secure(certs: Certs, policy: str, mode: str, cert: str = "gw", **kw: Any) -> dict[str, Any]:
    c, k = getattr(certs, cert)
    return {"security_policy": policy, "security_mode": mode, "certificate": str(c),
            "private_key": str(k), **kw}


def path_of(dev: OpcUaDevice, name: str) -> str:
    return next(t.path for t in dev.tags if t.name == name)


def count(store: SqliteStore, tag_id: int) -> int:
    return len(store.read(tag_id, 0, END, prior=False))


def stored(store: SqliteStore, tag_id: int) -> list[tuple[int, float, int, str | None]]:
    """(ts, value, quality, text) of every stored sample of a tag."""
    s = store.read(tag_id, 0, END, prior=False)
    texts = {ts: text for ts, text, _ in store.read_text(tag_id, 0, END)}
    return [(int(t), float(v), int(q), texts.get(int(t)))
            for t, v, q in zip(s.ts_ns, s.value, s.quality, strict=True)]


def no_asyncua_noise(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing at WARNING or above from asyncua, no traceback, no bare exception name."""
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [r for r in loud if r.name.startswith("asyncua")], \
        [(r.name, r.getMessage()) for r in loud if r.name.startswith("asyncua")]
    assert not [r for r in loud if r.exc_info], [r.getMessage() for r in loud if r.exc_info]
    assert not [r for r in loud if "AssertionError" in r.getMessage()]


async def connect_error(dev: OpcUaDevice) -> str:
    with pytest.raises(ConnectError) as ei:
        async with OpcUaCollector(dev, {t.path: i for i, t in enumerate(dev.tags)}):
            pass
    msg = str(ei.value)
    assert msg.startswith(f"{dev.name}: ") and "Error: " not in msg and "Error(" not in msg, msg
    return msg


def test_the_peer_is_the_pinned_node_opcua(open_server: UaServer) -> None:
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    assert open_server.info["version"] == lock["packages"]["node_modules/node-opcua"]["version"]
    assert open_server.info["version"] == "2.186.4"


# --------------------------------------------------------------------------- values

@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_every_scalar_type_bad_and_uncertain_reach_the_store(
    open_server: UaServer, sqlite_store: SqliteStore, mode: str
) -> None:
    """Values, qualities and source timestamps of every scalar type, exactly as the server
    set them; the getter-backed Counter and the server's CurrentTime (ServerTimestamp 0, the
    null date) are stored with their source timestamps and an unknown server timestamp."""
    names = [*NUMBERS, *TEXTS, *STATUS, "Counter"]
    tags = [OpcUaTag(name=n, asset=ASSET, node_id=f"nsu={NS};s=Machine.{n}") for n in names]
    tags.append(OpcUaTag(name="CurrentTime", asset=ASSET, node_id="i=2258"))
    dev = device(open_server.endpoint(), [], tags=tags, mode=mode)
    ids = register(sqlite_store, dev)
    writer = Writer(sqlite_store)
    wall0 = time.time_ns() - 10**9
    async with Supervisor([dev], sqlite_store, writer, ids) as sup:
        await wait_until(lambda: all(count(sqlite_store, i) >= 3 for i in ids.values()),
                         what="three samples of every variable")
        await writer.flush()
        assert sup.status()[0].tag_errors == {}
        assert sup.status()[0].reconnects == 0  # no OverflowError, no reconnect loop
    wall1 = time.time_ns() + 10**9
    history = open_server.history()

    for name in [*NUMBERS, *TEXTS, *STATUS]:
        tid = ids[path_of(dev, name)]
        set_at = dict(history[name])
        rows = stored(sqlite_store, tid)
        assert len(rows) >= 3, name
        for ts, value, quality, text in rows:
            assert ts in set_at, (name, ts)  # the source timestamp, to the nanosecond
            expected = set_at[ts]
            if name in STATUS:
                assert quality == STATUS[name], (name, quality)
                if quality == Quality.BAD:  # never the value a Bad status comes with
                    assert np.isnan(value), (name, value)
                else:
                    assert value == expected, (name, value, expected)
            elif name == "DateTime":
                assert quality == Quality.GOOD and text is not None
                assert datetime.fromisoformat(text) == datetime.fromisoformat(expected), text
            elif name in TEXTS:
                assert (quality, text) == (Quality.GOOD, expected), (name, text, expected)
            else:
                assert quality == Quality.GOOD, name
                assert value == float(expected), (name, value, expected)
        # node-opcua stamps these values' ServerTimestamp with their source timestamp
        ts, server, gateway = sqlite_store.read_timestamps(tid, 0, END)
        np.testing.assert_array_equal(server, ts)
        assert ((gateway >= wall0) & (gateway <= wall1)).all(), name

    # ServerTimestamp 0 (1601-01-01): stored, with the source timestamp, server unknown.
    # node-opcua sends the null date for these nearly always, but now and then stamps one
    # notification of the getter-backed Counter with its clock: either is right, a 1601 or
    # garbage server time never is, and the null date must have been met for the test to count
    null_dates = 0
    for name in ["Counter", "CurrentTime"]:
        tid = ids[path_of(dev, name)]
        ts, server, gateway = sqlite_store.read_timestamps(tid, 0, END)
        assert len(ts) >= 3, name
        unknown = server == TS_UNKNOWN
        assert ((server[~unknown] >= wall0) & (server[~unknown] <= wall1)).all(), (name, server)
        null_dates += int(unknown.sum())
        assert ((ts >= wall0) & (ts <= wall1)).all(), (name, ts)  # node-opcua's clock
        assert (gateway != TS_UNKNOWN).all()
    assert null_dates >= 3
    counter = sqlite_store.read(ids[path_of(dev, "Counter")], 0, END, prior=False)
    assert (counter.quality == Quality.GOOD).all()
    # a poll may read the getter twice between two ticks: never decreasing, and moving on
    assert (np.diff(counter.value) >= 0).all() and counter.value[-1] > counter.value[0]
    assert (counter.value == np.round(counter.value)).all()
    texts = sqlite_store.read_text(ids[path_of(dev, "CurrentTime")], 0, END)
    assert all(wall0 <= datetime.fromisoformat(t).timestamp() * 1e9 <= wall1 for _, t, _ in texts)


# --------------------------------------------------------------------------- security

@pytest.mark.parametrize(("policy", "mode"), [
    ("Basic256Sha256", "Sign"),
    ("Basic256Sha256", "SignAndEncrypt"),
    ("Aes256_Sha256_RsaPss", "Sign"),
    ("Aes256_Sha256_RsaPss", "SignAndEncrypt"),
])
async def test_secure_channels_with_a_trusted_client_certificate(
    open_server: UaServer, certs: Certs, policy: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the host name node-opcua's certificate names, with that certificate trusted."""
    dev = device(open_server.endpoint(HOST), ["Double"], mode="poll",
                 trusted_certificates=[str(open_server.certificate)],
                 **secure(certs, policy, mode))
    ids = {dev.tags[0].path: 1}
    async with OpcUaCollector(dev, ids) as c:
        assert c._client is not None  # the channel uses what was asked for, no fallback
        assert c._client.security_policy.URI.rsplit("#", 1)[-1] == policy
        assert c._client.security_policy.Mode.name.rstrip("_") == mode
        got = None
        async for batch in c.batches():
            got = batch
            break
    assert got is not None and len(got) == 1
    history = dict(open_server.history()["Double"])
    assert history[int(got.ts_ns[0])] == got.value[0] and got.quality[0] == Quality.GOOD
    no_asyncua_noise(caplog)


async def test_untrusted_client_certificate_is_reported_and_trusting_it_lets_data_in(
    open_server: UaServer, certs: Certs, sqlite_store: SqliteStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tierproof")
    cert, _ = certs.stranger
    thumb = thumbprint(x509.load_der_x509_certificate(cert.read_bytes()))
    dev = device(open_server.endpoint(HOST), ["Double"],
                 **secure(certs, "Basic256Sha256", "SignAndEncrypt", cert="stranger"),
                 backoff=Backoff(initial_s=0.2, max_s=0.5, multiplier=2.0, jitter=0.1))
    ids = register(sqlite_store, dev)
    async with Supervisor([dev], sqlite_store, Writer(sqlite_store), ids) as sup:
        await wait_until(lambda: sup.status()[0].last_error is not None, what="the refusal")
        error = sup.status()[0].last_error
        assert error is not None
        assert thumb in error and str(cert) in error and "does not trust" in error, error
        assert "trust it on the server" in error and "AssertionError" not in error, error
        await wait_until(lambda: bool(sqlite_store.gaps(dev.name, 0, END)), what="a gap")
        gap = sqlite_store.gaps(dev.name, 0, END)[0]
        assert gap.reason is not None and thumb in gap.reason
        # node-opcua keeps the refused certificate in its PKI's rejected folder ...
        rejected = open_server.peer.command(cmd="rejected")["ok"]
        assert any(thumb.replace(":", "").lower() in f.lower() for f in rejected), rejected
        logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any(thumb in m and "trust it on the server" in m for m in logged), logged
        no_asyncua_noise(caplog)

        # ... and moving it to trusted, as the message says, lets the gateway in
        for f in (open_server.pki / "rejected").iterdir():
            if thumb.replace(":", "").lower() in f.name.lower():
                f.rename(open_server.pki / "trusted" / "certs" / f.name)
        tid = ids[dev.tags[0].path]
        await wait_until(lambda: count(sqlite_store, tid) >= 1, what="data once trusted")
        assert sup.status()[0].state == "connected"
    assert sqlite_store.gaps(dev.name, 0, END)[0].end_ns is not None


async def test_server_certificate_trust_host_name_and_expiry(
    open_server: UaServer, certs: Certs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tierproof")
    node_cert = x509.load_pem_x509_certificate(open_server.certificate.read_bytes())
    node_thumb = thumbprint(node_cert)
    sb = secure(certs, "Basic256Sha256", "SignAndEncrypt")

    # not in the trust list
    msg = await connect_error(device(open_server.endpoint(HOST), ["Double"],
                                     trusted_certificates=[str(certs.gw[0])], **sb))
    assert node_thumb in msg and "is not trusted" in msg and "trusted_certificates" in msg, msg

    # trusted, but connected through a host it is not issued for
    msg = await connect_error(device(open_server.endpoint("127.0.0.1"), ["Double"],
                                     trusted_certificates=[str(open_server.certificate)], **sb))
    assert node_thumb in msg and f"is issued for {HOST}" in msg and "not 127.0.0.1" in msg, msg
    assert "use a host the certificate names" in msg, msg

    # expired (a certificate made here, for 127.0.0.1, valid in 2020 only)
    cert, key = expired_certificate(tmp_path, "urn:tierproof:interop:expired")
    with running(tmp_path / "pki-expired", certificateFile=str(cert), privateKeyFile=str(key),
                 applicationUri="urn:tierproof:interop:expired", trust=(certs.gw[0],),
                 policies=["None", "Basic256Sha256"], modes=["None", "SignAndEncrypt"]) as srv:
        msg = await connect_error(device(srv.endpoint(), ["Double"],
                                         trusted_certificates=[str(cert)], **sb))
        assert "expired on 2021-01-01" in msg and "renew the server's certificate" in msg, msg

        # without a trust list any certificate is accepted: said once, not at every connect
        dev = device(srv.endpoint(), ["Double"], **sb)
        for _ in range(2):
            async with OpcUaCollector(dev, {dev.tags[0].path: 1}):
                pass
    said = [r.getMessage() for r in caplog.records if "expired on 2021-01-01" in r.getMessage()
            and "trusted_certificates is empty" in r.getMessage()]
    assert len(said) == 1, said
    no_asyncua_noise(caplog)


async def test_client_certificate_for_another_host_is_said_once(
    open_server: UaServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """asyncua warned at every secure connect that the client certificate does not name this
    host; tierproof says it once, at INFO (servers seldom check it)."""
    caplog.set_level(logging.INFO, logger="tierproof")
    cert, key = tmp_path / "elsewhere-cert.der", tmp_path / "elsewhere-key.pem"
    await setup_self_signed_certificate(
        key, cert, "urn:tierproof:interop:elsewhere", "gw.example",
        [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "elsewhere"})
    dev = device(open_server.endpoint(HOST), ["Double"], security_policy="Basic256Sha256",
                 security_mode="SignAndEncrypt", certificate=str(cert), private_key=str(key))
    for _ in range(3):
        msg = await connect_error(dev)  # and node-opcua does not trust it
        assert "does not trust the client certificate" in msg, msg
    said = [r.getMessage() for r in caplog.records
            if f"is issued for gw.example, not this gateway's host name {HOST}" in r.getMessage()]
    assert len(said) == 1, said
    assert not [r for r in caplog.records if "hostname" in r.getMessage()]  # asyncua's words
    no_asyncua_noise(caplog)


def expired_certificate(d: Path, uri: str) -> tuple[Path, Path]:
    """A self-signed server certificate for 127.0.0.1 that expired on 2021-01-01 (PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired interop server")])
    start = datetime(2020, 1, 1, tzinfo=UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + timedelta(days=366))
        .add_extension(x509.SubjectAlternativeName([
            x509.UniformResourceIdentifier(uri), x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=True, key_encipherment=True,
            data_encipherment=True, key_agreement=False, key_cert_sign=True, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    d.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = d / "expired-cert.pem", d / "expired-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_policy_or_mode_the_server_does_not_offer(
    user_server: UaServer, certs: Certs
) -> None:
    for policy, mode in [("Basic256Sha256", "Sign"), ("Aes256_Sha256_RsaPss", "SignAndEncrypt")]:
        msg = await connect_error(device(user_server.endpoint(HOST), ["Double"],
                                         **secure(certs, policy, mode)))
        assert f"offers no endpoint with security policy {policy} and mode {mode}" in msg, msg
        assert "only None/None, Basic256Sha256/SignAndEncrypt" in msg, msg
        assert "set security_policy and security_mode to one of these" in msg, msg


@pytest.mark.parametrize("channel", ["None", "Basic256Sha256"])
async def test_user_accepted_and_refused(
    user_server: UaServer, certs: Certs, channel: str, caplog: pytest.LogCaptureFixture
) -> None:
    sec = secure(certs, "Basic256Sha256", "SignAndEncrypt") if channel != "None" else {}
    ok = device(user_server.endpoint(HOST), ["Double"], mode="poll", username="op",
                password="secret", **sec)
    async with OpcUaCollector(ok, {ok.tags[0].path: 1}) as c:
        async for batch in c.batches():
            assert batch.quality[0] == Quality.GOOD and not np.isnan(batch.value[0])
            break

    wrong = ok.model_copy(update={"password": SecretStr("nope")})
    msg = await connect_error(wrong)
    assert "rejected user 'op'" in msg and "check username and password" in msg, msg
    anonymous = ok.model_copy(update={"username": None, "password": None})
    msg = await connect_error(anonymous)
    assert "rejected anonymous access" in msg and "set username and password" in msg, msg
    # node-opcua asks for an encrypted password even on security None: nothing to warn about
    assert not [r for r in caplog.records if "unencrypted" in r.getMessage()]
    no_asyncua_noise(caplog)


async def test_user_on_a_server_without_secure_policies(tmp_path: Path) -> None:
    """node-opcua offers user names only with a password encrypted by a secure policy: with
    security None alone it offers none (not even anonymous access once users are set)."""
    with running(tmp_path / "pki", users={"op": "secret"}) as srv:
        msg = await connect_error(device(srv.endpoint(), ["Double"], username="op",
                                         password="secret"))
    assert "no endpoint of the server accepts a user name and password" in msg, msg
    assert "enable users on the server" in msg, msg


# --------------------------------------------------------------------------- endpoints

@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a firewall that drops, a
    device that is not an OPC UA server)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                conns.append(srv.accept()[0])

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield int(srv.getsockname()[1])
    finally:
        stop.set()
        t.join()
        for c in conns:
            c.close()
        srv.close()


async def test_unknown_endpoints(open_server: UaServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tierproof")
    port = free_port()
    msg = await connect_error(device(f"opc.tcp://127.0.0.1:{port}/UA/interop", ["Double"]))
    assert f"nothing accepts connections on 127.0.0.1 port {port} (connection refused)" in msg, msg
    assert "check the port of the endpoint and that the OPC UA server is running" in msg, msg

    msg = await connect_error(device("opc.tcp://no-such-host.invalid:4840/", ["Double"]))
    assert "the host name 'no-such-host.invalid' does not resolve" in msg, msg

    with silent_listener() as silent:
        msg = await connect_error(device(f"opc.tcp://127.0.0.1:{silent}/", ["Double"], timeout_s=1.0))
    assert f"no answer from 127.0.0.1 port {silent} within 1 s" in msg, msg
    assert "check that the host is reachable" in msg, msg

    # node-opcua answers any path: the gateway connects, and says once that the path is wrong
    dev = device(open_server.endpoint(path="/UA/wrong"), ["Double"], mode="poll")
    for _ in range(2):
        async with OpcUaCollector(dev, {dev.tags[0].path: 1}) as c:
            async for batch in c.batches():
                assert batch.quality[0] == Quality.GOOD
                break
    said = [r.getMessage() for r in caplog.records if "is not an endpoint URL" in r.getMessage()]
    assert len(said) == 1 and "/UA/interop" in said[0] and "correct the path" in said[0], said
    no_asyncua_noise(caplog)


# --------------------------------------------------------------------------- restart, browse

async def test_server_restart_is_a_gap_then_data_flows_again(
    tmp_path: Path, sqlite_store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    pki, port = tmp_path / "pki", free_port()
    first = start_server(pki, port=port, tickMs=100)
    second: UaServer | None = None
    try:
        dev = device(first.endpoint(), ["Double"])
        ids = register(sqlite_store, dev)
        tid = ids[dev.tags[0].path]
        async with Supervisor([dev], sqlite_store, Writer(sqlite_store), ids) as sup:
            await wait_until(lambda: count(sqlite_store, tid) >= 3, what="data from the first run")
            first.stop(signal.SIGKILL)  # a crash, not a clean shutdown
            await wait_until(lambda: sup.status()[0].gap_open_since is not None, what="a gap")
            assert sup.status()[0].last_error is not None
            # the same port and PKI; its values now have source timestamps in 2029-06
            second = start_server(pki, port=port, tickMs=100, sourceBase=1_874_000_000_000)
            await wait_until(lambda: sup.status()[0].gap_open_since is None, what="the gap closed")
            await wait_until(
                lambda: (sqlite_store.read(tid, 1_874_000_000_000_000_000, END, prior=False)
                         .ts_ns.size >= 3), what="data from the second run")
            assert sup.status()[0].reconnects >= 1 and sup.status()[0].state == "connected"
        gaps = sqlite_store.gaps(dev.name, 0, END)
        assert len(gaps) == 1 and gaps[0].end_ns is not None and gaps[0].end_ns > gaps[0].start_ns
        assert gaps[0].reason is not None and "the server closed the connection" in gaps[0].reason
        no_asyncua_noise(caplog)
        before = sqlite_store.read(tid, 0, 1_874_000_000_000_000_000, prior=False)
        assert len(before) >= 3 and (before.quality == Quality.GOOD).all()
    finally:
        first.stop()
        if second is not None:
            second.stop()


def connections_to(port: int) -> int:
    """TCP sockets of this process whose peer is 127.0.0.1:``port`` (Linux /proc)."""
    ours = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # a descriptor closed meanwhile
            link = os.readlink(f"/proc/self/fd/{fd}")
            if link.startswith("socket:["):
                ours.add(link[len("socket:["):-1])
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return sum(1 for f in rows if int(f[2].split(":")[1], 16) == port and f[9] in ours)


async def test_a_stop_while_the_server_hangs_still_closes_our_socket(
    tmp_path: Path, sqlite_store: SqliteStore
) -> None:
    """The supervisor stops a collector by cancelling it again every 0.1 s until it ends
    (collector.base.cancel_and_wait). With the server not answering (SIGSTOP: a real hung
    server) the collector's CloseSession cannot complete in that time -- as on a loaded
    machine, where interop runs failed on the ResourceWarning of an unclosed socket: the
    gateway's own, left to the garbage collector. It is closed at the stop."""
    with running(tmp_path / "pki") as srv:
        assert srv.peer.proc is not None
        pid = srv.peer.proc.pid
        dev = device(srv.endpoint(), ["Double"], mode="poll")
        ids = register(sqlite_store, dev)
        try:
            async with Supervisor([dev], sqlite_store, Writer(sqlite_store), ids):
                await wait_until(lambda: count(sqlite_store, ids[dev.tags[0].path]) >= 1,
                                 what="a polled value")
                assert connections_to(srv.port) >= 1
                os.kill(pid, signal.SIGSTOP)
            # (the transport closes its socket in a callback of the next loop iterations)
            await wait_until(lambda: connections_to(srv.port) == 0, 10, "our socket closed")
        finally:
            os.kill(pid, signal.SIGCONT)


async def test_browse_rules_discover_node_opcua_variables(
    open_server: UaServer, sqlite_store: SqliteStore
) -> None:
    rule = BrowseRule(root=f"nsu={NS};s=Machine", asset=ASSET, name_prefix="m.")
    dev = device(open_server.endpoint(), [], browse=[rule])
    ids: dict[str, int] = {}
    async with Supervisor([dev], sqlite_store, Writer(sqlite_store), ids) as sup:
        await wait_until(lambda: len(sup.tag_ids) >= 17, what="the discovered tags registered")
        found = {p.rsplit("/", 1)[-1] for p in sup.tag_ids}
        assert found == {f"m.{n}" for n in [*NUMBERS, *TEXTS, *STATUS, "Counter"]}, found
        double = sup.tag_ids[f"{ASSET}/m.Double"]
        await wait_until(lambda: count(sqlite_store, double) >= 2, what="discovered tags collected")
        assert sup.status()[0].tag_errors == {}
    history = dict(open_server.history()["Double"])
    rows = sqlite_store.read(double, 0, END, prior=False)
    assert all(history[int(t)] == v for t, v in zip(rows.ts_ns, rows.value, strict=True))
