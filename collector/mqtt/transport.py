"""paho-mqtt on the asyncio event loop: connect, subscribe, the socket, disconnect.

paho's network loop runs *on the asyncio event loop*: its socket is watched with
``loop.add_reader``/``add_writer`` and ``loop_read``/``loop_write``/``loop_misc`` are called
from there (paho's "external event loop" integration). Only ``connect()`` (TCP connect and TLS
handshake, which block) runs in a worker thread. paho reads its socket through
:class:`ReadBuffer`. The one place socket and TLS errors of paho become tierproof errors.

:class:`PahoConnection` is a mixin of :class:`~collector.mqtt.driver.MqttCollector`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from config.errors import ConnectError
from config.mqtt import MqttDevice
from store.batch import Batch

if TYPE_CHECKING:
    from .driver import Sub

__all__ = ["PahoConnection", "ReadBuffer", "TlsContext"]

log = logging.getLogger("tierproof.collector.mqtt")

#: bytes read from the socket at once (~200 small messages): bounds the time one read
#: callback holds the event loop
_RECV_SIZE: Final = 64 * 1024


class ReadBuffer:
    """paho's socket, read in chunks of :data:`_RECV_SIZE`.

    paho reads every packet with at least three ``recv`` calls (the command byte, each length
    byte, the rest). On a stream of small PUBLISH packets those system calls, and the event
    loop wake-up per packet that follows from them, cost more than decoding the message
    (measured with ``bench/bench_mqtt.py``). This wrapper, installed as paho's socket, serves
    those small reads from one large read; :meth:`pending` tells the collector to keep
    calling ``loop_read`` while bytes are buffered, since the socket no longer signals them.
    """

    __slots__ = ("_buf", "_pos", "sock")

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            # may raise BlockingIOError / ssl.SSLWantReadError: paho handles both
            data: bytes = self.sock.recv(_RECV_SIZE)
            if len(data) <= size:
                return data
            self._buf, self._pos = data, size
            return data[:size]
        self._pos = pos + size
        return buf[pos:pos + size]

    def pending(self) -> int:
        """Bytes read and not yet consumed (here, or decrypted inside a TLS socket)."""
        left = len(self._buf) - self._pos
        if left > 0:
            return left
        sock = self.sock
        return sock.pending() if isinstance(sock, ssl.SSLSocket) else 0

    def send(self, data: bytes | bytearray) -> int:
        n: int = self.sock.send(data)
        return n

    def close(self) -> None:
        self._buf, self._pos = b"", 0
        self.sock.close()

    def fileno(self) -> int:
        n: int = self.sock.fileno()
        return n

    def setblocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)


class TlsContext(ssl.SSLContext):
    """A client TLS context that remembers the sockets it wrapped: paho does not close one
    whose handshake failed, and the collector must (no ResourceWarning, no leaked fd)."""

    opened: list[ssl.SSLSocket]

    @classmethod
    def of(cls, d: MqttDevice) -> TlsContext:
        ctx = cls(ssl.PROTOCOL_TLS_CLIENT)  # verifies the certificate and the host name
        ctx.opened = []
        tls = d.tls
        if tls is not None and tls.ca_file is not None:
            ctx.load_verify_locations(cafile=tls.ca_file)
        else:
            ctx.load_default_certs()
        if tls is not None and tls.cert_file is not None:
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
        return ctx

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        sock = super().wrap_socket(*args, **kwargs)
        self.opened.append(sock)
        return sock


class PahoConnection:
    """The broker connection of :class:`~collector.mqtt.driver.MqttCollector` (see the module)."""

    _dev: MqttDevice
    _tls: TlsContext | None
    _subs: list[Sub]
    _client: mqtt.Client | None
    _loop: asyncio.AbstractEventLoop | None
    _misc: asyncio.Task[None] | None
    _sock: Any
    _rbuf: ReadBuffer | None
    _connack: asyncio.Future[ReasonCode] | None
    _suback: dict[int, asyncio.Future[list[ReasonCode]]]
    _lost: str | None
    _wake: asyncio.Event
    _unacked: deque[tuple[Batch, list[tuple[int, str, int]]]]
    _on_message: Callable[[mqtt.Client, Any, mqtt.MQTTMessage], None]
    #: Sparkplug primary host: STATE topic and payload maker of this session (primary_host_id)
    _state: tuple[str, Callable[[bool], bytes]] | None = None
    #: the clean stop has said offline: our own STATE echoed back is not answered any more
    _leaving: bool = False
    #: reading is paused: the messages read and not yet taken as a batch reached the bound
    #: (see MqttCollector's read-ahead); the broker keeps the rest until we read again
    _paused: bool = False
    #: pausing is allowed: only between a complete connect (CONNACK, SUBACK) and the stop,
    #: when nothing waits for a packet from the broker (a persistent session's backlog arrives
    #: before the SUBACK: pausing then would never read the SUBACK)
    _may_pause: bool = False

    async def __aenter__(self) -> Self:
        d = self._dev
        hp = d.host_port
        assert hp is not None
        host, port, _ = hp
        loop = asyncio.get_running_loop()
        self._loop = loop
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=d.session_id, clean_session=d.clean_session,
            protocol=mqtt.MQTTv311, manual_ack=True,
        )
        client.suppress_exceptions = True  # a bug in a callback must not unwind paho's reader
        client.connect_timeout = d.connect_timeout_s  # also ends the connect thread in time
        if d.username is not None and d.password is not None:
            client.username_pw_set(d.username, d.password.get_secret_value())
        if self._tls is not None:
            self._tls.opened.clear()
            client.tls_set_context(self._tls)
        state = self._host_state()
        self._leaving = False
        if state is not None:  # Sparkplug primary host: offline is said by the broker if we die
            client.will_set(state[0], state[1](False), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        # Sparkplug primary host: its own STATE topic is answered here (_own_state)
        client.on_message = self._on_message if state is None else self._on_message_or_state
        self._connack = loop.create_future()
        self._client = client
        try:
            try:
                await asyncio.wait_for(
                    loop.run_in_executor(None, functools.partial(
                        client.connect, host, port, d.keepalive_s)),
                    d.connect_timeout_s,
                )
            except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
                if self._tls is not None:  # paho leaves a socket whose handshake failed open
                    for sock in self._tls.opened:
                        sock.close()
                raise self._connect_error(exc) from exc
            self._attach(client)
            try:
                rc = await asyncio.wait_for(asyncio.shield(self._connack), d.connect_timeout_s)
            except TimeoutError as exc:
                raise ConnectError(self._lost or f"{d.name}: {d.broker} did not answer CONNECT "
                                   f"within {d.connect_timeout_s} s") from exc
            if rc.is_failure:
                raise ConnectError(self._refused(rc))
            await self._subscribe(client)
            if state is not None:  # subscribed first: the births this calls for reach us
                client.publish(state[0], state[1](True), qos=1, retain=True)
            self._may_pause = True
        except BaseException:
            self._close()
            raise
        return self

    def _host_state(self) -> tuple[str, Callable[[bool], bytes]] | None:
        """Sparkplug 3.0 primary host: the STATE topic and its payload (online or not), with
        this session's timestamp in both, as the specification asks of birth and Will."""
        host = self._dev.primary_host_id
        if host is None:
            return None
        ts = time.time_ns() // 1_000_000

        def payload(online: bool) -> bytes:
            return json.dumps({"online": online, "timestamp": ts}).encode()

        self._state = (f"spBv1.0/STATE/{host}", payload)
        return self._state

    def _on_message_or_state(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        state = self._state
        try:
            ours = state is not None and msg.topic == state[0]
        except UnicodeDecodeError:  # not ours: the driver counts it
            ours = False
        if ours:
            assert state is not None
            self._own_state(client, msg, state)
        else:
            self._on_message(client, userdata, msg)

    def _own_state(self, client: mqtt.Client, msg: mqtt.MQTTMessage,
                   state: tuple[str, Callable[[bool], bytes]]) -> None:
        """A STATE on our own topic (Sparkplug 3.0, as Tahu's HostApplication does): one that
        says offline -- a previous session's Will published late, or another process using our
        host id -- is answered with our online STATE again (this session's timestamp, as our
        Will has it), so that it is not what the broker retains for edge nodes that connect
        later (they would wait for us forever)."""
        if msg.qos:
            client.ack(msg.mid, msg.qos)
        try:
            online = json.loads(msg.payload).get("online")
        except (ValueError, AttributeError):
            online = None
        if online is True or self._leaving:
            return  # ours, or one that says what ours says; or our own offline as we leave
        log.warning("%s: %s says %r: publishing our online STATE again (a previous session's "
                    "Will, or another host using primary_host_id %r?)", self._dev.name, state[0],
                    bytes(msg.payload[:200]), self._dev.primary_host_id)
        client.publish(state[0], state[1](True), qos=1, retain=True)

    def _connect_error(self, exc: BaseException, doing: str = "connect to") -> ConnectError:
        """The one place socket and TLS errors of paho become tierproof errors."""
        d = self._dev
        if isinstance(exc, ssl.SSLCertVerificationError):
            return ConnectError(
                f"{d.name}: the certificate of {d.broker} is not trusted ({exc.verify_message}): "
                f"check devices[{d.name}].tls.ca_file"
            )
        if isinstance(exc, ssl.SSLError):
            return ConnectError(
                f"{d.name}: TLS with {d.broker} failed ({exc.reason or exc}): check "
                f"devices[{d.name}].tls (CA, client certificate and key)"
            )
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return ConnectError(f"{d.name}: cannot {doing} {d.broker}: {reason}")

    def _refused(self, rc: ReasonCode) -> str:
        d = self._dev
        who = f"user {d.username!r}" if d.username is not None else "anonymous access"
        hint = ""
        if rc.value in (4, 5, 134, 135):  # bad user name or password / not authorized
            hint = f": check devices[{d.name}].username and password"
        elif rc.value in (2, 133):  # identifier rejected
            hint = f": check devices[{d.name}].client_id"
        return f"{d.name}: {d.broker} refused the connection of {who} ({rc}){hint}"

    def _closed_early(self) -> str:
        d = self._dev
        hp = d.host_port
        # a TLS 1.3 server refuses a client certificate after the handshake: by closing
        tls = (f" (TLS: does the broker require a client certificate, and is devices[{d.name}]"
               ".tls.cert_file signed by a CA it trusts?)") if hp is not None and hp[2] else ""
        return f"{d.name}: {d.broker} closed the connection before accepting it{tls}"

    def _attach(self, client: mqtt.Client) -> None:
        """Hand paho's socket to the event loop (after connect() sent CONNECT in the thread)."""
        loop = self._loop
        assert loop is not None
        sock = client.socket()
        if sock is None:
            raise ConnectError(self._closed_early())
        self._sock = sock
        self._rbuf = ReadBuffer(sock)
        # paho reads through the buffer (see ReadBuffer); paho 2.x keeps its socket here and
        # only calls recv, send, close, fileno and setblocking on it
        client._sock = self._rbuf
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = lambda c, u, s: loop.add_writer(s, self._writable)
        client.on_socket_unregister_write = self._on_unregister_write
        self._paused = False
        loop.add_reader(sock, self._readable)
        if client.want_write():
            loop.add_writer(sock, self._writable)
        self._misc = loop.create_task(self._misc_loop(), name=f"mqtt {self._dev.name} keepalive")

    def _on_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if self._loop is not None:
            self._loop.remove_writer(sock)

    def _readable(self) -> None:
        client = self._client
        if client is None:
            return
        rc = client.loop_read()
        buf = self._rbuf
        # bytes already read into the buffer (or decrypted into the TLS socket) do not make the
        # socket readable again: consume them now. Each loop_read consumes at least one. Not
        # while paused: resume_reading() comes back for them.
        while (rc == MQTTErrorCode.MQTT_ERR_SUCCESS and buf is not None and self._client is not None
               and buf.pending() and not self._paused):
            rc = client.loop_read()

    def pause_reading(self) -> bool:
        """Stop reading the socket (backpressure): what the broker sends waits in the TCP
        buffers and then in the broker's queue for our session, not in this process. Whether
        it paused (not while connecting or stopping, see ``_may_pause``)."""
        if self._paused or not self._may_pause or self._sock is None or self._loop is None:
            return False
        self._paused = True
        self._loop.remove_reader(self._sock)
        return True

    def resume_reading(self) -> None:
        """Read again, first the bytes already buffered (the socket does not signal those)."""
        if not self._paused:
            return
        self._paused = False
        if self._sock is None or self._loop is None or self._client is None or self._lost is not None:
            return
        self._loop.add_reader(self._sock, self._readable)
        if self._rbuf is not None and self._rbuf.pending():
            self._loop.call_soon(self._readable)

    def _writable(self) -> None:
        if self._client is not None:
            self._client.loop_write()

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(sock)
            with contextlib.suppress(Exception):
                self._loop.remove_writer(sock)

    async def _misc_loop(self) -> None:
        while self._client is not None:
            await asyncio.sleep(1.0)
            client = self._client
            if client is not None and client.loop_misc() == MQTTErrorCode.MQTT_ERR_NO_CONN:
                self._connection_lost("no connection")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                    properties: Any) -> None:
        fut = self._connack
        if fut is not None and not fut.done():
            fut.set_result(rc)
        if not rc.is_failure and not self._dev.clean_session and not flags.session_present:
            log.info("%s: the broker had no session for client id %r: messages published while "
                     "the gateway was away are not queued", self._dev.name, self._dev.session_id)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                       properties: Any) -> None:
        fut = self._connack
        if fut is not None and not fut.done():
            self._lost = self._closed_early()
            fut.set_exception(ConnectError(self._lost))
            fut.exception()  # retrieved: awaited or not, never "never retrieved"
        for f in self._suback.values():
            if not f.done():
                f.set_exception(ConnectError(f"{self._dev.name}: connection lost while subscribing"))
                f.exception()
        self._connection_lost(str(rc))

    def _connection_lost(self, reason: str) -> None:
        if self._lost is None:
            self._lost = f"{self._dev.name}: connection to {self._dev.broker} lost: {reason}"
            log.warning("%s", self._lost)
        self._wake.set()

    async def _subscribe(self, client: mqtt.Client) -> None:
        d = self._dev
        assert self._loop is not None
        filters = [s.spec.filter for s in self._subs]
        uniq = list(dict.fromkeys(filters))
        topics: list[tuple[str, int]] = [(f, d.qos) for f in uniq]
        if self._state is not None:  # Sparkplug 3.0: a host subscribes to its own STATE first
            uniq.append(self._state[0])
            topics.append((self._state[0], 1))
        rc, mid = client.subscribe(topics)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise ConnectError(f"{d.name}: cannot subscribe: {mqtt.error_string(rc)}")
        fut = self._suback.setdefault(mid, self._loop.create_future())
        try:
            codes = await asyncio.wait_for(fut, d.connect_timeout_s)
        except TimeoutError as exc:
            raise ConnectError(f"{d.name}: {d.broker} did not answer SUBSCRIBE") from exc
        refused = [f for f, c in zip(uniq, codes, strict=False) if c.is_failure]
        if refused:
            raise ConnectError(f"{d.name}: {d.broker} refused the subscription to {refused} "
                               "(not authorized for these topics?)")

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, codes: list[ReasonCode],
                      properties: Any) -> None:
        fut = self._suback.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(codes)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._may_pause = False
        self.resume_reading()  # the PUBACK of our offline STATE must be read
        client = self._client
        if client is not None and self._lost is None:
            # DISCONNECT, so the broker does not publish our Will nor wait for the keepalive
            client.on_disconnect = None  # a disconnect we asked for is no lost connection
            state = self._state
            with contextlib.suppress(Exception):
                if state is not None:  # a clean DISCONNECT suppresses the Will: say it
                    self._leaving = True  # our own offline echoed back is not answered
                    said = client.publish(state[0], state[1](False), qos=1, retain=True)
                    client.loop_write()
                    # the broker has it (PUBACK) before we DISCONNECT: bounded, not forever
                    for _ in range(200):
                        if said.is_published() or self._client is None or self._lost is not None:
                            break
                        await asyncio.sleep(0.01)
                client.disconnect()
                client.loop_write()
        self._close()

    def _close(self) -> None:
        self._may_pause = self._paused = False
        client, self._client = self._client, None
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None
        if self._sock is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._sock)
            with contextlib.suppress(Exception):
                self._loop.remove_writer(self._sock)
        self._sock = self._rbuf = None
        if client is not None:
            with contextlib.suppress(Exception):
                client.on_disconnect = None
                client.on_socket_close = None
                client.on_socket_unregister_write = None
                client._sock_close()  # no public close without a DISCONNECT round trip
        self._unacked.clear()
