"""MQTT collector: plain values, JSON documents and Sparkplug B from a broker (paho-mqtt 2.x).

**Transport.** paho's network loop runs *on the asyncio event loop*: its socket is watched
with ``loop.add_reader``/``add_writer`` and ``loop_read``/``loop_write``/``loop_misc`` are
called from there (paho's "external event loop" integration), so every callback, every
acknowledgement and the batching run on one thread with no locks and no hand-off per message
(see docs/benchmarks.md for the measurement against a ``loop_start()`` thread). Only ``connect()``
(TCP connect and TLS handshake, which block) runs in a worker thread. paho reads its socket
through :class:`~.transport.ReadBuffer`: one ``recv`` per 64 KiB instead of three or more per packet.

**Hot path.** Per message: one route lookup (cached per topic), one ``json.loads``, one
generated expression pulling out every field of the route (:class:`~.decode.JsonFields`)
and a few list ``extend`` calls; values become numpy columns once per batch. Anything out of
the ordinary (a missing field, a value needing conversion, JSON null, a wrong type) goes
field by field through :class:`~.decode.TagCodec`, which gives the same values and the
precise errors.

**Routing.** A message goes to the first subscription whose filter matches its topic; the
subscription's template reads the placeholders ({line}, {asset}, {signal}, ...) from the
topic levels, and those (plus the JSON field or Sparkplug metric name) select the tag. The
route of a topic is cached.

**Acknowledgement.** With ``qos: 1`` the client subscribes at QoS 1 with ``manual_ack``: a
message is acknowledged (PUBACK) only after the batch holding it is durably stored -- the
supervisor writes the batch with ``Writer.write`` and then calls :meth:`MqttCollector.stored`
(``acknowledges = True``). Acks go out in receive order (MQTT 3.1.1 section 4.6). A message
that carries nothing to store (bad input, a duplicate) is acknowledged with its batch too, so
the broker never redelivers it forever. If the connection drops before the ack, the broker
redelivers the message (with the DUP flag) to the persistent session (``clean_session:
false``).

**Read-ahead.** While the supervisor stores a batch (and, at QoS 1, before it acknowledges
it), paho's reader keeps taking messages into the next one. That is bounded: once the next
batch holds :data:`READ_AHEAD_BATCHES` x ``batch_max_messages`` messages or rows (50,000 by
default: what one writer group commits at most), the collector stops reading the socket until
the supervisor takes the batch. A gateway that falls behind (a slow store, a starved CPU) then
leaves its backlog in the TCP buffers and in the broker's queue for its session -- which the
broker bounds (Mosquitto ``max_queued_messages``, see collector/mqtt/README.md) -- instead of
growing without bound in its own memory (900 MiB in 30 s of a plant benchmark, before). Not
while connecting: a persistent session's backlog can arrive before the SUBACK the connect
waits for, which must be read (see ``PahoConnection._may_pause``).

**Duplicates.** A redelivered message carries the DUP flag and its original packet id. The
collector remembers (packet id, topic, payload hash) of the last :data:`DEDUP_MEMORY` stored
messages per client id -- across reconnects, not across a gateway restart -- and drops a DUP
message found there. Samples with a payload time (JSON ``timestamp_field``, Sparkplug
timestamps) are idempotent in the store anyway (one sample per tag and time, the last
written). The remaining hole: a gateway crash after the store write and before the PUBACK,
for plain payloads (stored at receive time) -- see collector/mqtt/README.md.

**Timestamps.** ``ts_ns`` is the payload's time where it has one, else the receive time (a
payload time outside ``[0, config.times.NS_MAX]`` -- before 1970, after 2262 -- is unknown,
never a reason to drop the message); ``gateway_ts_ns`` is always the gateway's clock when the
message arrived.

**Bad input** never stops ingestion: each dropped message is counted per reason in
:attr:`MqttCollector.dropped` and logged through a :class:`~collector.lograte.LogLimiter`
(the first of each (topic, reason) in full, then a summary line per minute; new reasons are
always logged); problems specific to a tag (a wrong type in its field) are also in
:attr:`tag_errors`. A Sparkplug metric that cannot be decoded is dropped alone, counted under
its reason and logged the same way per (node, metric, reason).

**Size limits.** A payload longer than the device's ``max_payload_bytes`` is dropped before
anything decodes it (not hashed, not copied, no UTF-8 or JSON decoding) and counted as
"payload too large"; a string value longer than ``max_text_bytes`` (UTF-8 bytes) is dropped
and counted as "text too long" (see :class:`~.decode.TagCodec`). MQTT 3.1.1 gives a client no
way to refuse a packet before reading it, so the broker's own limit (Mosquitto
``max_packet_size``) is what keeps a huge message off the wire; see collector/mqtt/README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from config.base import DeviceBase
from config.errors import ConfigError, ConnectError
from config.mqtt import MqttDevice, MqttSubscription, MqttTag, mqtt_tag_key
from config.signals import Quality
from config.times import NS_MAX
from store.batch import Batch

from ..base import scaling, unregistered_tags
from ..lograte import LogLimiter
from .decode import (
    NS_PER,
    JsonFields,
    PayloadError,
    TagCodec,
    is_missing,
    match_levels,
    parse_json,
    parse_timestamp,
    walk,
)
from .sparkplug import SparkplugDecodeError, SparkplugHost, parse_topic
from .transport import PahoConnection, ReadBuffer, TlsContext

__all__ = ["DEDUP_MEMORY", "PAYLOAD_TOO_LARGE", "READ_AHEAD_BATCHES", "MqttCollector", "MqttStats"]

log = logging.getLogger("tierproof.collector.mqtt")

#: stored messages remembered per client id to recognise a redelivery (packet ids wrap at 65535)
DEDUP_MEMORY: Final = 20_000
#: messages (or rows) read ahead of the batch being stored, in batches of batch_max_messages:
#: reading pauses beyond (see the module docstring)
READ_AHEAD_BATCHES: Final = 10
#: topics whose route is cached (a broker with more distinct topics just recomputes)
_ROUTE_CACHE: Final = 100_000
#: the reasons of the size limits (keys of MqttCollector.dropped)
PAYLOAD_TOO_LARGE: Final = "payload too large"

_GOOD: Final = int(Quality.GOOD)

# a route: what to do with a topic's messages
_UNKNOWN: Final = 0
_PLAIN: Final = 1
_JSON: Final = 2
_SPARKPLUG: Final = 3


@dataclass(slots=True)
class MqttStats:
    messages: int = 0
    duplicates: int = 0
    batches: int = 0
    acked: int = 0
    rebirth_requests: int = 0
    #: times reading paused because the read-ahead bound was reached (the store is behind)
    read_pauses: int = 0


class _Memory:
    """Stored messages of one client session (packet id, topic, payload hash), oldest first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._seen: OrderedDict[tuple[int, str, int], None] = OrderedDict()

    def add(self, keys: list[tuple[int, str, int]]) -> None:
        seen = self._seen
        for k in keys:
            seen[k] = None
        while len(seen) > self._size:
            seen.popitem(last=False)

    def __contains__(self, key: tuple[int, str, int]) -> bool:
        return key in self._seen


#: per (broker, client id): outlives a collector, which the supervisor re-creates per connect
_MEMORIES: dict[tuple[str, str], _Memory] = {}


@dataclass(slots=True)
class Sub:
    """A subscription compiled: its levels and key -> tag(s)."""

    spec: MqttSubscription
    levels: list[str | None]
    plain: dict[tuple[str, ...], int]
    json: dict[tuple[str, ...], list[tuple[int, tuple[str, ...]]]]
    ts_path: tuple[str, ...] | None
    #: "epoch_*" timestamps: ns per unit (the common case, converted inline); else 0
    ts_mult: int
    host: SparkplugHost | None = None


class MqttCollector(PahoConnection):
    """Collects one :class:`~config.mqtt.MqttDevice`.

    ``tag_ids`` maps tag paths to store ids; every tag of the device must be in it.
    ``broker`` overrides the device's broker URL (the demo passes its embedded broker's).
    """

    device: DeviceBase

    def __init__(
        self,
        device: DeviceBase,
        tag_ids: Mapping[str, int],
        *,
        broker: str | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if not isinstance(device, MqttDevice):
            raise ConfigError(f"device {device.name}: MqttCollector needs an mqtt device")
        if broker is not None:
            device = device.model_copy(update={"broker": broker})
        self.device = device
        self._dev = device
        self._tags: list[MqttTag] = list(device.tags)
        self._clock = clock
        problems = unregistered_tags(device, self._tags, tag_ids)
        if device.host_port is None:
            problems.append((f"devices[{device.name}].broker",
                             "no broker URL (only `tierproof demo` provides an embedded broker)"))
        if device.tls is not None:
            for f in ("ca_file", "cert_file", "key_file"):
                p = getattr(device.tls, f)
                if p is not None:
                    try:
                        with open(p, "rb"):
                            pass
                    except OSError as exc:
                        problems.append((f"devices[{device.name}].tls.{f}",
                                         f"cannot read {p}: {exc.strerror}"))
        self._tls: TlsContext | None = None
        if not problems and device.host_port is not None and device.host_port[2]:
            try:
                self._tls = TlsContext.of(device)
            except (ssl.SSLError, OSError, ValueError) as exc:
                problems.append((f"devices[{device.name}].tls", f"cannot load the TLS files: {exc}"))
        if problems:
            raise ConfigError(f"device {device.name}: cannot collect its tags", problems)
        self._ids = np.array([tag_ids[t.path] for t in self._tags], dtype=np.int32)
        self._scaling = scaling(self._tags)
        self._codecs = [TagCodec.of(t, device.max_text_bytes) for t in self._tags]
        self._max_payload = device.max_payload_bytes
        self._read_ahead = READ_AHEAD_BATCHES * device.batch_max_messages
        self._subs = [self._compile(s) for s in device.subscriptions]
        #: the supervisor stores each batch durably, then calls stored(batch)
        self.acknowledges = device.qos == 1
        #: tag path -> the latest problem with its values
        self.tag_errors: dict[str, str] = {}
        #: reason -> messages (or values) dropped for it
        self.dropped: dict[str, int] = {}
        #: ("open" | "close", key, ts_ns, reason, assets) gaps for the supervisor (Sparkplug
        #: node deaths): the gap covers only those assets
        self.gap_events: list[tuple[str, str, int, str | None, tuple[str, ...]]] = []
        self.stats = MqttStats()
        hp = device.host_port
        self._memory = _MEMORIES.setdefault(
            (f"{hp[0]}:{hp[1]}" if hp else "", device.session_id), _Memory(DEDUP_MEMORY)
        )
        self._routes: dict[str, tuple[Any, ...]] = {}
        #: (paths, types) -> its fast extractor, shared by every topic with those fields
        self._fast: dict[tuple[tuple[tuple[str, ...], ...], tuple[str, ...]], JsonFields] = {}
        #: the log lines about dropped input, rate-limited per (topic or metric, reason)
        self.logs = LogLimiter(log, device.name)
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._misc: asyncio.Task[None] | None = None
        self._sock: Any = None
        self._rbuf: ReadBuffer | None = None
        self._connack: asyncio.Future[ReasonCode] | None = None
        self._suback: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._lost: str | None = None
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        # rows and acknowledgements since the last batch
        self._r_idx: list[int] = []
        self._r_ts: list[int] = []
        self._r_val: list[float] = []
        self._r_q: list[int] = []
        self._r_text: dict[int, str] = {}  # row -> text: string samples are rare
        self._r_gw: list[int] = []  # the gateway's clock when the message arrived
        self._now = 0
        self._r_msgs: list[tuple[int, str, int]] = []  # (packet id, topic, payload hash), QoS 1
        self._unacked: deque[tuple[Batch, list[tuple[int, str, int]]]] = deque()

    # ------------------------------------------------------------------ setup

    def _compile(self, spec: MqttSubscription) -> Sub:
        levels = spec.levels
        plain: dict[tuple[str, ...], int] = {}
        js: dict[tuple[str, ...], list[tuple[int, tuple[str, ...]]]] = {}
        sp: dict[tuple[str, ...], int] = {}
        for i, t in enumerate(self._tags):
            if self._dev.tag_kind(t) != spec.format:
                continue
            key = mqtt_tag_key(levels, t, spec.format)
            if spec.format == "plain":
                plain.setdefault(key, i)
            elif spec.format == "json":
                assert t.field is not None
                js.setdefault(key[:-1], []).append((i, tuple(t.field.split("."))))
            else:
                sp.setdefault(key, i)
        ts_path = tuple(spec.timestamp_field.split(".")) if spec.timestamp_field else None
        ts_mult = NS_PER.get(spec.timestamp_format, 0)
        sub = Sub(spec, levels, plain, js, ts_path, ts_mult)
        if spec.format == "sparkplug":
            sub.host = SparkplugHost(
                levels, sp, self._codecs, [t.asset for t in self._tags], emit=self._row,
                problem=self._problem, metric_problem=self._metric_problem,
                publish=self._publish, gap=self._gap_event,
                rebirth_min_interval_ns=int(self._dev.rebirth_min_interval_s * 1e9),
            )
        return sub

    # ------------------------------------------------------------------ messages

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._message(msg)
        except Exception:  # never let a bug unwind paho's reader: count it and go on
            log.exception("%s: unexpected error on a message", self._dev.name)
            self._count("internal error")

    def _message(self, msg: mqtt.MQTTMessage) -> None:
        self.stats.messages += 1
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = msg._topic.decode("utf-8", "replace")
        size = len(msg.payload)
        if size > self._max_payload:
            # before any work proportional to its size: no copy, no hash, no decoding (a
            # redelivery of it is dropped again just as cheaply)
            if msg.qos:
                self._r_msgs.append((msg.mid, topic, 0))
            self._problem(topic, PAYLOAD_TOO_LARGE,
                          f"{size:,} bytes, more than max_payload_bytes ({self._max_payload:,})", None)
            self._added()
            return
        payload = bytes(msg.payload)
        if msg.qos:
            key = (msg.mid, topic, hash(payload))
            self._r_msgs.append(key)
            if msg.dup and key in self._memory:
                self.stats.duplicates += 1
                self._added()
                return
        route = self._routes.get(topic)
        if route is None:
            route = self._route(topic)
        kind = route[0]
        now = self._now = self._clock()
        if kind == _PLAIN:
            i = route[1]
            try:
                value, text = self._codecs[i].from_text(payload)
            except PayloadError as exc:
                self._problem(topic, exc.reason, exc.detail, i)
            else:
                self._row(i, now, value, Quality.GOOD, text)
        elif kind == _JSON:
            self._json(topic, route[1], route[2], route[3], payload, now)
        elif kind == _SPARKPLUG:
            sub: Sub = route[1]
            assert sub.host is not None
            try:
                t = parse_topic(topic)
            except SparkplugDecodeError as exc:
                self._problem(topic, "invalid sparkplug topic", str(exc), None)
            else:
                sub.host.handle(t, payload, now)
                self.stats.rebirth_requests = sum(
                    s.host.rebirth_requests for s in self._subs if s.host is not None)
        else:
            self._problem(topic, "unknown topic", "no configured tag is published on it", None)
        self._added()

    def _route(self, topic: str) -> tuple[Any, ...]:
        route: tuple[Any, ...] = (_UNKNOWN,)
        levels = topic.split("/")
        for sub in self._subs:
            if not mqtt.topic_matches_sub(sub.spec.filter, topic):
                continue
            if sub.host is not None:
                route = (_SPARKPLUG, sub)
                break
            values = match_levels(sub.levels, levels)
            if values is None:
                continue
            if sub.spec.format == "plain":
                i = sub.plain.get(values)
                if i is not None:
                    route = (_PLAIN, i)
                    break
            else:
                fields = sub.json.get(values)
                if fields is not None:
                    route = (_JSON, sub, fields, self._fast_fields(fields))
                    break
        if len(self._routes) >= _ROUTE_CACHE:
            self._routes.clear()
        self._routes[topic] = route
        return route

    def _fast_fields(self, fields: list[tuple[int, tuple[str, ...]]]) -> tuple[JsonFields, tuple[int, ...]]:
        paths = tuple(path for _, path in fields)
        types = tuple(self._tags[i].type for i, _ in fields)
        fast = self._fast.get((paths, types))
        if fast is None:
            fast = self._fast[(paths, types)] = JsonFields(paths, types)
        return fast, tuple(i for i, _ in fields)

    def _json(self, topic: str, sub: Sub, fields: list[tuple[int, tuple[str, ...]]],
              fast: tuple[JsonFields, tuple[int, ...]], payload: bytes, now: int) -> None:
        try:
            doc = parse_json(payload)
            ts = now
            if sub.ts_path is not None:
                raw = walk(doc, sub.ts_path)
                # epoch integers inline: the same result as parse_timestamp, without the call
                if type(raw) is int and sub.ts_mult and 0 <= raw * sub.ts_mult <= NS_MAX:
                    ts = raw * sub.ts_mult
                elif is_missing(raw):
                    raise PayloadError("missing timestamp",
                                       f"no {sub.spec.timestamp_field!r} in the document")
                else:
                    # a time out of range (before 1970, after 2262) is unknown: the receive time
                    parsed = parse_timestamp(raw, sub.spec.timestamp_format)
                    if parsed is not None:
                        ts = parsed
        except PayloadError as exc:
            self._problem(topic, exc.reason, exc.detail, None)
            return
        values = fast[0].floats(doc)
        if values is not None:
            # every field decoded at once: whole columns appended, no call per value
            n = len(values)
            self._r_idx.extend(fast[1])
            self._r_ts.extend([ts] * n)
            self._r_val.extend(values)
            self._r_q.extend([_GOOD] * n)
            self._r_gw.extend([now] * n)
            return
        for i, path in fields:
            v = walk(doc, path)
            if is_missing(v):
                self._problem(topic, "missing field", f"no {'.'.join(path)!r} in the document", i)
                continue
            if v is None:  # JSON null: the source says it has no value
                self._row(i, ts, math.nan, Quality.BAD, None)
                continue
            try:
                value, text = self._codecs[i].from_json(v)
            except PayloadError as exc:
                self._problem(topic, exc.reason, f"{'.'.join(path)}: {exc.detail}", i)
                continue
            self._row(i, ts, value, Quality.GOOD, text)

    def _row(self, i: int, ts: int, value: float, quality: int, text: str | None) -> None:
        if text is not None:
            self._r_text[len(self._r_idx)] = text
        self._r_idx.append(i)
        self._r_ts.append(ts)
        self._r_val.append(value)
        self._r_q.append(quality)
        self._r_gw.append(self._now)

    def _added(self) -> None:
        self._wake.set()
        limit = self._dev.batch_max_messages
        if len(self._r_msgs) >= limit or len(self._r_idx) >= limit:
            self._full.set()
            bound = self._read_ahead
            if (len(self._r_msgs) >= bound or len(self._r_idx) >= bound) and self.pause_reading():
                self.stats.read_pauses += 1

    def _count(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def _problem(self, topic: str, reason: str, detail: str, i: int | None) -> None:
        self._count(reason)
        if i is not None:
            self.tag_errors[self._tags[i].path] = f"{reason} on {topic!r}: {detail}"
        where = repr(topic[:200])
        if self.logs.admit(where, reason):
            log.warning("%s: dropped a message on %s: %s: %s (further ones are summarised once "
                        "a minute; see dropped in the collector status)",
                        self._dev.name, where, reason, detail)

    def _metric_problem(self, where: str, metric: str, reason: str, detail: str, i: int | None) -> None:
        """One Sparkplug metric dropped (the rest of its message is kept)."""
        self._count(reason)
        if i is not None:
            self.tag_errors[self._tags[i].path] = f"{reason} from {where}: {detail}"
        if self.logs.admit(f"metric {metric} of sparkplug node {where}", reason):
            log.warning("%s: dropped metric %s of sparkplug node %s: %s: %s (the rest of the message "
                        "is kept; further ones are summarised once a minute; see dropped in the "
                        "collector status)", self._dev.name, metric, where, reason, detail)

    def _publish(self, topic: str, payload: bytes) -> None:
        client = self._client
        if client is not None:
            client.publish(topic, payload, qos=0)

    def _gap_event(self, kind: str, key: str, ts: int, reason: str | None, assets: tuple[str, ...]) -> None:
        self.gap_events.append((kind, key, ts, reason, assets))

    # ------------------------------------------------------------------ batches

    def _drain(self) -> tuple[Batch, list[tuple[int, str, int]]]:
        msgs, self._r_msgs = self._r_msgs, []
        if not self._r_idx:
            return Batch.empty(), msgs
        idx = np.array(self._r_idx, dtype=np.intp)
        ts = np.array(self._r_ts, dtype=np.int64)
        value = np.array(self._r_val, dtype=np.float64)
        quality = np.array(self._r_q, dtype=np.uint8)
        text = None
        if self._r_text:
            text = np.full(len(idx), None, dtype=object)
            for row, t in self._r_text.items():
                text[row] = t
        gateway = np.array(self._r_gw, dtype=np.int64)
        self._r_idx, self._r_ts, self._r_val, self._r_q, self._r_text = [], [], [], [], {}
        self._r_gw = []
        if self._scaling is not None:
            value = self._scaling.apply(value, idx)
        return Batch(self._ids[idx], ts, value, quality, text, gateway_ts_ns=gateway), msgs

    def _raise_if_lost(self) -> None:
        if self._lost is not None:
            raise ConnectError(self._lost)

    async def batches(self) -> AsyncIterator[Batch]:
        """Batches until the connection is lost (ConnectError). With ``acknowledges``, the
        caller stores each batch durably and then calls :meth:`stored` with it."""
        if self._client is None:
            raise ConnectError(f"{self._dev.name}: not connected (use 'async with collector')")
        wait_s = self._dev.batch_max_ms / 1000.0
        while True:
            self._raise_if_lost()
            self.logs.tick()
            due = self.logs.due_in()
            if due is None:
                await self._wake.wait()
            else:  # summaries wait: say them on time even if no message comes
                try:
                    await asyncio.wait_for(self._wake.wait(), due + 0.01)
                except TimeoutError:
                    continue
            self._raise_if_lost()
            if wait_s > 0 and not self._full.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), wait_s)
                self._raise_if_lost()
            self._wake.clear()
            self._full.clear()
            batch, msgs = self._drain()
            self.resume_reading()  # what was held back is ours to read again
            if not len(batch) and not msgs:
                continue
            self.stats.batches += 1
            if self.acknowledges:
                self._unacked.append((batch, msgs))
            yield batch

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await super().__aexit__(exc_type, exc, tb)
        finally:
            self.logs.flush()  # what was counted since the last summary is said now

    def stored(self, batch: Batch) -> None:
        """``batch`` (and every batch before it) is durably stored: acknowledge its messages."""
        client = self._client
        while self._unacked:
            b, msgs = self._unacked.popleft()
            self._memory.add(msgs)
            if client is not None:
                for mid, _, _ in msgs:
                    client.ack(mid, 1)
                self.stats.acked += len(msgs)
            if b is batch:
                return
