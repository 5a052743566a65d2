"""Decoders of the MQTT collector: tables of cases, and property tests that throw >= 10,000
generated payloads at each decoder (plain, JSON, Sparkplug host) with no exception escaping.

The messages are real ``paho.mqtt.client.MQTTMessage`` objects handed to the collector's
message handler, as paho's reader would; no broker is needed to decode.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.client import MQTTMessage

from collector.mqtt import MqttCollector
from collector.mqtt.decode import PayloadError, TagCodec, match_levels, parse_timestamp
from collector.mqtt.sparkplug import DataType, Metric, encode_payload, format_topic
from collector.mqtt.sparkplug import sparkplug_b_pb2 as pb
from config.mqtt import MqttDevice, MqttTag, mqtt_template_levels
from config.signals import Quality

ASSET = "plant/area/L1/M1"
MANY = settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
# 10,000 examples are CPU-bound minutes: beside two other xdist workers on two cores (and
# other load) they took over the suite's 300 s default, which is for a hung test, not a slow one
LONG = pytest.mark.timeout(900)


def collector() -> MqttCollector:
    dev = MqttDevice.model_validate({
        "name": "d", "protocol": "mqtt", "broker": "mqtt://127.0.0.1:1",  # never connected
        "subscriptions": [
            {"topic": "tp/+/+/+", "template": "tp/{line}/{asset}/{signal}"},
            {"topic": "js/+/+", "format": "json", "template": "js/{line}/{asset}",
             "timestamp_field": "ts"},
            {"format": "sparkplug", "group_id": "g", "template": "+/{line}/{asset}"},
        ],
        "tags": [
            {"asset": ASSET, "name": "speed"},
            {"asset": ASSET, "name": "count", "type": "int"},
            {"asset": ASSET, "name": "on", "type": "bool"},
            {"asset": ASSET, "name": "note", "type": "string"},
            {"asset": ASSET, "name": "state", "role": "state", "field": "machine.state", "type": "int",
             "enum": {3: "Executing", 2: "NotExecuting"}},
            {"asset": ASSET, "name": "good", "field": "counters.good", "type": "int"},
            {"asset": ASSET, "name": "temp", "field": "process.temperature_c"},
            {"asset": ASSET, "name": "label", "field": "process.x", "type": "string"},
            {"asset": ASSET, "name": "sp_speed", "metric": "speed_rpm"},
            {"asset": ASSET, "name": "sp_note", "metric": "note", "type": "string"},
        ],
    })
    ids = {t.path: i for i, t in enumerate(dev.tags)}
    c = MqttCollector(dev, ids)
    c._publish = lambda topic, payload: None  # type: ignore[method-assign]  # not connected
    c.gap_events = []
    return c


_SHARED: list[MqttCollector] = []


def shared() -> MqttCollector:
    """One collector for the property tests (building one per example would dominate)."""
    if not _SHARED:
        _SHARED.append(collector())
    c = _SHARED[0]
    c._drain()
    c.dropped.clear()
    return c


def message(topic: str, payload: bytes, mid: int = 1, qos: int = 1, dup: bool = False) -> MQTTMessage:
    m = MQTTMessage(mid, topic.encode("utf-8"))
    m.payload = payload
    m.qos = qos
    m.dup = dup
    return m


def feed(c: MqttCollector, topic: str, payload: bytes) -> None:
    c._message(message(topic, payload))  # not _on_message: a bug must raise here, not be counted


# --------------------------------------------------------------------------- tables


@pytest.mark.parametrize(("type_", "payload", "expected"), [
    ("float", b"12.5", (12.5, None)),
    ("float", b" -3 ", (-3.0, None)),
    ("float", b"1e3", (1000.0, None)),
    ("int", b"42", (42.0, None)),
    ("int", b"42.0", (42.0, None)),
    ("bool", b"true", (1.0, None)),
    ("bool", b"OFF", (0.0, None)),
    ("bool", b"0", (0.0, None)),
    ("string", "Grüße".encode(), (math.nan, "Grüße")),
])
def test_plain_values(type_: str, payload: bytes, expected: tuple[float, str | None]) -> None:
    value, text = TagCodec(type_, {}).from_text(payload)
    assert (value == expected[0] or (math.isnan(value) and math.isnan(expected[0])))
    assert text == expected[1]


@pytest.mark.parametrize(("type_", "payload", "reason"), [
    ("float", b"fast", "wrong type"),
    ("int", b"4.5", "wrong type"),
    ("bool", b"2", "wrong type"),
    ("float", b"\xff\xfe", "not utf-8"),
    ("int", b"9" * 400, "wrong type"),
])
def test_plain_refusals(type_: str, payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as err:
        TagCodec(type_, {}).from_text(payload)
    assert err.value.reason == reason


def test_enumerated_tags_take_names() -> None:
    tag = MqttTag(asset=ASSET, name="state", role="state", type="int",  # type: ignore[arg-type]
                  enum={3: "Executing", 2: "NotExecuting"})
    codec = TagCodec.of(tag)
    assert codec.from_text(b"Executing") == (3.0, None)
    assert codec.from_json("notexecuting") == (2.0, None)
    with pytest.raises(PayloadError):
        codec.from_json("Running")
    # a stop reason sent as its reason id is stored as the code the enum gives it
    reason = MqttTag(asset=ASSET, name="reason", role="stop_reason", type="int",  # type: ignore[arg-type]
                     enum={31: "jam", 11: "mechanical_failure"})
    assert TagCodec.of(reason).from_text(b"jam") == (31.0, None)
    assert TagCodec.of(reason).from_json(11) == (11.0, None)


@pytest.mark.parametrize(("raw", "fmt", "ns"), [
    (1_700_000_000_000, "epoch_ms", 1_700_000_000_000_000_000),
    (1_700_000_000.5, "epoch_s", 1_700_000_000_500_000_000),
    (1_700_000_000_000_000_000, "epoch_ns", 1_700_000_000_000_000_000),
    ("2023-11-14T22:13:20Z", "iso8601", 1_700_000_000_000_000_000),
    ("2023-11-14T23:13:20+01:00", "iso8601", 1_700_000_000_000_000_000),
    ("2023-11-14T22:13:20", "iso8601", 1_700_000_000_000_000_000),  # naive = UTC
])
def test_timestamps(raw: Any, fmt: str, ns: int) -> None:
    assert parse_timestamp(raw, fmt) == ns


@pytest.mark.parametrize(("raw", "fmt"), [
    (-1, "epoch_ms"), (10**30, "epoch_ms"), (-1.5, "epoch_s"), (1e300, "epoch_s"),
    (float("nan"), "epoch_s"), (float("inf"), "epoch_ms"), (2**63, "epoch_ns"),
    ("1969-12-31T23:59:59Z", "iso8601"), ("0001-01-01T00:00:00Z", "iso8601"),  # the OPC UA-like nulls
    ("1601-01-01T00:00:00", "iso8601"), ("2262-04-12T00:00:00Z", "iso8601"),
    ("9999-12-31T23:59:59-14:00", "iso8601"),  # beyond datetime's own range once in UTC
])
def test_out_of_range_timestamps_are_unknown(raw: Any, fmt: str) -> None:
    """A time before 1970 or after 2262 is unknown (the collector takes the receive time),
    never an error that costs the message."""
    assert parse_timestamp(raw, fmt) is None


@pytest.mark.parametrize(("raw", "fmt"), [
    (True, "epoch_ms"), ("1", "epoch_ms"), ("yesterday", "iso8601"), (5, "iso8601"), (None, "epoch_s"),
])
def test_bad_timestamps(raw: Any, fmt: str) -> None:
    """What is not a time at all is an error (a configuration mismatch, counted per reason)."""
    with pytest.raises(PayloadError) as err:
        parse_timestamp(raw, fmt)
    assert err.value.reason == "bad timestamp"


@pytest.mark.parametrize(("template", "topic", "expected"), [
    ("tp/{line}/{asset}/{signal}", "tp/L1/M1/speed", ("L1", "M1", "speed")),
    ("tp/{line}/{asset}/{signal}", "tp/L1/M1", None),
    ("tp/{line}/{asset}/{signal}", "tp/L1/M1/speed/x", None),
    ("tp/+/{asset}/#", "tp/L1/M1/a/b/c", ("M1",)),
    ("x/{asset}", "tp/M1", None),
])
def test_templates(template: str, topic: str, expected: tuple[str, ...] | None) -> None:
    assert match_levels(mqtt_template_levels(template), topic.split("/")) == expected


def storable(batch: Any) -> bool:
    """Every text can be written by a store: UTF-8 encodable (raises for a lone surrogate)."""
    for t in [] if batch.text is None else batch.text.tolist():
        if t is not None:
            t.encode("utf-8")
    return True


def test_lone_surrogates_from_json_are_replaced() -> None:
    c = collector()
    feed(c, "js/L1/M1", b'{"ts": 1, "process": {"x": "a\\ud800b"}}')
    batch, _ = c._drain()
    assert batch.text is not None and batch.text.tolist() == ["a?b"]


def test_json_document_to_rows() -> None:
    c = collector()
    doc = {"ts": 1_700_000_000_000, "machine": {"state": 3}, "counters": {"good": 11},
           "process": {"temperature_c": None}}
    feed(c, "js/L1/M1", json.dumps(doc).encode())
    batch, msgs = c._drain()
    assert len(msgs) == 1
    assert batch.value[:2].tolist() == [3.0, 11.0]
    assert batch.quality.tolist() == [Quality.GOOD, Quality.GOOD, Quality.BAD]  # null: no value
    assert set(batch.ts_ns.tolist()) == {1_700_000_000_000_000_000}


def test_a_redelivered_stored_message_is_dropped_once_acknowledged() -> None:
    c = collector()
    c._message(message("tp/L1/M1/speed", b"1", mid=9))
    batch, msgs = c._drain()
    c._unacked.append((batch, msgs))
    c.stored(batch)
    c._message(message("tp/L1/M1/speed", b"1", mid=9, dup=True))  # the broker never got the ack
    c._message(message("tp/L1/M1/speed", b"2", mid=9, dup=True))  # same id, other message
    again, msgs2 = c._drain()
    assert again.value.tolist() == [2.0] and len(msgs2) == 2  # both acknowledged with it
    assert c.stats.duplicates == 1


NOW_NS = 1_750_000_000_123_000_000  # the gateway's clock in the tests below


def test_json_time_out_of_range_is_unknown_and_the_receive_time_is_kept() -> None:
    c = collector()
    c._clock = lambda: NOW_NS
    doc = {"machine": {"state": 3}, "counters": {"good": 1}, "process": {"temperature_c": 20.5, "x": "s"}}
    for ts in (-5, 10**19, 1e300, 1_700_000_000_000):
        feed(c, "js/L1/M1", json.dumps({"ts": ts, **doc}).encode())
    batch, _ = c._drain()
    assert c.dropped == {}
    assert len(batch) == 16  # four fields of four documents: none lost
    assert batch.ts_ns.tolist() == [NOW_NS] * 12 + [1_700_000_000_000_000_000] * 4
    assert batch.gateway_ts_ns is not None and set(batch.gateway_ts_ns.tolist()) == {NOW_NS}


def _sp(mtype: str, metrics: list[Any], seq: int, ts_ms: int | None = None) -> bytes:
    msg = pb.Payload(seq=seq, metrics=metrics)
    if ts_ms is not None:
        msg.timestamp = ts_ms
    return msg.SerializeToString()


def test_sparkplug_timestamps_fall_back_metric_payload_receive_time() -> None:
    """Metric timestamp, else the payload's, else the receive time; one after 2262 (or a
    negative number sent as uint64) is unknown and the next one is used."""
    c = collector()
    c._clock = lambda: NOW_NS
    M = pb.Payload.Metric
    T = 1_700_000_000_000
    feed(c, "spBv1.0/g/NBIRTH/L1", _sp("NBIRTH", [M(name="bdSeq", datatype=8, long_value=0)], 0, T))
    feed(c, "spBv1.0/g/DBIRTH/L1/M1", _sp("DBIRTH", [
        M(name="speed_rpm", alias=1, datatype=DataType.DOUBLE, double_value=1.0, timestamp=T + 1)], 1, T))
    rows = [  # (metric timestamp, payload timestamp) -> expected ts
        ((T + 2, T + 3), (T + 2) * 1_000_000),
        ((None, T + 4), (T + 4) * 1_000_000),
        ((None, None), NOW_NS),
        ((2**63, T + 5), (T + 5) * 1_000_000),  # after 2262
        ((2**64 - 1000, T + 6), (T + 6) * 1_000_000),  # -1000 ms cast to uint64
        ((2**64 - 1, 2**62), NOW_NS),
    ]
    for seq, ((mts, pts), _) in enumerate(rows, start=2):
        m = M(alias=1, double_value=float(seq))
        if mts is not None:
            m.timestamp = mts
        feed(c, "spBv1.0/g/DDATA/L1/M1", _sp("DDATA", [m], seq, pts))
    batch, _ = c._drain()
    assert c.dropped == {}
    assert batch.ts_ns.tolist() == [(T + 1) * 1_000_000] + [ns for _, ns in rows]


def test_one_bad_sparkplug_metric_never_costs_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    c = collector()
    c._clock = lambda: NOW_NS
    M = pb.Payload.Metric
    feed(c, "spBv1.0/g/NBIRTH/L1", _sp("NBIRTH", [M(name="bdSeq", datatype=8, long_value=0)], 0))
    feed(c, "spBv1.0/g/DBIRTH/L1/M1", _sp("DBIRTH", [
        M(name="count", alias=1, datatype=DataType.UINT32, long_value=2**32),  # out of range
        M(name="speed_rpm", alias=2, datatype=DataType.UINT32, long_value=4_000_000_000),  # Tahu's UInt32
        M(name="x", alias=3, datatype=99, int_value=1),  # invalid datatype
        M(name="note", alias=4, datatype=DataType.STRING, string_value="ok"),
    ], 1))
    feed(c, "spBv1.0/g/DDATA/L1/M1", _sp("DDATA", [
        M(alias=2, datatype=DataType.UINT32, int_value=7),  # the spec's field: accepted too
        M(alias=3, int_value=1),  # undecodable since its birth: counted, no rebirth
        M(alias=4, datatype=DataType.STRING, int_value=5),  # wrong field
    ], 2))
    feed(c, "spBv1.0/g/DDATA/L1/M1", _sp("DDATA", [
        M(alias=2, datatype=DataType.UINT32, long_value=8), M(alias=4, string_value="fine")], 3))
    batch, _ = c._drain()
    # rows: DBIRTH speed, note; DDATA speed; DDATA speed, note
    assert [batch.value[i] for i in (0, 2, 3)] == [4_000_000_000.0, 7.0, 8.0]
    assert batch.text is not None and [batch.text[1], batch.text[4]] == ["ok", "fine"]
    assert c.dropped == {"sparkplug metric out of range": 1, "sparkplug metric invalid datatype": 1,
                         "sparkplug metric invalid in birth": 1, "sparkplug metric wrong value field": 1}
    assert c.stats.rebirth_requests == 0
    assert "sparkplug metric wrong value field" in c.tag_errors[f"{ASSET}/sp_note"]
    logged = [r.getMessage() for r in caplog.records if "dropped metric" in r.getMessage()]
    assert len(logged) == 4
    assert any("'x' of sparkplug node g/L1/M1: sparkplug metric invalid datatype" in m for m in logged)
    assert any("'note' of sparkplug node g/L1/M1: sparkplug metric wrong value field" in m for m in logged)


# --------------------------------------------------------------------------- properties

# Kept small on purpose: generating nested documents dominates the run time, and the
# decoder's branches need type variety at the known paths more than depth.
leaves = (st.none() | st.booleans() | st.integers() | st.floats()
          | st.text(max_size=12))  # lone surrogates included: json.dumps escapes them
json_values = st.recursive(
    leaves,
    lambda children: (st.lists(children, max_size=3)
                      | st.dictionaries(st.text(max_size=6), children, max_size=3)),
    max_leaves=5,
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "ts": leaves | st.integers(min_value=0, max_value=2**63),
        "machine": st.fixed_dictionaries({}, optional={"state": json_values}) | leaves,
        "counters": st.fixed_dictionaries({}, optional={"good": json_values}) | leaves,
        "process": st.dictionaries(st.sampled_from(["temperature_c", "x"]), leaves, max_size=2),
    },
)


@LONG
@MANY
@given(payload=st.binary(max_size=64) | st.text(max_size=40).map(str.encode),
       signal=st.sampled_from(["speed", "count", "on", "note", "nope"]))
def test_plain_decoder_never_raises(payload: bytes, signal: str) -> None:
    c = shared()
    feed(c, f"tp/L1/M1/{signal}", payload)
    batch, msgs = c._drain()
    assert len(msgs) == 1
    assert len(batch) + sum(c.dropped.values()) == 1
    assert storable(batch)


@LONG
@MANY
@given(payload=documents.map(lambda d: json.dumps(d).encode())
       | st.binary(max_size=80)
       | json_values.map(lambda v: json.dumps(v).encode()))
def test_json_decoder_never_raises(payload: bytes) -> None:
    c = shared()
    feed(c, "js/L1/M1", payload)
    batch, msgs = c._drain()
    assert len(msgs) == 1
    assert len(batch) <= 4
    assert "internal error" not in c.dropped
    assert storable(batch)


scalar_metric = st.builds(
    Metric,
    name=st.none() | st.sampled_from(["speed_rpm", "note", "bdSeq", "other"]),
    alias=st.none() | st.integers(min_value=0, max_value=5),
    datatype=st.sampled_from([DataType.INT32, DataType.UINT64, DataType.DOUBLE, DataType.FLOAT,
                              DataType.BOOLEAN, DataType.STRING, DataType.INT8]),
    value=st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    timestamp_ms=st.none() | st.integers(min_value=0, max_value=2**64 - 1),
    is_null=st.booleans(),
)


def _encode(metrics: list[Metric], seq: int | None) -> bytes:
    try:
        return encode_payload(metrics, seq, 1_700_000_000_000)
    except ValueError:  # the generated metric does not encode as declared: send it without it
        return encode_payload([], seq, 1_700_000_000_000)


@st.composite
def _wire_metric(draw: st.DrawFn) -> pb.Payload.Metric:
    """A metric as any encoder might write it: any datatype (valid or not) with any value
    field, or none -- what the codec must split into good and bad metrics."""
    m = pb.Payload.Metric()
    name = draw(st.none() | st.sampled_from(["speed_rpm", "note", "bdSeq", "other"]))
    if name is not None:
        m.name = name
    alias = draw(st.none() | st.integers(min_value=0, max_value=5))
    if alias is not None:
        m.alias = alias
    datatype = draw(st.none() | st.integers(min_value=0, max_value=40))
    if datatype is not None:
        m.datatype = datatype
    if draw(st.booleans()):
        m.timestamp = draw(st.integers(min_value=0, max_value=2**64 - 1))
    field = draw(st.sampled_from([None, "int_value", "long_value", "float_value", "double_value",
                                  "boolean_value", "string_value", "bytes_value"]))
    values = {"int_value": st.integers(0, 2**32 - 1), "long_value": st.integers(0, 2**64 - 1),
              "float_value": st.floats(width=32), "double_value": st.floats(),
              "boolean_value": st.booleans(), "string_value": st.text(max_size=6),
              "bytes_value": st.binary(max_size=6)}
    if field is not None:
        setattr(m, field, draw(values[field]))
    if draw(st.integers(0, 9)) == 0:
        m.is_null = True
    return m


def _wire(metrics: list[pb.Payload.Metric], seq: int | None) -> bytes:
    msg = pb.Payload(timestamp=1_700_000_000_000, metrics=metrics)
    if seq is not None:
        msg.seq = seq
    return msg.SerializeToString()


sparkplug_messages = st.lists(
    st.tuples(
        st.sampled_from(["NBIRTH", "DBIRTH", "NDATA", "DDATA", "NDEATH", "DDEATH", "NCMD", "STATE"]),
        st.sampled_from(["L1", "L2"]),
        st.one_of(
            st.builds(_encode, st.lists(scalar_metric, max_size=3),
                      st.none() | st.integers(min_value=0, max_value=255)),
            st.builds(_wire, st.lists(_wire_metric(), max_size=4),
                      st.none() | st.integers(min_value=0, max_value=3)),
            st.binary(max_size=40),
        ),
    ),
    min_size=1, max_size=4,
)


@LONG
@MANY
@given(messages=sparkplug_messages)
def test_sparkplug_host_never_raises(messages: list[tuple[str, str, bytes]]) -> None:
    c = shared()  # host state carries over between examples: more sequences get explored
    for mtype, node, payload in messages:
        if mtype == "STATE":
            topic = "spBv1.0/STATE/host"
        else:
            topic = format_topic("g", mtype, node, "M1" if mtype[0] in "D" else None)
        feed(c, topic, payload)
    batch, msgs = c._drain()
    assert len(msgs) == len(messages)
    assert "internal error" not in c.dropped
    assert set(batch.quality.tolist()) <= {Quality.GOOD, Quality.BAD, Quality.BAD_STALE}
    assert storable(batch)
