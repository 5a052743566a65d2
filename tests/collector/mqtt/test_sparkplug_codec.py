"""Sparkplug B codec: round trips, precise errors, and no stray exception for any bytes."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.mqtt.sparkplug import (
    DataType,
    DecodedPayload,
    Metric,
    SparkplugDecodeError,
    SparkplugTopic,
    apply_datatype,
    decode_payload,
    encode_payload,
    format_topic,
    parse_topic,
)
from collector.mqtt.sparkplug import codec as sp
from collector.mqtt.sparkplug import sparkplug_b_pb2 as pb

T0 = 1_764_000_000_000

BIRTH = [
    Metric("bdSeq", None, DataType.UINT64, 3, T0),
    Metric("Node Control/Rebirth", None, DataType.BOOLEAN, False, T0),
    Metric("state", 1, DataType.INT32, 3, T0),
    Metric("temp", 2, DataType.INT8, -5, T0),
    Metric("delta", 3, DataType.INT16, -32768, T0),
    Metric("neg32", 4, DataType.INT32, -2_147_483_648, T0),
    Metric("neg64", 5, DataType.INT64, -(2**63), T0),
    Metric("u8", 6, DataType.UINT8, 255, T0),
    Metric("u16", 7, DataType.UINT16, 65535, T0),
    Metric("u32", 8, DataType.UINT32, 2**32 - 1, T0),
    Metric("total", 9, DataType.UINT64, 2**64 - 1, T0),
    Metric("speed", 10, DataType.FLOAT, 1.5, T0),
    Metric("power_kw", 11, DataType.DOUBLE, 12.345678901, T0),
    Metric("label", 12, DataType.STRING, "Presse 3 ✓", T0),
    Metric("note", 13, DataType.TEXT, "", None),
    Metric("at", 14, DataType.DATETIME, T0, T0),
    Metric("uuid", 15, DataType.UUID, "6c1b4e8e-6f1a-4a55-9b7e-0d1c2b3a4f5e", T0),
    Metric("gone", 16, DataType.DOUBLE, None, T0, is_null=True),
]


def test_round_trip_every_scalar_datatype() -> None:
    got = decode_payload(encode_payload(BIRTH, 0, T0))
    assert got == DecodedPayload(T0, 0, BIRTH)


def test_round_trip_aliases_only_and_no_seq() -> None:
    metrics = [Metric(None, 7, DataType.INT32, -1, T0 + 5), Metric(None, 8, DataType.DOUBLE, math.inf, None)]
    got = decode_payload(encode_payload(metrics, None, T0))
    assert (got.seq, got.timestamp_ms) == (None, T0)
    assert got.metrics == metrics


def test_float_is_single_precision() -> None:
    got = decode_payload(encode_payload([Metric("f", None, DataType.FLOAT, 0.1, None)], 1, T0))
    assert got.metrics[0].value == pytest.approx(0.1, rel=1e-7)
    assert got.metrics[0].value != 0.1


def _payload(**metric_fields: object) -> bytes:
    msg = pb.Payload(timestamp=T0, seq=1)
    msg.metrics.add(**metric_fields)
    return msg.SerializeToString()


@pytest.mark.parametrize(
    ("field", "raw", "dt", "expected"),
    [
        ("int_value", 251, DataType.INT8, -5),  # 8-bit two's complement (Tahu Python)
        ("int_value", 2**32 - 5, DataType.INT8, -5),  # sign extended to 32 bits (Tahu Java, JS)
        ("int_value", 127, DataType.INT8, 127),
        ("int_value", 2**16 - 2, DataType.INT16, -2),
        ("int_value", 2**32 - 2, DataType.INT16, -2),
        ("int_value", 2**32 - 1, DataType.INT32, -1),
        ("int_value", 200, DataType.UINT8, 200),
        # UInt32 in long_value: Tahu (JS, C, older Java) and Ignition; in int_value: the spec
        ("long_value", 2**32 - 1, DataType.UINT32, 2**32 - 1),
        ("int_value", 2**32 - 1, DataType.UINT32, 2**32 - 1),
        ("long_value", 0, DataType.UINT32, 0),
        # the small types in long_value, negative ones at any width
        ("long_value", 2**64 - 5, DataType.INT8, -5),
        ("long_value", 2**32 - 5, DataType.INT8, -5),
        ("long_value", 251, DataType.INT8, -5),
        ("long_value", 2**64 - 2**31, DataType.INT32, -(2**31)),
        ("long_value", 65535, DataType.UINT16, 65535),
        # the 64-bit types in int_value (whatever fits)
        ("int_value", 2**32 - 1, DataType.UINT64, 2**32 - 1),
        ("int_value", 2**32 - 1, DataType.INT64, 2**32 - 1),
        ("int_value", 1_700_000_000, DataType.DATETIME, 1_700_000_000),
        ("long_value", 2**64 - 7, DataType.INT64, -7),
        ("long_value", 2**64 - 1, DataType.UINT64, 2**64 - 1),
    ],
)
def test_integers_from_either_field(field: str, raw: int, dt: DataType, expected: int) -> None:
    got = decode_payload(_payload(name="x", datatype=dt, **{field: raw}))
    assert got.bad == []
    assert got.metrics[0].value == expected


@pytest.mark.parametrize(
    ("wire", "dt", "expected"),
    [  # one-metric payloads as Eclipse Tahu's JavaScript encoder (sparkplug-payload 1.0.3) writes them
        ("0801120b0a016d200758ffffffff0f1800", DataType.UINT32, 2**32 - 1),  # long_value (issue 9)
        ("0801120b0a016d200150fbffffff0f1800", DataType.INT8, -5),  # int_value, 32-bit sign extension
        ("0801120b0a016d20035080808080081800", DataType.INT32, -(2**31)),
        ("080112100a016d200458f9ffffffffffffffff011800", DataType.INT64, -7),
        ("080112100a016d200858ffffffffffffffffff011800", DataType.UINT64, 2**64 - 1),
        ("0801120c0a016d200d5880d095ffbc311800", DataType.DATETIME, 1_700_000_000_000),
    ],
)
def test_what_tahu_javascript_sends(wire: str, dt: DataType, expected: int) -> None:
    got = decode_payload(bytes.fromhex(wire))
    assert got.bad == []
    assert got.metrics == [Metric("m", None, dt, expected, None)]


@pytest.mark.parametrize(
    ("field", "raw", "dt"),
    [
        ("long_value", 2**32, DataType.UINT32),
        ("long_value", 256, DataType.UINT8),
        ("long_value", 2**64 - 1, DataType.UINT8),  # no sign extension for unsigned types
        ("int_value", 2**32 - 1, DataType.UINT16),
        ("int_value", 2**8 + 5, DataType.INT8),
        ("long_value", 2**40, DataType.INT32),
        ("long_value", 2**64 - 2**31 - 1, DataType.INT32),  # below -2**31 sign extended
        ("long_value", 2**63, DataType.INT16),
    ],
)
def test_integers_out_of_range_for_their_type(field: str, raw: int, dt: DataType) -> None:
    got = decode_payload(_payload(name="x", datatype=dt, **{field: raw}))
    assert got.metrics == []
    assert [b.reason for b in got.bad] == ["sparkplug metric out of range"]


def test_int64_two_complement() -> None:
    got = decode_payload(_payload(name="x", datatype=DataType.INT64, long_value=2**64 - 7))
    assert got.metrics[0].value == -7


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xff\xff", "not a Sparkplug B protobuf payload"),
        (pb.Payload(seq=256).SerializeToString(), "seq 256 out of range 0..255"),
    ],
)
def test_invalid_payloads_say_why(data: bytes, reason: str) -> None:
    with pytest.raises(SparkplugDecodeError) as info:
        decode_payload(data)
    assert reason in str(info.value)
    assert info.value.reason == "invalid sparkplug payload"


GOOD = pb.Payload.Metric(name="good", datatype=DataType.DOUBLE, double_value=2.5)


def _with_good(**metric_fields: object) -> bytes:
    """A payload whose metric 0 is built from ``metric_fields`` and metric 1 is good."""
    msg = pb.Payload(timestamp=T0, seq=1)
    msg.metrics.add(**metric_fields)
    msg.metrics.append(GOOD)
    return msg.SerializeToString()


@pytest.mark.parametrize(
    ("data", "reason", "detail"),
    [
        (_with_good(datatype=DataType.INT32, int_value=1), sp.NO_NAME_OR_ALIAS,
         "metric 0: has neither name nor alias"),
        (_with_good(name="rpm", datatype=DataType.DOUBLE, int_value=1), sp.WRONG_FIELD,
         "metric 0 ('rpm'): datatype DOUBLE needs double_value, got int_value"),
        (_with_good(alias=4, datatype=DataType.BOOLEAN, string_value="true"), sp.WRONG_FIELD,
         "metric 0 (alias 4): datatype BOOLEAN needs boolean_value, got string_value"),
        (_with_good(name="x", datatype=DataType.UINT32, double_value=1.0), sp.WRONG_FIELD,
         "metric 0 ('x'): datatype UINT32 needs int_value or long_value, got double_value"),
        (_with_good(name="x", datatype=DataType.INT8, int_value=300), sp.OUT_OF_RANGE,
         "metric 0 ('x'): value 300 out of range for INT8"),
        (_with_good(name="x", datatype=DataType.UINT16, int_value=70000), sp.OUT_OF_RANGE,
         "value 70000 out of range for UINT16"),
        (_with_good(name="x", datatype=DataType.UINT32, long_value=2**32), sp.OUT_OF_RANGE,
         "value 4294967296 out of range for UINT32"),
        (_with_good(name="x", datatype=DataType.INT32, long_value=2**63), sp.OUT_OF_RANGE,
         "out of range for INT32"),
        (_with_good(name="x", datatype=99, int_value=1), sp.BAD_DATATYPE,
         "metric 0 ('x'): invalid datatype 99"),
        (_with_good(name="x", datatype=0, int_value=1), sp.BAD_DATATYPE, "invalid datatype 0"),
        (_with_good(name="x", datatype=DataType.PROPERTYSET, int_value=1), sp.BAD_DATATYPE,
         "invalid datatype 20"),
        (_with_good(name="x", datatype=DataType.INT32), sp.NO_VALUE,
         "metric 0 ('x'): no value and is_null not set"),
        (_with_good(name="x"), sp.NO_VALUE, "metric 0 ('x'): no value and is_null not set"),
        (_with_good(name="x", datatype=DataType.INT32, is_null=True, int_value=3),
         sp.NULL_WITH_VALUE, "is_null is set but int_value is present"),
        (_with_good(name=b"\xff\xfe".decode("latin-1")).replace(b"\xc3\xbf\xc3\xbe", b"\xff\xfe\xff\xfe"),
         sp.BAD_NAME, "metric 0: name b'\\xff\\xfe\\xff\\xfe' is not UTF-8"),
        (_with_good(name="s", datatype=DataType.STRING, string_value="é").replace("é".encode(), b"\xe9\xff"),
         sp.BAD_STRING, "metric 0 ('s'): string value b'\\xe9\\xff' is not UTF-8"),
        (_with_good(alias=1, string_value="é").replace("é".encode(), b"\xe9\xff"),
         sp.BAD_STRING, "is not UTF-8"),
    ],
)
def test_a_bad_metric_is_listed_and_the_others_kept(data: bytes, reason: str, detail: str) -> None:
    got = decode_payload(data)
    assert got.metrics == [Metric("good", None, DataType.DOUBLE, 2.5, None)]
    assert (got.timestamp_ms, got.seq) == (T0, 1)
    (bad,) = got.bad
    assert bad.index == 0 and bad.reason == reason
    assert detail in bad.detail


def test_a_bad_value_keeps_its_valid_name_and_datatype() -> None:
    """A BIRTH can still register the metric (its DATA values will count)."""
    (bad,) = decode_payload(_payload(name="x", alias=5, datatype=DataType.INT8, int_value=300)).bad
    assert (bad.name, bad.alias, bad.datatype) == ("x", 5, DataType.INT8)
    (bad,) = decode_payload(_payload(name="x", alias=5, datatype=99, int_value=1)).bad
    assert (bad.name, bad.alias, bad.datatype) == ("x", 5, None)


def test_non_bytes_input_is_a_decode_error() -> None:
    with pytest.raises(SparkplugDecodeError, match="payload must be bytes, not str"):
        decode_payload("hello")  # type: ignore[arg-type]


def test_opaque_datatypes_are_checked_but_not_valued() -> None:
    got = decode_payload(_payload(name="blob", datatype=DataType.BYTES, bytes_value=b"\x00\x01"))
    assert got.metrics[0] == Metric("blob", None, DataType.BYTES, None, None)
    (bad,) = decode_payload(_payload(name="blob", datatype=DataType.BYTES, int_value=1)).bad
    assert "datatype BYTES needs bytes_value, got int_value" in bad.detail


def test_data_metric_without_datatype_then_typed_by_birth() -> None:
    got = decode_payload(_payload(alias=3, timestamp=T0, int_value=2**32 - 4))
    raw = got.metrics[0]
    assert raw == Metric(None, 3, DataType.UNKNOWN, 2**32 - 4, T0)
    assert apply_datatype(raw, DataType.INT32).value == -4
    assert apply_datatype(raw, DataType.UINT32).value == 2**32 - 4
    assert apply_datatype(raw, DataType.INT64).value == 2**32 - 4
    with pytest.raises(SparkplugDecodeError, match=r"metric \(alias 3\): value 4294967292 out of range") as e:
        apply_datatype(raw, DataType.UINT16)
    assert e.value.reason == "sparkplug metric out of range"
    with pytest.raises(SparkplugDecodeError, match=r"\(alias 3\): DOUBLE needs a float, got 4294967292") as e:
        apply_datatype(raw, DataType.DOUBLE)
    assert e.value.reason == "sparkplug metric wrong type"
    typed = Metric(None, 3, DataType.INT32, -4, T0)
    assert apply_datatype(typed, DataType.INT32) == typed
    with pytest.raises(SparkplugDecodeError, match="datatype INT32 differs from birth datatype INT64") as e:
        apply_datatype(typed, DataType.INT64)
    assert e.value.reason == "sparkplug metric datatype differs from birth"
    # a UInt32 sent in long_value without datatype (Tahu's DATA may omit it)
    long_raw = decode_payload(_payload(alias=3, long_value=2**64 - 4)).metrics[0]
    assert apply_datatype(long_raw, DataType.INT32).value == -4
    with pytest.raises(SparkplugDecodeError, match="out of range for UINT32"):
        apply_datatype(long_raw, DataType.UINT32)


@pytest.mark.parametrize(
    ("metric", "reason"),
    [
        (Metric(None, None, DataType.INT32, 1, None), "metric 0: needs a name or an alias"),
        (Metric("x", None, DataType.INT8, 128, None),
         "metric 0 ('x'): value 128 out of range -128..127 for INT8"),
        (Metric("x", None, DataType.UINT64, -1, None), "value -1 out of range"),
        (Metric("x", None, DataType.INT32, 1.5, None), "INT32 needs an int, got 1.5"),
        (Metric("x", None, DataType.INT32, True, None), "INT32 needs an int, got True"),
        (Metric("x", None, DataType.BOOLEAN, 1, None), "Boolean needs a bool, got 1"),
        (Metric("x", None, DataType.STRING, 1, None), "STRING needs a str"),
        (Metric("x", None, DataType.DOUBLE, None, None), "value is None but is_null is not set"),
        (Metric("x", None, DataType.BYTES, None, None, True), "cannot encode datatype BYTES"),
        (Metric("x", None, DataType.FLOAT, 1e300, None), "does not fit a Float"),
    ],
)
def test_encode_rejects_what_it_cannot_represent(metric: Metric, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        encode_payload([metric], 0, T0)
    assert reason in str(info.value)


def test_encode_rejects_bad_seq() -> None:
    with pytest.raises(ValueError, match="seq 256 out of range"):
        encode_payload([], 256, T0)


@pytest.mark.parametrize(
    ("topic", "parsed"),
    [
        ("spBv1.0/tierproof/NBIRTH/line1", SparkplugTopic("spBv1.0", "tierproof", "NBIRTH", "line1")),
        ("spBv1.0/g/DDATA/n/press-1", SparkplugTopic("spBv1.0", "g", "DDATA", "n", "press-1")),
        ("spBv1.0/g/NCMD/n", SparkplugTopic("spBv1.0", "g", "NCMD", "n")),
        ("spBv1.0/g/DDEATH/n/d", SparkplugTopic("spBv1.0", "g", "DDEATH", "n", "d")),
        ("spBv1.0/STATE/scada", SparkplugTopic("spBv1.0", "", "STATE", "", None, "scada")),
    ],
)
def test_parse_topic(topic: str, parsed: SparkplugTopic) -> None:
    assert parse_topic(topic) == parsed
    assert parsed.topic == topic


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("spAv1.0/g/NDATA/n", "namespace is not spBv1.0"),
        ("tierproof/line1/press/state", "namespace is not spBv1.0"),
        ("spBv1.0/g/NDATA", "needs spBv1.0/group/TYPE/edge_node[/device]"),
        ("spBv1.0/g/NDATA/n/d", "NDATA takes no device id"),
        ("spBv1.0/g/DDATA/n", "DDATA needs exactly one device id"),
        ("spBv1.0/g/DDATA/n/d/e", "DDATA needs exactly one device id"),
        ("spBv1.0/g/XDATA/n", "unknown message type 'XDATA'"),
        ("spBv1.0//NDATA/n", "empty level"),
        ("spBv1.0/g/NDATA/+", "wildcard"),
        ("", "namespace is not spBv1.0"),
    ],
)
def test_parse_topic_rejects(topic: str, reason: str) -> None:
    with pytest.raises(SparkplugDecodeError) as info:
        parse_topic(topic)
    assert reason in str(info.value)


def test_format_topic_needs_device_for_device_types() -> None:
    assert format_topic("g", "DBIRTH", "n", "d") == "spBv1.0/g/DBIRTH/n/d"
    with pytest.raises(ValueError, match="DBIRTH topic needs a device id"):
        format_topic("g", "DBIRTH", "n")


# ---- properties -------------------------------------------------------------------------

_VALID = encode_payload(BIRTH, 7, T0)


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    """A valid payload with bytes flipped, inserted, deleted or the tail cut off."""
    data = bytearray(_VALID)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 8))]
        else:
            del data[pos:]
    return bytes(data)


@pytest.mark.timeout(900)  # 10,000 examples: CPU-bound minutes beside other xdist workers
@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), _mutated()))
def test_no_exception_but_decode_error_for_any_bytes(data: bytes) -> None:
    try:
        got = decode_payload(data)
    except SparkplugDecodeError:
        return
    # what decodes is internally consistent: a host can rely on it without re-checking
    assert got.seq is None or 0 <= got.seq <= 255
    for b in got.bad:
        assert b.reason.startswith("sparkplug metric ") and b.detail
    for m in got.metrics:
        assert m.name is not None or m.alias is not None
        assert m.name is None or type(m.name) is str
        assert type(m.value) in (type(None), int, float, bool, str)
        assert not (m.is_null and m.value is not None)


_SCALARS = {
    DataType.INT8: st.integers(-(2**7), 2**7 - 1),
    DataType.INT16: st.integers(-(2**15), 2**15 - 1),
    DataType.INT32: st.integers(-(2**31), 2**31 - 1),
    DataType.INT64: st.integers(-(2**63), 2**63 - 1),
    DataType.UINT8: st.integers(0, 2**8 - 1),
    DataType.UINT16: st.integers(0, 2**16 - 1),
    DataType.UINT32: st.integers(0, 2**32 - 1),
    DataType.UINT64: st.integers(0, 2**64 - 1),
    DataType.DATETIME: st.integers(0, 2**64 - 1),
    DataType.DOUBLE: st.floats(allow_nan=False),
    DataType.BOOLEAN: st.booleans(),
    DataType.STRING: st.text(),
    DataType.TEXT: st.text(),
}


@st.composite
def _metric(draw: st.DrawFn) -> Metric:
    dt = draw(st.sampled_from(sorted(_SCALARS)))
    name = draw(st.none() | st.text(min_size=1, max_size=20))
    alias = draw(st.integers(0, 2**64 - 1)) if name is None else draw(st.none() | st.integers(0, 2**64 - 1))
    is_null = draw(st.booleans())
    value = None if is_null else draw(_SCALARS[dt])
    return Metric(name, alias, dt, value, draw(st.none() | st.integers(0, 2**64 - 1)), is_null)


@settings(max_examples=500, deadline=None)
@given(st.lists(_metric(), max_size=8), st.none() | st.integers(0, 255), st.integers(0, 2**64 - 1))
def test_round_trip_property(metrics: list[Metric], seq: int | None, ts: int) -> None:
    assert decode_payload(encode_payload(metrics, seq, ts)) == DecodedPayload(ts, seq, metrics)


_WIRE_VALUES = {
    "int_value": st.integers(0, 2**32 - 1), "long_value": st.integers(0, 2**64 - 1),
    "float_value": st.floats(width=32), "double_value": st.floats(), "boolean_value": st.booleans(),
    "string_value": st.text(max_size=6), "bytes_value": st.binary(max_size=6),
}


@st.composite
def _wire_metric(draw: st.DrawFn) -> pb.Payload.Metric:
    """Any datatype (valid or not) with any value field or none, as a broken encoder might."""
    m = pb.Payload.Metric()
    if draw(st.booleans()):
        m.name = draw(st.text(max_size=5))
    if draw(st.booleans()):
        m.alias = draw(st.integers(0, 2**64 - 1))
    if draw(st.booleans()):
        m.datatype = draw(st.integers(0, 40))
    field = draw(st.none() | st.sampled_from(sorted(_WIRE_VALUES)))
    if field is not None:
        setattr(m, field, draw(_WIRE_VALUES[field]))
    m.is_null = draw(st.booleans())
    return m


@settings(max_examples=2000, deadline=None)
@given(st.lists(_wire_metric(), max_size=6))
def test_each_metric_decodes_as_it_would_alone(metrics: list[pb.Payload.Metric]) -> None:
    """One bad metric never costs another: every metric is either decoded or listed bad,
    exactly as it is when it comes alone."""
    got = decode_payload(pb.Payload(seq=0, metrics=metrics).SerializeToString())
    assert len(got.metrics) + len(got.bad) == len(metrics)
    alone = [decode_payload(pb.Payload(metrics=[m]).SerializeToString()) for m in metrics]
    assert [repr(x) for a in alone for x in a.metrics] == list(map(repr, got.metrics))  # NaN-safe
    assert [(b.reason, b.datatype) for a in alone for b in a.bad] == [(b.reason, b.datatype) for b in got.bad]
