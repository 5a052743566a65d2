"""Sparkplug B (spBv1.0) topics and payloads.

The protobuf schema is ``collector/mqtt/sparkplug/sparkplug_b.proto`` (Eclipse Tahu's, field for field);
``sparkplug_b_pb2.py`` is generated from it by ``make proto``. Generated code was preferred over
building the descriptor by hand with ``descriptor_pb2``: the checked-in ``.proto`` is then the
single source of the wire layout, and protoc checks it, rather than a hand-written copy that
could drift from it unnoticed.

Values cross this module as plain Python scalars:

* integer datatypes -> ``int``, ``DateTime`` -> ``int`` ms since the epoch. Each integer type
  is accepted in either integer field, ``int_value`` (uint32) or ``long_value`` (uint64), and
  range-checked for its declared type: the specification puts UInt32 in ``int_value``, but
  Tahu (JavaScript, C, older Java) and Ignition put it in ``long_value``
  (eclipse-tahu/tahu#131, eclipse-sparkplug/sparkplug#102). Signed types are two's complement
  at the type's own width (Tahu's Python client) or sign-extended to 32 bits (Tahu's Java and
  JavaScript clients put Int8/16/32 -5 in ``int_value`` as 0xFFFFFFFB) or to 64 bits (a
  ``long_value``);
* ``Float`` / ``Double`` -> ``float``; ``Boolean`` -> ``bool``; ``String`` / ``Text`` / ``UUID`` -> ``str``;
* ``Bytes``, ``File``, ``DataSet``, ``Template`` and the array types are checked for the right
  value field but decoded with ``value=None`` (tierproof stores scalars only);
* a null value is ``is_null=True, value=None``.

DATA and CMD messages may omit ``datatype`` (the spec even recommends it): such metrics decode
with ``datatype=DataType.UNKNOWN`` and the raw wire value; :func:`apply_datatype` applies the
datatype learned from the BIRTH (signed integers, range checks).

One metric that cannot be decoded never costs the others: :func:`decode_payload` lists it in
:attr:`DecodedPayload.bad` (with a short ``reason`` key for counters and a ``detail`` naming
the metric) and decodes the rest. It raises :class:`SparkplugDecodeError` -- and nothing else
-- only for a payload that is not a Sparkplug payload at all (not protobuf, ``seq`` out of
range); so does :func:`parse_topic` for a bad topic. Metric timestamps are passed on raw: the
host treats one outside ``[0, NS_MAX]`` ns as unknown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from dataclasses import field as _field
from enum import IntEnum
from typing import Any, Final

from google.protobuf.message import DecodeError

from . import sparkplug_b_pb2 as pb

__all__ = [
    "BAD_DATATYPE",
    "BAD_NAME",
    "BAD_PAYLOAD",
    "BAD_STRING",
    "DATATYPE_CHANGED",
    "MESSAGE_TYPES",
    "NAMESPACE",
    "NO_NAME_OR_ALIAS",
    "NO_VALUE",
    "NULL_WITH_VALUE",
    "OUT_OF_RANGE",
    "WRONG_FIELD",
    "WRONG_TYPE",
    "BadMetric",
    "DataType",
    "DecodedPayload",
    "Metric",
    "SparkplugDecodeError",
    "SparkplugTopic",
    "apply_datatype",
    "decode_payload",
    "encode_payload",
    "format_topic",
    "parse_topic",
]

NAMESPACE: Final = "spBv1.0"
NODE_MESSAGE_TYPES: Final = frozenset({"NBIRTH", "NDEATH", "NDATA", "NCMD"})
DEVICE_MESSAGE_TYPES: Final = frozenset({"DBIRTH", "DDEATH", "DDATA", "DCMD"})
MESSAGE_TYPES: Final = NODE_MESSAGE_TYPES | DEVICE_MESSAGE_TYPES | {"STATE"}


#: reason keys (for per-reason counters) of a metric that cannot be decoded
BAD_PAYLOAD: Final = "invalid sparkplug payload"
NO_NAME_OR_ALIAS: Final = "sparkplug metric without name or alias"
BAD_NAME: Final = "sparkplug metric name not utf-8"
BAD_DATATYPE: Final = "sparkplug metric invalid datatype"
WRONG_FIELD: Final = "sparkplug metric wrong value field"
NO_VALUE: Final = "sparkplug metric without value"
NULL_WITH_VALUE: Final = "sparkplug metric null with a value"
OUT_OF_RANGE: Final = "sparkplug metric out of range"
BAD_STRING: Final = "sparkplug metric string not utf-8"
WRONG_TYPE: Final = "sparkplug metric wrong type"
DATATYPE_CHANGED: Final = "sparkplug metric datatype differs from birth"


class SparkplugDecodeError(ValueError):
    """A Sparkplug topic, payload or metric that is not valid; the message says why and
    ``reason`` is a short stable key for counters."""

    def __init__(self, detail: str, reason: str = BAD_PAYLOAD) -> None:
        super().__init__(detail)
        self.reason = reason


class DataType(IntEnum):
    """Sparkplug B metric datatypes (Sparkplug 3.0, section 6.4.16)."""

    UNKNOWN = 0
    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT64 = 4
    UINT8 = 5
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12
    DATETIME = 13
    TEXT = 14
    UUID = 15
    DATASET = 16
    BYTES = 17
    FILE = 18
    TEMPLATE = 19
    PROPERTYSET = 20
    PROPERTYSETLIST = 21
    INT8_ARRAY = 22
    INT16_ARRAY = 23
    INT32_ARRAY = 24
    INT64_ARRAY = 25
    UINT8_ARRAY = 26
    UINT16_ARRAY = 27
    UINT32_ARRAY = 28
    UINT64_ARRAY = 29
    FLOAT_ARRAY = 30
    DOUBLE_ARRAY = 31
    BOOLEAN_ARRAY = 32
    STRING_ARRAY = 33
    DATETIME_ARRAY = 34


@dataclass(slots=True)
class Metric:
    """One metric of a payload. ``name`` is sent on BIRTH, ``alias`` may replace it later."""

    name: str | None
    alias: int | None
    datatype: int
    value: float | int | bool | str | None
    timestamp_ms: int | None
    is_null: bool = False


@dataclass(frozen=True, slots=True)
class BadMetric:
    """A metric of a payload that could not be decoded (and is not in ``metrics``).

    ``datatype`` is its declared datatype when that one is valid (only the value is wrong):
    a host may still learn the metric's name, alias and type from a BIRTH."""

    index: int
    name: str | None
    alias: int | None
    datatype: int | None
    reason: str
    detail: str


@dataclass(slots=True)
class DecodedPayload:
    timestamp_ms: int | None
    seq: int | None
    metrics: list[Metric]
    bad: list[BadMetric] = _field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SparkplugTopic:
    """A parsed Sparkplug topic. For ``STATE`` (``spBv1.0/STATE/<host_id>``) group_id and
    edge_node_id are empty and ``host_id`` is set."""

    namespace: str
    group_id: str
    message_type: str
    edge_node_id: str
    device_id: str | None = None
    host_id: str | None = None

    @property
    def topic(self) -> str:
        if self.message_type == "STATE":
            return f"{self.namespace}/STATE/{self.host_id}"
        return format_topic(self.group_id, self.message_type, self.edge_node_id, self.device_id)


# datatype -> (the value field the encoder writes: the specification's, bits, signed) for the
# integer types; the decoder takes either integer field (see the module docstring)
_INTEGERS: Final[dict[int, tuple[str, int, bool]]] = {
    DataType.INT8: ("int_value", 8, True),
    DataType.INT16: ("int_value", 16, True),
    DataType.INT32: ("int_value", 32, True),
    DataType.UINT8: ("int_value", 8, False),
    DataType.UINT16: ("int_value", 16, False),
    DataType.UINT32: ("int_value", 32, False),
    DataType.INT64: ("long_value", 64, True),
    DataType.UINT64: ("long_value", 64, False),
    DataType.DATETIME: ("long_value", 64, False),
}
_SCALAR_FIELDS: Final[dict[int, str]] = {
    DataType.FLOAT: "float_value",
    DataType.DOUBLE: "double_value",
    DataType.BOOLEAN: "boolean_value",
    DataType.STRING: "string_value",
    DataType.TEXT: "string_value",
    DataType.UUID: "string_value",
}
# datatypes carried in a field this codec checks but does not turn into a scalar value
_OPAQUE_FIELDS: Final[dict[int, str]] = {
    DataType.BYTES: "bytes_value",
    DataType.FILE: "bytes_value",
    DataType.DATASET: "dataset_value",
    DataType.TEMPLATE: "template_value",
    **{dt: "bytes_value" for dt in range(DataType.INT8_ARRAY, DataType.DATETIME_ARRAY + 1)},
}
_INT_FIELD_BITS: Final = {"int_value": 32, "long_value": 64}
_INT_FIELDS: Final = frozenset(_INT_FIELD_BITS)


def _name(dt: int) -> str:
    try:
        return DataType(dt).name
    except ValueError:
        return str(dt)


def _label(name: str | None, alias: int | None, index: int | None) -> str:
    where = "metric" if index is None else f"metric {index}"
    if name is not None:
        return f"{where} ({name!r})"
    if alias is not None:
        return f"{where} (alias {alias})"
    return where


def _to_wire_int(value: int, dt: int, where: str) -> tuple[str, int]:
    field, bits, signed = _INTEGERS[dt]
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not lo <= value <= hi:
        raise ValueError(f"{where}: value {value} out of range {lo}..{hi} for {_name(dt)}")
    # negative values: two's complement over the whole field width, as Tahu's Java client does
    return field, value + (1 << _INT_FIELD_BITS[field]) if value < 0 else value


def _from_wire_int(raw: int, dt: int, where: str) -> int:
    """An integer metric's value from either integer field (see the module docstring)."""
    _, bits, signed = _INTEGERS[dt]
    if 0 <= raw < 1 << bits:
        if signed and raw >= 1 << (bits - 1):  # two's complement at the type's own width
            return raw - (1 << bits)
        return raw
    if signed:
        for width in (32, 64):  # sign-extended to a field's width
            if width > bits and (1 << width) - (1 << (bits - 1)) <= raw < 1 << width:
                return raw - (1 << width)
    raise SparkplugDecodeError(f"{where}: value {raw} out of range for {_name(dt)}", OUT_OF_RANGE)


def _valid_datatype(dt: int) -> bool:
    return dt not in (DataType.PROPERTYSET, DataType.PROPERTYSETLIST) and 0 < dt <= DataType.DATETIME_ARRAY


def _check_datatype(dt: int, where: str) -> None:
    if not _valid_datatype(dt):
        raise SparkplugDecodeError(f"{where}: invalid datatype {dt}", BAD_DATATYPE)


def _expected_field(dt: int) -> str:
    if dt in _INTEGERS:
        return _INTEGERS[dt][0]
    if dt in _SCALAR_FIELDS:
        return _SCALAR_FIELDS[dt]
    return _OPAQUE_FIELDS[dt]


def _raw_value(m: Any, field: str, where: str) -> float | int | bool | str | None:
    if field in ("bytes_value", "dataset_value", "template_value", "extension_value"):
        return None
    value: float | int | bool | str = getattr(m, field)
    if field == "string_value" and not isinstance(value, str):
        raise SparkplugDecodeError(f"{where}: string value {value!r} is not UTF-8", BAD_STRING)
    return value


def _decode_metric(m: Any, index: int) -> Metric | BadMetric:
    name: str | None = m.name if m.HasField("name") else None
    alias: int | None = m.alias if m.HasField("alias") else None
    if name is not None and not isinstance(name, str):
        # proto2 does not check UTF-8 while parsing: upb hands out the raw bytes instead
        return BadMetric(index, None, alias, None, BAD_NAME, f"metric {index}: name {name!r} is not UTF-8")
    where = _label(name, alias, index)
    if name is None and alias is None:
        return BadMetric(index, None, None, None, NO_NAME_OR_ALIAS, f"{where}: has neither name nor alias")
    dt: int | None = int(m.datatype) if m.HasField("datatype") else None
    if dt is not None and not _valid_datatype(dt):
        return BadMetric(index, name, alias, None, BAD_DATATYPE, f"{where}: invalid datatype {dt}")
    try:
        return _decode_value(m, name, alias, dt, where)
    except SparkplugDecodeError as exc:
        return BadMetric(index, name, alias, dt, exc.reason, str(exc))


def _decode_value(m: Any, name: str | None, alias: int | None, dt: int | None, where: str) -> Metric:
    timestamp_ms: int | None = m.timestamp if m.HasField("timestamp") else None
    field = m.WhichOneof("value")
    is_null = m.is_null
    if is_null and field is not None:
        raise SparkplugDecodeError(f"{where}: is_null is set but {field} is present", NULL_WITH_VALUE)
    if field is None and not is_null:
        raise SparkplugDecodeError(f"{where}: no value and is_null not set", NO_VALUE)
    if dt is None:
        return Metric(name, alias, DataType.UNKNOWN, None if is_null else _raw_value(m, field, where),
                      timestamp_ms, is_null)
    if is_null:
        return Metric(name, alias, dt, None, timestamp_ms, True)
    if dt in _INTEGERS:
        if field not in _INT_FIELDS:
            raise SparkplugDecodeError(
                f"{where}: datatype {_name(dt)} needs int_value or long_value, got {field}", WRONG_FIELD)
        return Metric(name, alias, dt, _from_wire_int(getattr(m, field), dt, where), timestamp_ms)
    expected = _expected_field(dt)
    if field != expected:
        raise SparkplugDecodeError(f"{where}: datatype {_name(dt)} needs {expected}, got {field}",
                                   WRONG_FIELD)
    value = _raw_value(m, field, where) if dt in _SCALAR_FIELDS else None
    return Metric(name, alias, dt, value, timestamp_ms, False)


def decode_payload(data: bytes) -> DecodedPayload:
    """Decode and validate a Sparkplug B payload (any message type but STATE): the metrics
    that decode in ``metrics``, the others in ``bad``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SparkplugDecodeError(f"payload must be bytes, not {type(data).__name__}")
    msg = pb.Payload()
    try:
        msg.ParseFromString(bytes(data))
    except DecodeError as exc:
        raise SparkplugDecodeError(f"not a Sparkplug B protobuf payload: {exc}") from exc
    except Exception as exc:
        # the C (upb) parser reports some malformed inputs (deep nesting, bad UTF-8 in a
        # nested string) with other exception types; for a caller they all mean "not protobuf"
        raise SparkplugDecodeError(f"not a Sparkplug B protobuf payload: {exc!r}") from exc
    seq: int | None = None
    if msg.HasField("seq"):
        seq = int(msg.seq)
        if seq > 255:
            raise SparkplugDecodeError(f"seq {seq} out of range 0..255")
    metrics: list[Metric] = []
    bad: list[BadMetric] = []
    for i, m in enumerate(msg.metrics):
        d = _decode_metric(m, i)
        if isinstance(d, Metric):
            metrics.append(d)
        else:
            bad.append(d)
    timestamp_ms = int(msg.timestamp) if msg.HasField("timestamp") else None
    return DecodedPayload(timestamp_ms, seq, metrics, bad)


def apply_datatype(metric: Metric, datatype: int) -> Metric:
    """``metric`` (typically from a DATA message without datatype) typed by ``datatype``
    (known from the BIRTH): signed integers decoded, ranges and value types checked.

    Raises :class:`SparkplugDecodeError` with the reason of the problem."""
    where = _label(metric.name, metric.alias, None)
    _check_datatype(datatype, where)
    if metric.datatype not in (DataType.UNKNOWN, datatype):
        raise SparkplugDecodeError(
            f"{where}: datatype {_name(metric.datatype)} differs from birth datatype {_name(datatype)}",
            DATATYPE_CHANGED,
        )
    value = metric.value
    if metric.is_null or value is None:
        return replace(metric, datatype=datatype)
    if datatype in _INTEGERS:
        if type(value) is not int:
            raise SparkplugDecodeError(f"{where}: {_name(datatype)} needs an integer, got {value!r}",
                                       WRONG_TYPE)
        if metric.datatype == DataType.UNKNOWN:
            value = _from_wire_int(value, datatype, where)
    elif datatype in (DataType.FLOAT, DataType.DOUBLE):
        if type(value) is not float:
            raise SparkplugDecodeError(f"{where}: {_name(datatype)} needs a float, got {value!r}",
                                       WRONG_TYPE)
    elif datatype == DataType.BOOLEAN:
        if type(value) is not bool:
            raise SparkplugDecodeError(f"{where}: Boolean needs a bool, got {value!r}", WRONG_TYPE)
    elif datatype in _SCALAR_FIELDS:
        if type(value) is not str:
            raise SparkplugDecodeError(f"{where}: {_name(datatype)} needs a string, got {value!r}",
                                       WRONG_TYPE)
    else:
        value = None
    return replace(metric, datatype=datatype, value=value)


def _encode_metric(out: Any, metric: Metric, index: int) -> None:
    where = _label(metric.name, metric.alias, index)
    if metric.name is None and metric.alias is None:
        raise ValueError(f"{where}: needs a name or an alias")
    dt = int(metric.datatype)
    if dt not in _INTEGERS and dt not in _SCALAR_FIELDS:
        raise ValueError(f"{where}: cannot encode datatype {_name(dt)}")
    if metric.name is not None:
        out.name = metric.name
    if metric.alias is not None:
        out.alias = metric.alias
    if metric.timestamp_ms is not None:
        out.timestamp = metric.timestamp_ms
    out.datatype = dt
    value = metric.value
    if metric.is_null or value is None:
        if not metric.is_null:
            raise ValueError(f"{where}: value is None but is_null is not set")
        out.is_null = True
        return
    if dt in _INTEGERS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: {_name(dt)} needs an int, got {value!r}")
        field, wire = _to_wire_int(value, dt, where)
        setattr(out, field, wire)
    elif dt in (DataType.FLOAT, DataType.DOUBLE):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: {_name(dt)} needs a number, got {value!r}")
        if dt == DataType.FLOAT and math.isfinite(value) and abs(value) > 3.4028234663852886e38:
            raise ValueError(f"{where}: {value!r} does not fit a Float")
        setattr(out, _SCALAR_FIELDS[dt], float(value))
    elif dt == DataType.BOOLEAN:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: Boolean needs a bool, got {value!r}")
        out.boolean_value = value
    else:
        if not isinstance(value, str):
            raise ValueError(f"{where}: {_name(dt)} needs a str, got {value!r}")
        out.string_value = value


def encode_payload(metrics: Sequence[Metric], seq: int | None, timestamp_ms: int) -> bytes:
    """Encode a payload; ``seq`` None for NDEATH (which carries no sequence number).

    Raises ValueError naming the metric when one cannot be encoded as declared."""
    if seq is not None and not 0 <= seq <= 255:
        raise ValueError(f"seq {seq} out of range 0..255")
    msg = pb.Payload()
    msg.timestamp = timestamp_ms
    if seq is not None:
        msg.seq = seq
    for i, metric in enumerate(metrics):
        _encode_metric(msg.metrics.add(), metric, i)
    return msg.SerializeToString()


def format_topic(group_id: str, message_type: str, edge_node_id: str, device_id: str | None = None) -> str:
    if message_type in DEVICE_MESSAGE_TYPES:
        if device_id is None:
            raise ValueError(f"{message_type} topic needs a device id")
        return f"{NAMESPACE}/{group_id}/{message_type}/{edge_node_id}/{device_id}"
    if message_type in NODE_MESSAGE_TYPES and device_id is None:
        return f"{NAMESPACE}/{group_id}/{message_type}/{edge_node_id}"
    raise ValueError(f"cannot format a {message_type} topic with device id {device_id!r}")


def parse_topic(topic: str) -> SparkplugTopic:
    """Parse ``spBv1.0/<group>/<TYPE>/<edge node>[/<device>]`` or ``spBv1.0/STATE/<host>``."""
    if not isinstance(topic, str):
        raise SparkplugDecodeError(f"topic must be a str, not {type(topic).__name__}")
    parts = topic.split("/")
    if parts[0] != NAMESPACE:
        raise SparkplugDecodeError(f"topic {topic!r}: namespace is not {NAMESPACE}")
    if any(not p for p in parts) or any(c in topic for c in "+#\0"):
        raise SparkplugDecodeError(f"topic {topic!r}: empty level or wildcard/NUL character")
    if len(parts) == 3 and parts[1] == "STATE":
        return SparkplugTopic(NAMESPACE, "", "STATE", "", None, parts[2])
    if len(parts) < 4:
        raise SparkplugDecodeError(f"topic {topic!r}: needs {NAMESPACE}/group/TYPE/edge_node[/device]")
    group, mtype, node = parts[1], parts[2], parts[3]
    if mtype in NODE_MESSAGE_TYPES:
        if len(parts) != 4:
            raise SparkplugDecodeError(f"topic {topic!r}: {mtype} takes no device id")
        return SparkplugTopic(NAMESPACE, group, mtype, node)
    if mtype in DEVICE_MESSAGE_TYPES:
        if len(parts) != 5:
            raise SparkplugDecodeError(f"topic {topic!r}: {mtype} needs exactly one device id")
        return SparkplugTopic(NAMESPACE, group, mtype, node, parts[4])
    raise SparkplugDecodeError(f"topic {topic!r}: unknown message type {mtype!r}")
