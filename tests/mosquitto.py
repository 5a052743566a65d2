"""A real Mosquitto broker (Debian's ``/usr/sbin/mosquitto``) for tests and benchmarks.

:class:`Mosquitto` writes a config with three listeners on free 127.0.0.1 ports:

* ``port``      -- plain MQTT, anonymous;
* ``tls_port``  -- TLS, anonymous but ``require_certificate true``: the client must present a
  certificate signed by ``ca_file`` (``client_cert``/``client_key``); ``bad_client_cert`` /
  ``bad_client_key`` are signed by another CA (``untrusted_ca_file``) and are refused;
* ``auth_port`` -- plain MQTT, ``allow_anonymous false``, user ``username`` / ``password``.

Persistence is on, so QoS 1 messages queued for a persistent session survive ``restart()``
(which stops with SIGTERM -- mosquitto saves its database on a clean shutdown -- and starts
again on the same ports).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import ipaddress
import os
import pwd
import queue
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.helpers import free_port

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd"
# mosquitto drops to this user when started as root; everything it reads or writes must be its
RUN_AS = "mosquitto"

__all__ = ["Mosquitto", "Received", "Recorder", "connect_outcome"]


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(
    path: Path, cert: x509.Certificate | None = None, key: ec.EllipticCurvePrivateKey | None = None
) -> Path:
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    else:
        assert key is not None
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    path.chmod(0o600)
    return path


class Mosquitto:
    """A mosquitto subprocess with its own config, certificates and data directory."""

    def __init__(self, host: str = "127.0.0.1", extra_config: str = "") -> None:
        """``extra_config``: more global options (e.g. ``max_inflight_messages 100``)."""
        self.host = host
        self.extra_config = extra_config
        self.port = free_port()
        self.tls_port = free_port()
        self.auth_port = free_port()
        # not pytest's tmp_path: its parents are 0700 root, which the mosquitto user cannot enter
        self.dir = Path(tempfile.mkdtemp(prefix="tierproof-mosquitto-"))
        self.data_dir = self.dir / "data"
        self.data_dir.mkdir()
        self.log_file = self.dir / "mosquitto.log"
        self.username = "gateway"
        self.password = secrets.token_urlsafe(12)
        self._make_certificates()
        self._make_password_file()
        self.conf_file = self.dir / "mosquitto.conf"
        self.conf_file.write_text(self._config())
        self._chown()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def _make_certificates(self) -> None:
        ca_key, bad_ca_key = _key(), _key()
        ca = _cert("tierproof test CA", ca_key, None, ca_key, ca=True)
        bad_ca = _cert("untrusted test CA", bad_ca_key, None, bad_ca_key, ca=True)
        server_key, client_key, bad_client_key = _key(), _key(), _key()
        server = _cert("localhost", server_key, ca.subject, ca_key, server=True)
        client = _cert("tierproof-gateway", client_key, ca.subject, ca_key)
        bad_client = _cert("intruder", bad_client_key, bad_ca.subject, bad_ca_key)
        d = self.dir
        self.ca_file = _write(d / "ca.pem", ca)
        self.untrusted_ca_file = _write(d / "untrusted-ca.pem", bad_ca)
        self.server_cert = _write(d / "server.pem", server)
        self.server_key = _write(d / "server.key", key=server_key)
        self.client_cert = _write(d / "client.pem", client)
        self.client_key = _write(d / "client.key", key=client_key)
        self.bad_client_cert = _write(d / "bad-client.pem", bad_client)
        self.bad_client_key = _write(d / "bad-client.key", key=bad_client_key)
        # clients of the tests (paho, the collector) read these as whoever runs the tests
        for f in (self.ca_file, self.untrusted_ca_file, self.client_cert, self.bad_client_cert):
            f.chmod(0o644)

    def _make_password_file(self) -> None:
        self.password_file = self.dir / "passwd"
        self.password_file.touch(mode=0o600)
        proc = subprocess.run(
            [MOSQUITTO_PASSWD, "-b", str(self.password_file), self.username, self.password],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"mosquitto_passwd failed ({proc.returncode}): {proc.stderr.strip()}")

    def _config(self) -> str:
        return f"""\
per_listener_settings true
persistence true
persistence_location {self.data_dir}/
autosave_interval 0
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
max_queued_messages 100000
{self.extra_config}
listener {self.port} {self.host}
allow_anonymous true

listener {self.tls_port} {self.host}
allow_anonymous true
cafile {self.ca_file}
certfile {self.server_cert}
keyfile {self.server_key}
require_certificate true

listener {self.auth_port} {self.host}
allow_anonymous false
password_file {self.password_file}
"""

    def _chown(self) -> None:
        if os.geteuid() != 0:
            return  # not root: mosquitto keeps our user and can read what we wrote
        pw = pwd.getpwnam(RUN_AS)
        for path in [self.dir, *self.dir.rglob("*")]:
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    def _accepts(self, port: int) -> bool:
        try:
            with socket.create_connection((self.host, port), timeout=0.5):
                return True
        except OSError:
            return False

    def start(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("mosquitto is already running")
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf_file)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        pending = [self.port, self.tls_port, self.auth_port]
        while pending:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise RuntimeError(f"mosquitto exited with {code} on start; log:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"mosquitto did not listen on {self.host}:{pending} within {timeout} s; log:\n"
                    f"{self.log_tail()}"
                )
            if self._accepts(pending[0]):
                pending.pop(0)
            else:
                time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait: mosquitto writes its persistence database on the way out."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise RuntimeError(
                    f"mosquitto ignored SIGTERM for {timeout} s; log:\n{self.log_tail()}"
                ) from None

    def kill(self) -> None:
        """SIGKILL: a crash, nothing saved since the last autosave."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        """Stop and delete the temporary directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _client(
    client_id: str | None,
    *,
    clean_session: bool = True,
    tls: tuple[Path, Path | None, Path | None] | None = None,
    username: str | None = None,
    password: str | None = None,
) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id or f"test-{secrets.token_hex(4)}",
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
    )
    if tls is not None:
        ca, cert, key = tls
        client.tls_set(
            ca_certs=str(ca),
            certfile=None if cert is None else str(cert),
            keyfile=None if key is None else str(key),
        )
    if username is not None:
        client.username_pw_set(username, password)
    return client


def connect_outcome(
    host: str,
    port: int,
    *,
    tls: tuple[Path, Path | None, Path | None] | None = None,
    username: str | None = None,
    password: str | None = None,
    timeout: float = 5.0,
) -> str:
    """"connected", or how the connection failed ("refused: <reason>", "disconnected: ...",
    "error: <exception>")."""
    outcome: queue.Queue[str] = queue.Queue()
    client = _client(None, tls=tls, username=username, password=password)

    def on_connect(c: mqtt.Client, u: object, f: object, rc: mqtt.ReasonCode, p: object) -> None:
        outcome.put(f"refused: {rc}" if rc.is_failure else "connected")

    def on_disconnect(c: mqtt.Client, u: object, f: object, rc: mqtt.ReasonCode, p: object) -> None:
        outcome.put(f"disconnected: {rc}")

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    # paho 2.2 does not close its TLS socket when the handshake fails inside connect()
    # (Client._ssl_wrap_socket): the socket dies with the exception, and its ResourceWarning
    # is expected here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client.connect(host, port, keepalive=10)
        except (ssl.SSLError, OSError) as exc:
            failure = f"error: {exc}"
            del exc
            gc.collect()
            return failure
    client.loop_start()
    try:
        return outcome.get(timeout=timeout)
    except queue.Empty:
        return "timeout"
    finally:
        client.disconnect()
        client.loop_stop()


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool


def _timed_out(got: list[Received], timeout: float, what: str) -> AssertionError:
    tail = [(m.topic, m.payload[:80]) for m in got[-5:]]
    return AssertionError(
        f"timed out after {timeout} s waiting for {what}; {len(got)} messages, last: {tail}")


class Recorder:
    """A paho subscriber on its own network thread that keeps every message it receives."""

    def __init__(
        self,
        host: str,
        port: int,
        topics: Sequence[str],
        *,
        qos: int = 1,
        client_id: str | None = None,
        clean_session: bool = True,
        tls: tuple[Path, Path | None, Path | None] | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.host, self.port, self.topics, self.qos = host, port, list(topics), qos
        self.client = _client(client_id, clean_session=clean_session, tls=tls, username=username,
                              password=password)
        self._lock = threading.Lock()
        self._messages: list[Received] = []
        self._subscribed = threading.Event()
        self._connected = threading.Event()
        self.session_present: bool | None = None
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(
        self, c: mqtt.Client, u: object, f: mqtt.ConnectFlags, rc: mqtt.ReasonCode, p: object
    ) -> None:
        if rc.is_failure:
            return
        self.session_present = f.session_present
        self._connected.set()
        if self.topics:
            c.subscribe([(t, self.qos) for t in self.topics])
        else:
            self._subscribed.set()

    def _on_subscribe(
        self, c: mqtt.Client, u: object, mid: int, rcs: list[mqtt.ReasonCode], p: object
    ) -> None:
        self._subscribed.set()

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._messages.append(Received(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))

    def start(self, timeout: float = 5.0) -> Recorder:
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise AssertionError(f"recorder could not connect and subscribe to {self.topics} on :{self.port}")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ``async with``: for brokers on the test's own event loop (amqtt), which blocking
    # waits would starve
    async def __aenter__(self) -> Recorder:
        await asyncio.to_thread(self.client.connect, self.host, self.port, 30)
        self.client.loop_start()
        deadline = time.monotonic() + 5.0
        while not self._subscribed.is_set():
            if time.monotonic() > deadline:
                await asyncio.to_thread(self.stop)
                raise AssertionError(
                    f"recorder could not connect and subscribe to {self.topics} on :{self.port}"
                )
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    @property
    def messages(self) -> list[Received]:
        with self._lock:
            return list(self._messages)

    def _poll(self, check: Callable[[list[Received]], bool], deadline: float, timeout: float,
              what: str) -> list[Received] | None:
        """The messages if ``check`` accepts them, None to poll again; AssertionError past the deadline."""
        got = self.messages
        if check(got):
            return got
        if time.monotonic() > deadline:
            raise _timed_out(got, timeout, what)
        return None

    def wait_for(
        self, check: Callable[[list[Received]], bool], timeout: float, what: str
    ) -> list[Received]:
        """Messages so far, once ``check`` accepts them; AssertionError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while (got := self._poll(check, deadline, timeout, what)) is None:
            time.sleep(0.02)
        return got

    async def until(
        self, check: Callable[[list[Received]], bool], timeout: float, what: str
    ) -> list[Received]:
        """:meth:`wait_for` for async tests: the event loop keeps running meanwhile."""
        deadline = time.monotonic() + timeout
        while (got := self._poll(check, deadline, timeout, what)) is None:
            await asyncio.sleep(0.02)
        return got
