"""The Sparkplug B host side of the MQTT collector: births, aliases, ``seq``, deaths.

Per edge node (group, node id) it keeps the ``bdSeq`` of the NBIRTH, the last ``seq``, the
alias table of the node and of its devices (aliases are unique per edge node) and which tags
each BIRTH mapped. It turns messages into rows through callbacks and never raises: a problem
with a whole message goes to ``problem(topic, reason, detail, tag)``, one with a single metric
to ``metric_problem(node, metric, reason, detail, tag)`` -- and the message's other metrics
are kept: a metric that cannot be decoded is dropped and counted, never the BIRTH or DATA
holding it. A BIRTH metric whose value is bad but whose name and datatype are valid is still
registered (its later DATA values are stored); one with no valid datatype is remembered as
undecodable, so its DATA values are counted as such instead of asking for rebirths forever.

Timestamps: a sample takes its metric's timestamp, else the payload's, else the gateway's
receive time; a timestamp outside what int64 nanoseconds hold (``config.times.NS_MAX``, i.e.
after 2262; uint64 milliseconds cannot be before 1970 unless a negative number was cast) is
unknown and the next one in that order is used.

* a ``seq`` gap, data from a node or device with no BIRTH seen (a host that started after
  the birth), or an alias it never announced (the message's other metrics are stored) ->
  rebirth request (NCMD ``Node Control/Rebirth``, at most once per
  ``rebirth_min_interval_ns`` per node), and the node's data is ignored until its NBIRTH;
* NDEATH whose ``bdSeq`` matches the NBIRTH (a death from an older session is ignored) ->
  a ``BAD_STALE`` sample for every tag of the node and its devices, and a gap opened for the
  assets of those tags (not for the MQTT device's other nodes), closed by its next NBIRTH;
  DDEATH -> ``BAD_STALE`` for that device's tags.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from config.signals import Quality
from config.times import NS_MAX

from ..decode import PayloadError, TagCodec, match_levels
from .codec import (
    DataType,
    DecodedPayload,
    Metric,
    SparkplugDecodeError,
    SparkplugTopic,
    apply_datatype,
    decode_payload,
    encode_payload,
    format_topic,
)

__all__ = ["REBIRTH_METRIC", "SparkplugHost", "rebirth_request"]

REBIRTH_METRIC = "Node Control/Rebirth"

#: reasons of metric problems only the host sees (the codec's are in collector.mqtt.sparkplug.codec)
BIRTH_NO_NAME = "sparkplug birth metric without name"
BIRTH_NO_DATATYPE = "sparkplug birth metric without datatype"
INVALID_IN_BIRTH = "sparkplug metric invalid in birth"
UNKNOWN_METRIC = "unknown sparkplug metric"

_MS_MAX = NS_MAX // 1_000_000


def _ms_ns(ms: int | None) -> int | None:
    """Milliseconds since the epoch as ns; None when unknown or outside ``[0, NS_MAX]``."""
    return ms * 1_000_000 if ms is not None and 0 <= ms <= _MS_MAX else None

Emit = Callable[[int, int, float, int, "str | None"], None]  # tag index, ts ns, value, quality, text
Problem = Callable[[str, str, str, "int | None"], None]  # topic, reason, detail, tag index
# group/node[/device], metric (name or "alias N"), reason, detail, tag index
MetricProblem = Callable[[str, str, str, str, "int | None"], None]
Publish = Callable[[str, bytes], None]
# "open"/"close", node key, ts, reason, the assets the gap covers (empty when closing)
GapEvent = Callable[[str, str, int, "str | None", tuple[str, ...]], None]


def rebirth_request(group: str, node: str, now_ms: int) -> tuple[str, bytes]:
    """Topic and payload of an NCMD asking ``node`` to publish its births again."""
    payload = encode_payload(
        [Metric(REBIRTH_METRIC, None, DataType.BOOLEAN, True, now_ms)], None, now_ms
    )
    return format_topic(group, "NCMD", node), payload


@dataclass(slots=True)
class _Node:
    bd_seq: int | None = None
    seq: int | None = None
    alive: bool = False  # an NBIRTH was seen and no death, gap or seq problem since
    dead: bool = False  # an NDEATH was seen (stale marks written, gap open)
    # alias -> (name, datatype); datatype UNKNOWN: announced by a BIRTH but undecodable
    aliases: dict[int, tuple[str, int]] = field(default_factory=dict)
    types: dict[str | None, dict[str, int]] = field(default_factory=dict)  # device -> name -> datatype
    tags: dict[str | None, dict[str, int]] = field(default_factory=dict)  # device -> name -> tag index
    devices_alive: set[str] = field(default_factory=set)
    last_rebirth_ns: int | None = None


class SparkplugHost:
    """Sparkplug B host state for one subscription.

    ``levels`` is the subscription's template over ``<group>/<edge node>[/<device>]``;
    ``keys`` maps (placeholder values..., metric name) to a tag index.
    """

    def __init__(
        self,
        levels: Sequence[str | None],
        keys: dict[tuple[str, ...], int],
        codecs: Sequence[TagCodec],
        assets: Sequence[str],
        *,
        emit: Emit,
        problem: Problem,
        metric_problem: MetricProblem,
        publish: Publish,
        gap: GapEvent,
        rebirth_min_interval_ns: int,
    ) -> None:
        self._levels = list(levels)
        self._keys = keys
        self._codecs = codecs
        self._assets = assets
        self._emit = emit
        self._problem = problem
        self._metric_problem = metric_problem
        self._publish = publish
        self._gap = gap
        self._rebirth_ns = rebirth_min_interval_ns
        self._nodes: dict[tuple[str, str], _Node] = {}
        self.rebirth_requests = 0

    # ------------------------------------------------------------------ entry point

    def handle(self, t: SparkplugTopic, payload: bytes, now_ns: int) -> None:
        mtype = t.message_type
        if mtype in ("NCMD", "DCMD", "STATE"):
            return  # commands (ours included) and host states carry no machine data
        topic = t.topic
        try:
            p = decode_payload(payload)
        except SparkplugDecodeError as exc:
            self._problem(topic, exc.reason, str(exc), None)
            return
        key = (t.group_id, t.edge_node_id)
        node = self._nodes.get(key)
        if mtype == "NBIRTH":
            self._nbirth(t, p, now_ns)
            return
        if mtype == "NDEATH":
            self._ndeath(t, node, p.metrics, now_ns)
            return
        if node is None or not node.alive:
            self._problem(topic, "sparkplug data before birth",
                          f"{mtype} from a node whose NBIRTH this host has not seen", None)
            self._rebirth(t, node, now_ns)
            return
        if not self._seq_ok(t, node, p.seq, now_ns):
            return
        dev = t.device_id
        if mtype == "DBIRTH":
            assert dev is not None
            self._birth_metrics(t, node, dev, p, now_ns)
            node.devices_alive.add(dev)
        elif mtype == "DDEATH":
            assert dev is not None
            node.devices_alive.discard(dev)
            self._stale(node.tags.get(dev, {}).values(), now_ns)
        elif mtype == "DDATA" and dev not in node.devices_alive:
            self._problem(topic, "sparkplug data before birth",
                          f"DDATA from device {dev!r} whose DBIRTH this host has not seen", None)
            self._rebirth(t, node, now_ns)
        else:  # NDATA, DDATA
            self._data(t, node, dev, p, now_ns)

    # ------------------------------------------------------------------ lifecycle

    def _nbirth(self, t: SparkplugTopic, p: DecodedPayload, now_ns: int) -> None:
        key = (t.group_id, t.edge_node_id)
        old = self._nodes.get(key)
        node = _Node(last_rebirth_ns=old.last_rebirth_ns if old is not None else None)
        self._nodes[key] = node
        for m in p.metrics:
            if m.name == "bdSeq" and isinstance(m.value, int) and not isinstance(m.value, bool):
                node.bd_seq = m.value
        node.seq = p.seq if p.seq is not None else 0
        node.alive = True
        # also when this host never saw the death: a previous collector instance may have
        # opened the gap (the supervisor ignores closing a gap it does not have)
        self._gap("close", f"{t.group_id}/{t.edge_node_id}", now_ns, None, ())
        self._birth_metrics(t, node, None, p, now_ns)

    def _ndeath(self, t: SparkplugTopic, node: _Node | None, metrics: list[Metric], now_ns: int) -> None:
        if node is None or (node.bd_seq is None and not node.tags):
            return  # a node this host never saw born: nothing of it is stored
        bd = next((m.value for m in metrics if m.name == "bdSeq"), None)
        if node.bd_seq is not None and bd is not None and bd != node.bd_seq:
            return  # the Will of an older session (its replacement already sent NBIRTH)
        was_dead = node.dead
        node.alive, node.dead = False, True
        node.devices_alive.clear()
        indices = {i for tags in node.tags.values() for i in tags.values()}
        self._stale(indices, now_ns)
        if not was_dead:
            # the gap covers the assets of this node only: the device's other nodes still report
            self._gap("open", f"{t.group_id}/{t.edge_node_id}", now_ns,
                      f"sparkplug node {t.group_id}/{t.edge_node_id} offline (NDEATH)",
                      tuple(sorted({self._assets[i] for i in indices})))

    def _seq_ok(self, t: SparkplugTopic, node: _Node, seq: int | None, now_ns: int) -> bool:
        expected = 0 if node.seq is None else (node.seq + 1) % 256
        if seq != expected:
            self._problem(t.topic, "sparkplug seq gap", f"seq {seq}, expected {expected}", None)
            node.alive = False  # nothing more from it until its NBIRTH
            self._rebirth(t, node, now_ns)
            return False
        node.seq = seq
        return True

    def _rebirth(self, t: SparkplugTopic, node: _Node | None, now_ns: int) -> None:
        if node is None:
            node = _Node()
            self._nodes[(t.group_id, t.edge_node_id)] = node
        last = node.last_rebirth_ns
        if last is not None and now_ns - last < self._rebirth_ns:
            return
        node.last_rebirth_ns = now_ns
        self.rebirth_requests += 1
        topic, payload = rebirth_request(t.group_id, t.edge_node_id, now_ns // 1_000_000)
        self._publish(topic, payload)

    # ------------------------------------------------------------------ metrics

    def _tag_of(self, t: SparkplugTopic, device: str | None, name: str) -> int | None:
        address = [t.group_id, t.edge_node_id] + ([device] if device is not None else [])
        values = match_levels(self._levels, address)
        if values is None:
            return None
        return self._keys.get((*values, name))

    @staticmethod
    def _where(t: SparkplugTopic, device: str | None) -> str:
        return f"{t.group_id}/{t.edge_node_id}" + (f"/{device}" if device is not None else "")

    def _register(self, t: SparkplugTopic, node: _Node, device: str | None, name: str,
                  alias: int | None, dt: int) -> int | None:
        """Learn a BIRTH metric (``dt`` UNKNOWN: undecodable); the index of the tag that asks
        for it, if any, which gets its values only when it is decodable."""
        node.types.setdefault(device, {})[name] = dt
        if alias is not None:
            node.aliases[alias] = (name, dt)
        i = self._tag_of(t, device, name)
        if i is not None and dt != DataType.UNKNOWN:
            node.tags.setdefault(device, {})[name] = i
        return i

    def _birth_metrics(self, t: SparkplugTopic, node: _Node, device: str | None,
                       p: DecodedPayload, now_ns: int) -> None:
        node.tags.setdefault(device, {}).clear()
        node.types.setdefault(device, {}).clear()
        where = self._where(t, device)
        base_ns = _payload_ns(p, now_ns)
        for b in p.bad:
            # a bad value with a valid name and datatype: the metric is still learnt (its DATA
            # values count); without a valid datatype it is learnt as undecodable
            i = None
            if b.name is not None:
                i = self._register(t, node, device, b.name, b.alias,
                                   DataType.UNKNOWN if b.datatype is None else b.datatype)
            elif b.alias is not None:
                node.aliases[b.alias] = (f"alias {b.alias}", DataType.UNKNOWN)
            self._metric_problem(where, _metric_label(b.name, b.alias), b.reason, b.detail, i)
        for m in p.metrics:
            label = _metric_label(m.name, m.alias)
            if m.name is None:
                if m.alias is not None:
                    node.aliases[m.alias] = (label, DataType.UNKNOWN)
                self._metric_problem(where, label, BIRTH_NO_NAME,
                                     f"BIRTH metric {label} has no name", None)
                continue
            if m.datatype == DataType.UNKNOWN:
                i = self._register(t, node, device, m.name, m.alias, DataType.UNKNOWN)
                self._metric_problem(where, label, BIRTH_NO_DATATYPE,
                                     f"BIRTH metric {m.name!r} has no datatype", i)
                continue
            i = self._register(t, node, device, m.name, m.alias, m.datatype)
            if i is not None:
                self._store(where, i, m, base_ns)

    def _data(self, t: SparkplugTopic, node: _Node, device: str | None,
              p: DecodedPayload, now_ns: int) -> None:
        tags = node.tags.get(device, {})
        types = node.types.get(device, {})
        where = self._where(t, device)
        base_ns = _payload_ns(p, now_ns)
        for b in p.bad:
            known = b.name
            if known is None and b.alias is not None and b.alias in node.aliases:
                known = node.aliases[b.alias][0]
            self._metric_problem(where, _metric_label(known, b.alias), b.reason, b.detail,
                                 None if known is None else self._tag_of(t, device, known))
        unknown_alias: int | None = None
        for m in p.metrics:
            dt: int | None
            if m.name is not None:
                name: str = m.name
                dt = types.get(name)
            elif m.alias is not None and m.alias in node.aliases:
                name, dt = node.aliases[m.alias]
            else:
                unknown_alias = m.alias
                continue
            if dt == DataType.UNKNOWN:
                self._metric_problem(where, _metric_label(m.name, m.alias), INVALID_IN_BIRTH,
                                     f"metric {name!r} could not be decoded in the BIRTH",
                                     self._tag_of(t, device, name))
                continue
            i = tags.get(name)
            if i is None:
                if dt is None and (i := self._tag_of(t, device, name)) is not None:
                    self._metric_problem(where, repr(name), UNKNOWN_METRIC,
                                         f"metric {name!r} was not in the BIRTH", i)
                continue  # else a metric no tag asks for
            if dt is None:
                continue
            try:
                m = apply_datatype(m, dt)
            except SparkplugDecodeError as exc:
                self._metric_problem(where, repr(name), exc.reason, str(exc), i)
                continue
            self._store(where, i, m, base_ns)
        if unknown_alias is not None:
            # the other metrics are stored: only this node's alias table is out of date
            self._problem(t.topic, "unknown sparkplug alias",
                          f"alias {unknown_alias} was not in the BIRTH", None)
            node.alive = False
            self._rebirth(t, node, now_ns)

    def _store(self, where: str, i: int, m: Metric, base_ns: int) -> None:
        """``base_ns``: the payload's timestamp, else the receive time."""
        ts = _ms_ns(m.timestamp_ms)
        if ts is None:
            ts = base_ns
        if m.is_null or m.value is None:
            self._emit(i, ts, math.nan, Quality.BAD, None)
            return
        codec = self._codecs[i]
        v = m.value
        try:
            if isinstance(v, bool) and codec.type != "string":
                value, text = float(v), None  # a Boolean metric is 0/1 whatever the tag's type
            elif isinstance(v, str):
                value, text = codec.from_text(v.encode("utf-8", "surrogatepass"))
            else:
                value, text = codec.from_json(v)
        except PayloadError as exc:
            label = _metric_label(m.name, m.alias)
            self._metric_problem(where, label, exc.reason, f"metric {label}: {exc.detail}", i)
            return
        self._emit(i, ts, value, Quality.GOOD, text)

    def _stale(self, indices: Iterable[int], now_ns: int) -> None:
        for i in sorted(set(indices)):
            self._emit(i, now_ns, math.nan, Quality.BAD_STALE, None)


def _payload_ns(p: DecodedPayload, now_ns: int) -> int:
    """The payload's timestamp in ns, or the receive time when it has none (or none usable)."""
    ts = _ms_ns(p.timestamp_ms)
    return now_ns if ts is None else ts


def _metric_label(name: str | None, alias: int | None) -> str:
    if name is not None:
        return repr(name)
    return f"alias {alias}" if alias is not None else "(no name or alias)"
