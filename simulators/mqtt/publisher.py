"""The plant over MQTT: machines publishing their signals to a broker, in one of three styles.

Topics and payloads are documented in ``simulators/mqtt/TOPICS.md``; in short, for an asset
path ``site/area/<line>/<asset>``:

* ``plain``: ``<prefix>/<line>/<asset>/<signal>`` with an ASCII number, one message per signal
  whenever it changes (retained);
* ``json``: ``<prefix>/<line>/<asset>`` with one JSON document per machine, whenever state,
  modes or counters change and at least every second (retained);
* ``sparkplug``: Sparkplug B with group ``<prefix>``, one edge node per line (its own MQTT
  session, with NDEATH as its Will) and one device per asset: NBIRTH, DBIRTHs, then DDATA of
  the changed metrics by alias; a ``Node Control/Rebirth`` NCMD makes it birth again.

Values come from :meth:`Plant.machine_values`, the same ground truth the OPC UA and Modbus
simulators show, in canonical codes (``config.signals``) and engineering units.

paho runs its network loop in a thread per session; everything that publishes runs on the
asyncio loop, and paho's callbacks only hand events over to it (``call_soon_threadsafe``), so
the Sparkplug sequence numbers have one writer.

A slow broker cannot make the publisher grow without bound: paho keeps every QoS 1/2
message until its PUBACK, so each session holds at most ``max_unacked`` unacknowledged
messages. At the bound the producer waits (:attr:`MqttPublisher.held` counts the messages it
did not hand over): a value not sent is not marked sent, so the next tick that has room sends
the signal's *current* value (plain and json are latest-value, retained topics). Dropping the
oldest queued message instead would reach into paho's private queue and leave stale values
queued ahead of fresh ones; blocking would stall the event loop that the other simulators --
and the demo's embedded broker itself -- run on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import paho.mqtt.client as mqtt

from collector.mqtt.sparkplug import (
    DataType,
    Metric,
    SparkplugDecodeError,
    decode_payload,
    encode_payload,
    format_topic,
)
from config.signals import Role

from ..plant import MachineValues, Plant
from ..ticker import Ticker

__all__ = ["JSON_LAYOUT", "MQTT_SIGNALS", "MqttPublisher", "MqttStyle", "plain_number", "serve_mqtt"]

log = logging.getLogger(__name__)

MqttStyle = Literal["plain", "json", "sparkplug"]
REBIRTH = "Node Control/Rebirth"
BDSEQ = "bdSeq"
_JSON_HEARTBEAT_S = 1.0
#: the default bound of one session's QoS 1/2 messages handed to paho and not yet acknowledged
MAX_UNACKED = 1000


@dataclass(frozen=True, slots=True)
class _Signal:
    role: Role
    datatype: DataType
    get: Callable[[MachineValues], int | float]


_SIGNALS: dict[str, _Signal] = {
    "state": _Signal(Role.STATE, DataType.INT32, lambda v: v.state),
    "mode": _Signal(Role.MODE, DataType.INT32, lambda v: v.mode),
    "channel_mode": _Signal(Role.CHANNEL_MODE, DataType.INT32, lambda v: v.channel_mode),
    "stop_reason": _Signal(Role.STOP_REASON, DataType.INT32, lambda v: v.stop_reason),
    "total_count": _Signal(Role.TOTAL_COUNT, DataType.UINT64, lambda v: v.total),
    "good_count": _Signal(Role.GOOD_COUNT, DataType.UINT64, lambda v: v.good),
    "reject_count": _Signal(Role.REJECT_COUNT, DataType.UINT64, lambda v: v.reject),
    "energy_kwh": _Signal(Role.ENERGY_KWH, DataType.DOUBLE, lambda v: v.energy_kwh),
    "power_kw": _Signal(Role.ANALOG, DataType.DOUBLE, lambda v: v.power_kw),
    "speed_rpm": _Signal(Role.ANALOG, DataType.DOUBLE, lambda v: v.speed_rpm),
    "temperature_c": _Signal(Role.ANALOG, DataType.DOUBLE, lambda v: v.temperature_c),
}

#: signal name (plain topic level, Sparkplug metric name) -> role
MQTT_SIGNALS: dict[str, Role] = {name: s.role for name, s in _SIGNALS.items()}

#: signal name -> where it sits in the json style's document
JSON_LAYOUT: dict[str, tuple[str, str]] = {
    "state": ("machine", "state"),
    "mode": ("machine", "mode"),
    "channel_mode": ("machine", "channel_mode"),
    "stop_reason": ("machine", "stop_reason"),
    "total_count": ("counters", "total"),
    "good_count": ("counters", "good"),
    "reject_count": ("counters", "reject"),
    "energy_kwh": ("energy", "kwh"),
    "power_kw": ("energy", "power_kw"),
    "speed_rpm": ("process", "speed_rpm"),
    "temperature_c": ("process", "temperature_c"),
}
# a change in these (not in the analog values) makes the json style publish at once
_JSON_EVENT_GROUPS = frozenset({"machine", "counters"})


def plain_number(value: int | float) -> str:
    """ASCII decimal: integers as such, floats in the shortest positional form that reads
    back to the same double (never an exponent)."""
    if isinstance(value, int):
        return str(value)
    return str(np.format_float_positional(value, unique=True, trim="0"))


def _line_and_asset(path: str) -> tuple[str, str]:
    parts = path.split("/")
    if len(parts) != 4 or not all(parts):
        raise ValueError(f"asset path {path!r} is not site/area/line/asset")
    return parts[2], parts[3]


@dataclass(eq=False)
class _Session:
    """One MQTT connection: the whole plant (plain, json) or one edge node (sparkplug)."""

    client: mqtt.Client
    assets: list[str]
    node: str | None = None  # Sparkplug edge node id
    host_online: bool = True  # the primary host's STATE (always True without one)
    host_ts: int = -1  # the timestamp of the last STATE taken (older ones are stale)
    connected: bool = False
    need_birth: bool = False
    #: the broker acknowledged this session's NCMD subscription (a rebirth asked before
    #: that may reach no one); ``ncmd_mid``: that SUBSCRIBE's message id
    listening: bool = False
    ncmd_mid: int | None = None
    dead: bool = False
    seq: int = 0
    bd_seq: int = 0
    skip: int = 0
    aliases: dict[tuple[str, str], int] = field(default_factory=dict)
    last: dict[tuple[str, str], int | float] = field(default_factory=dict)
    last_json: dict[str, float] = field(default_factory=dict)  # asset -> monotonic time sent
    # mids of QoS 1/2 messages handed to paho, not yet acknowledged (asyncio loop only)
    unacked: set[int] = field(default_factory=set)
    holding: bool = False  # at the bound: messages are held back until PUBACKs make room
    connect_result: asyncio.Future[mqtt.ReasonCode] | None = None


class MqttPublisher:
    """A running MQTT simulator (what :func:`serve_mqtt` yields)."""

    def __init__(
        self,
        plant: Plant,
        style: MqttStyle,
        assets: Sequence[str],
        prefix: str,
        clock: Callable[[], int],
        qos: int,
        retain: bool,
        primary_host: str | None = None,
        max_unacked: int = MAX_UNACKED,
    ) -> None:
        self.plant = plant
        #: Sparkplug: the primary host application whose STATE gates the births (None: none)
        self.primary_host = primary_host
        self.style: MqttStyle = style
        self.assets = list(assets)
        self.prefix = prefix
        self.clock = clock
        self.qos = qos
        self.retain = retain
        #: messages handed to paho for publishing
        self.published = 0
        #: the most QoS 1/2 messages one session keeps unacknowledged (see the module's doc)
        self.max_unacked = max_unacked
        #: messages not handed to paho because their session was at ``max_unacked``; their
        #: signals' current values went out with a later tick that had room
        self.held = 0
        #: births sent because a host asked for them (Node Control/Rebirth)
        self.rebirths = 0
        self.sessions: list[_Session] = []
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------ topics

    def topic(self, asset: str, signal: str | None = None) -> str:
        """The plain (with ``signal``) or json topic of ``asset``."""
        line, name = _line_and_asset(asset)
        return f"{self.prefix}/{line}/{name}" + ("" if signal is None else f"/{signal}")

    # ------------------------------------------------------------------ test hooks

    def skip_seq(self, node: str | None = None) -> None:
        """The next Sparkplug message of ``node`` (default: every node) skips one seq."""
        for s in self._nodes(node):
            s.skip += 1

    def die(self, node: str | None = None) -> None:
        """Drop the TCP connection of ``node`` (default: every session) without DISCONNECT,
        as a crash or a pulled cable would: the broker then publishes the Will (NDEATH)."""
        for s in self._nodes(node):
            s.dead = True
            s.connected = False
            s.client.loop_stop()
            sock = s.client.socket()
            if sock is not None:
                sock.close()

    @property
    def unacked(self) -> int:
        """QoS 1/2 messages handed to paho and not yet acknowledged, over every session."""
        return sum(len(s.unacked) for s in self.sessions)

    def _nodes(self, node: str | None) -> list[_Session]:
        chosen = [s for s in self.sessions if node is None or s.node == node]
        if node is not None and not chosen:
            raise KeyError(f"no edge node {node!r}; nodes: {[s.node for s in self.sessions]}")
        return chosen

    # ------------------------------------------------------------------ paho callbacks
    # (paho's network thread: hand everything to the asyncio loop)

    def _on_connect(self, s: _Session, rc: mqtt.ReasonCode) -> None:
        fut = s.connect_result
        if fut is not None and not fut.done():
            fut.set_result(rc)
        if not rc.is_failure:
            s.connected = True
            s.need_birth = True  # a new session: births (sparkplug) or every value again
            s.last.clear()
            self._wake.set()

    def _on_disconnect(self, s: _Session) -> None:
        s.connected = False
        if self.style == "sparkplug" and not s.dead:
            # the next session is a new birth/death pair: its Will carries the next bdSeq
            s.bd_seq = (s.bd_seq + 1) % 256
            self._set_will(s)

    def _on_command(self, s: _Session, payload: bytes, topic: str) -> None:
        try:
            decoded = decode_payload(payload)
        except SparkplugDecodeError as exc:
            log.warning("ignoring NCMD on %s: %s", topic, exc)
            return
        if any(m.name == REBIRTH and m.value is True for m in decoded.metrics):
            s.need_birth = True
            self.rebirths += 1
            self._wake.set()

    def _on_state(self, s: _Session, payload: bytes) -> None:
        """The primary host's STATE (Sparkplug 3.0): births when it comes online, silence
        while it is offline (a stale STATE, older than the last one taken, is ignored)."""
        try:
            doc = json.loads(payload)
            online, ts = doc["online"], doc["timestamp"]
            if not isinstance(online, bool) or not isinstance(ts, int):
                raise TypeError("online must be a boolean and timestamp an integer")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring the STATE of primary host %s: %s", self.primary_host, exc)
            return
        if ts < s.host_ts:
            return
        s.host_ts = ts
        if online and not s.host_online:
            s.need_birth = True  # a host that (re)appears gets births before any data
            self._wake.set()
        s.host_online = online

    def _state_topic(self) -> str:
        return f"spBv1.0/STATE/{self.primary_host}"

    def _callbacks(self, s: _Session) -> None:
        loop = self._loop

        def on_connect(c: mqtt.Client, u: object, f: object, rc: mqtt.ReasonCode, p: object) -> None:
            if s.node is not None and not rc.is_failure:
                # every session, reconnects included: a clean session forgets subscriptions
                s.listening = False
                s.ncmd_mid = c.subscribe(format_topic(self.prefix, "NCMD", s.node), qos=1)[1]
                if self.primary_host is not None:  # the retained STATE answers at once
                    c.subscribe(self._state_topic(), qos=1)
            loop.call_soon_threadsafe(self._on_connect, s, rc)

        def on_subscribe(c: mqtt.Client, u: object, mid: int, rcs: object, p: object) -> None:
            if mid == s.ncmd_mid:  # paho's thread, as on_connect that set it
                s.listening = True

        def on_disconnect(c: mqtt.Client, u: object, f: object, rc: mqtt.ReasonCode, p: object) -> None:
            # in paho's thread, before it reconnects: the Will must be set here, not later
            self._on_disconnect(s)

        def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
            if self.primary_host is not None and msg.topic == self._state_topic():
                loop.call_soon_threadsafe(self._on_state, s, bytes(msg.payload))
                return
            loop.call_soon_threadsafe(self._on_command, s, bytes(msg.payload), msg.topic)

        def on_publish(c: mqtt.Client, u: object, mid: int, rc: mqtt.ReasonCode, p: object) -> None:
            # QoS 1/2: the broker's acknowledgement (QoS 0: written to the socket, untracked).
            # On the loop, after the publish() that returned this mid has recorded it.
            with contextlib.suppress(RuntimeError):  # the loop closed: nothing to count for
                loop.call_soon_threadsafe(s.unacked.discard, mid)

        s.client.on_connect = on_connect
        s.client.on_disconnect = on_disconnect
        s.client.on_message = on_message
        s.client.on_subscribe = on_subscribe
        s.client.on_publish = on_publish

    # ------------------------------------------------------------------ publishing

    def _publish(self, s: _Session, topic: str, payload: bytes | str, qos: int, retain: bool) -> bool:
        """Hand one message to paho; False (and nothing handed over) when ``s`` is at its
        bound of unacknowledged QoS 1/2 messages: the caller then does not mark it sent."""
        if qos > 0 and len(s.unacked) >= self.max_unacked:
            self.held += 1
            if not s.holding:
                s.holding = True
                log.info("MQTT simulator session %s: %d messages unacknowledged by the broker; "
                         "holding new ones back until it catches up", s.node or "plant",
                         len(s.unacked))
            return False
        if s.holding:
            s.holding = False
            log.info("MQTT simulator session %s: the broker caught up (%d messages held back "
                     "so far)", s.node or "plant", self.held)
        info = s.client.publish(topic, payload, qos=qos, retain=retain)
        if qos > 0:
            s.unacked.add(info.mid)
        self.published += 1
        return True

    def _next_seq(self, s: _Session) -> int:
        seq = (s.seq + s.skip) % 256
        s.skip = 0
        s.seq = (seq + 1) % 256
        return seq

    def _death_payload(self, s: _Session) -> bytes:
        ts = self.clock() // 1_000_000
        return encode_payload([Metric(BDSEQ, None, DataType.INT64, s.bd_seq, ts)], None, ts)

    def _set_will(self, s: _Session) -> None:
        assert s.node is not None
        s.client.will_set(format_topic(self.prefix, "NDEATH", s.node), self._death_payload(s), qos=1)

    def tick(self) -> None:
        """Publish what changed since the last tick (all of it after a (re)connect)."""
        t = self.clock()
        for s in self.sessions:
            if s.dead or not s.connected or not s.host_online:
                continue
            values = {a: self.plant.machine_values(a, t) for a in s.assets}
            if self.style == "plain":
                self._tick_plain(s, values)
            elif self.style == "json":
                self._tick_json(s, values, t)
            else:
                self._tick_sparkplug(s, values, t)
            s.need_birth = False

    def _tick_plain(self, s: _Session, values: dict[str, MachineValues]) -> None:
        for asset, v in values.items():
            for signal, spec in _SIGNALS.items():
                value = spec.get(v)
                if s.last.get((asset, signal)) != value and self._publish(
                        s, self.topic(asset, signal), plain_number(value), self.qos, self.retain):
                    s.last[(asset, signal)] = value

    def _tick_json(self, s: _Session, values: dict[str, MachineValues], t_ns: int) -> None:
        now = time.monotonic()
        for asset, v in values.items():
            groups: dict[str, dict[str, int | float]] = {}
            seen: dict[tuple[str, str], int | float] = {}
            event = False
            for signal, spec in _SIGNALS.items():
                group, key = JSON_LAYOUT[signal]
                value = spec.get(v)
                groups.setdefault(group, {})[key] = value
                if group in _JSON_EVENT_GROUPS and s.last.get((asset, signal)) != value:
                    event = True
                seen[(asset, signal)] = value
            if event or now - s.last_json.get(asset, -1e9) >= _JSON_HEARTBEAT_S:
                doc = json.dumps({"ts": t_ns // 1_000_000, **groups}, separators=(",", ":"))
                if not self._publish(s, self.topic(asset), doc, self.qos, self.retain):
                    continue  # held back: the change is still an event at the next tick
                s.last_json[asset] = now
            s.last.update(seen)

    def _tick_sparkplug(self, s: _Session, values: dict[str, MachineValues], t_ns: int) -> None:
        assert s.node is not None
        ts = t_ns // 1_000_000
        if s.need_birth:
            s.seq = 1  # NBIRTH is always seq 0; a pending skip_seq() hits the next message
            node_metrics = [
                Metric(BDSEQ, None, DataType.INT64, s.bd_seq, ts),
                Metric(REBIRTH, None, DataType.BOOLEAN, False, ts),
            ]
            self._publish(s, format_topic(self.prefix, "NBIRTH", s.node),
                          encode_payload(node_metrics, 0, ts), 0, False)
            s.last.clear()
        for asset, v in values.items():
            device = _line_and_asset(asset)[1]
            metrics: list[Metric] = []
            for signal, spec in _SIGNALS.items():
                value = spec.get(v)
                if s.need_birth:
                    metrics.append(Metric(signal, s.aliases[(asset, signal)], spec.datatype, value, ts))
                elif s.last.get((asset, signal)) != value:
                    metrics.append(Metric(None, s.aliases[(asset, signal)], spec.datatype, value, ts))
                s.last[(asset, signal)] = value
            if metrics:
                kind = "DBIRTH" if s.need_birth else "DDATA"
                self._publish(s, format_topic(self.prefix, kind, s.node, device),
                              encode_payload(metrics, self._next_seq(s), ts), 0, False)

    def ticker(self, interval_s: float) -> Ticker:
        """The loop that runs :meth:`tick` every ``interval_s`` and at once when a session
        (re)connects or a host asks for a rebirth."""
        return Ticker(self.tick, interval_s, name=f"mqtt-sim-{self.style}", wake=self._wake,
                      what="publishing the simulated MQTT values", logger=log)

    # ------------------------------------------------------------------ life cycle

    async def _connect(self, s: _Session, host: str, port: int, timeout: float) -> None:
        s.connect_result = self._loop.create_future()
        try:
            await asyncio.to_thread(s.client.connect, host, port, 30)
        except OSError as exc:
            raise ConnectionError(f"MQTT simulator cannot reach {host}:{port}: {exc}") from exc
        s.client.loop_start()
        try:
            rc = await asyncio.wait_for(s.connect_result, timeout)
        except TimeoutError:
            s.client.loop_stop()
            raise ConnectionError(
                f"MQTT broker {host}:{port} did not answer CONNECT in {timeout} s"
            ) from None
        if rc.is_failure:
            s.client.disconnect()
            s.client.loop_stop()
            raise ConnectionError(f"MQTT broker {host}:{port} refused the simulator: {rc}")

    async def _close(self, s: _Session) -> None:
        if s.dead:
            return
        if self.style == "sparkplug" and s.connected:
            # a clean DISCONNECT suppresses the Will, so say NDEATH ourselves (spec 3.0 §7.1)
            assert s.node is not None
            topic = format_topic(self.prefix, "NDEATH", s.node)
            info = s.client.publish(topic, self._death_payload(s), qos=1)
            self.published += 1
            with contextlib.suppress(RuntimeError, ValueError):
                await asyncio.to_thread(info.wait_for_publish, 2.0)
        s.client.disconnect()
        await asyncio.to_thread(s.client.loop_stop)


@contextlib.asynccontextmanager
async def serve_mqtt(
    plant: Plant,
    host: str,
    port: int,
    *,
    style: MqttStyle,
    assets: Sequence[str] | None = None,
    prefix: str = "tierproof",
    interval_s: float = 0.2,
    clock: Callable[[], int] = time.time_ns,
    qos: int = 1,
    retain: bool = True,
    username: str | None = None,
    password: str | None = None,
    tls: tuple[str | Path, str | Path | None, str | Path | None] | None = None,
    client_id: str | None = None,
    connect_timeout: float = 10.0,
    primary_host: str | None = None,
    max_unacked: int = MAX_UNACKED,
) -> AsyncIterator[MqttPublisher]:
    """Publish ``assets`` (default: every asset of the plant) to the broker at host:port.

    ``clock`` gives the simulated instant in ns (a constant clock freezes the machines).
    ``qos`` and ``retain`` apply to the plain and json styles; Sparkplug messages use QoS 0
    and no retain as the specification requires (its NDEATH Will QoS 1). ``tls`` is
    (CA file, client certificate, client key). ``client_id`` defaults to a random one; with
    several Sparkplug edge nodes each gets ``<client_id>-<node>``. Raises ConnectionError
    when the broker cannot be reached or refuses the connection. ``primary_host`` (Sparkplug
    only): each edge node waits for that primary host application's STATE online before its
    births, and is silent while it is offline, as Sparkplug 3.0 edge nodes configured with a
    primary host are: a gateway that starts later sees births first, never data it cannot read.
    ``max_unacked``: the most QoS 1/2 messages a session keeps unacknowledged; at the bound
    new ones are held back (counted in ``held``) and the current values go out once the
    broker has acknowledged enough (see the module's doc).
    """
    if style not in ("plain", "json", "sparkplug"):
        raise ValueError(f"unknown MQTT style {style!r}; use plain, json or sparkplug")
    if qos not in (0, 1, 2):
        raise ValueError(f"qos must be 0, 1 or 2, not {qos}")
    if max_unacked < 1:
        raise ValueError(f"max_unacked must be at least 1, not {max_unacked}")
    assets = list(plant.models) if assets is None else list(assets)
    for a in assets:
        if a not in plant.models:
            raise KeyError(f"asset {a!r} is not in the plant")
        _line_and_asset(a)
    pub = MqttPublisher(plant, style, assets, prefix, clock, qos, retain,
                        primary_host if style == "sparkplug" else None, max_unacked)
    base_id = client_id or f"tierproof-sim-{secrets.token_hex(4)}"

    groups: dict[str | None, list[str]] = {}
    for a in assets:
        groups.setdefault(_line_and_asset(a)[0] if style == "sparkplug" else None, []).append(a)
    for node, members in groups.items():
        cid = base_id if node is None or len(groups) == 1 else f"{base_id}-{node}"
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=True,
                             protocol=mqtt.MQTTv311)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        if tls is not None:
            ca, cert, key = tls
            client.tls_set(ca_certs=str(ca), certfile=None if cert is None else str(cert),
                           keyfile=None if key is None else str(key))
        if username is not None:
            client.username_pw_set(username, password)
        s = _Session(client, members, node, host_online=pub.primary_host is None)
        if node is not None:
            # aliases are unique across the edge node, devices included (spec 3.0 §6.4.2)
            s.aliases = {(a, sig): 1 + i * len(_SIGNALS) + j
                         for i, a in enumerate(members) for j, sig in enumerate(_SIGNALS)}
            pub._set_will(s)
        pub._callbacks(s)
        pub.sessions.append(s)

    try:
        for s in pub.sessions:
            await pub._connect(s, host, port, connect_timeout)
        pub.tick()  # the first message is out before the caller's first look
        async with pub.ticker(interval_s):
            yield pub
    finally:
        for s in pub.sessions:
            try:
                await pub._close(s)
            except Exception:  # closing one session must not keep the others open
                log.exception("closing the MQTT simulator's session (node %s) failed", s.node)
