"""Pure decoding for the MQTT collector: topic templates, plain and JSON payloads, times.

Everything here is synchronous, has no I/O and raises only :class:`PayloadError` (whose
``reason`` is a short stable key for the per-reason counters, and ``detail`` the specifics
for the log) -- so the property tests can throw anything at it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from config.mqtt import DEFAULT_MAX_TEXT_BYTES as DEFAULT_MAX_TEXT
from config.mqtt import MqttTag
from config.signals import ENUM_ROLES, REASON_ROLES
from config.times import NS_MAX, datetime_ns

__all__ = [
    "DEFAULT_MAX_TEXT",
    "NS_PER",
    "TEXT_TOO_LONG",
    "JsonFields",
    "PayloadError",
    "TagCodec",
    "match_levels",
    "parse_json",
    "parse_timestamp",
    "walk",
]

#: reason (a key of the drop counters) of a string value longer than the tag's limit
TEXT_TOO_LONG: Final = "text too long"

#: ns per unit of each numeric timestamp format
NS_PER: Final = {"epoch_s": 1_000_000_000, "epoch_ms": 1_000_000, "epoch_us": 1_000, "epoch_ns": 1}
_A: Final = {"float": "a float", "int": "an int", "bool": "a boolean", "string": "a string"}
_TRUE: Final = frozenset({"true", "1", "on", "yes"})
_FALSE: Final = frozenset({"false", "0", "off", "no"})


class PayloadError(ValueError):
    """A message that cannot be stored; ``reason`` keys the drop counters."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def match_levels(levels: Sequence[str | None], topic_levels: Sequence[str]) -> tuple[str, ...] | None:
    """The placeholder values a topic gives under a template (see
    :func:`config.mqtt.mqtt_template_levels`), in template order; None if it does not fit."""
    out: list[str] = []
    n = len(topic_levels)
    for i, lv in enumerate(levels):
        if lv == "#":
            return tuple(out)
        if i >= n:
            return None
        t = topic_levels[i]
        if lv is None:
            continue
        if lv[0] == "=":
            if t != lv[1:]:
                return None
        else:
            out.append(t)
    return tuple(out) if len(levels) == n else None


def parse_json(payload: bytes) -> dict[str, Any]:
    """A JSON object from a payload."""
    try:
        text = payload.decode("utf-8")  # RFC 8259: JSON exchanged between systems is UTF-8
    except UnicodeDecodeError as exc:
        raise PayloadError("not utf-8", str(exc)) from exc
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise PayloadError("malformed json", str(exc)[:200]) from exc
    if not isinstance(doc, dict):
        raise PayloadError("not a json object", f"the document is a {type(doc).__name__}")
    return doc


_MISSING: Final = object()

#: the JSON types a tag of each type takes as they are (``float(v)`` is its value); any other
#: value goes through :meth:`TagCodec.from_json`, which knows the exceptions and the errors
_AS_IS: Final[dict[str, frozenset[type]]] = {
    "float": frozenset({int, float}),
    "int": frozenset({int}),
    "bool": frozenset({bool}),
    "string": frozenset(),
}
#: value-type combinations remembered per set of fields (only accepted ones are kept)
_SIGNATURES_MAX: Final = 1024


def _extractor(paths: Sequence[Sequence[str]]) -> Callable[[Any], tuple[Any, ...]]:
    """``lambda doc: (doc[a][b], doc[c][d], ...)`` for the given paths.

    Generated (like namedtuple and dataclasses do) because one expression of subscripts costs
    a fraction of a loop calling :func:`walk` per field, and this runs for every message. The
    keys are bound as names, never spliced into the source, so any field name is safe."""
    names: dict[str, Any] = {}
    exprs = []
    for j, path in enumerate(paths):
        expr = "doc"
        for k, key in enumerate(path):
            name = f"k{j}_{k}"
            names[name] = key
            expr += f"[{name}]"
        exprs.append(expr)
    src = f"def extract(doc):\n    return ({''.join(e + ', ' for e in exprs)})\n"
    exec(src, names)
    fn: Callable[[Any], tuple[Any, ...]] = names["extract"]
    return fn


class JsonFields:
    """The common case of a JSON route in one step: every field present, nested in objects
    only, and holding a value its tag takes as it is (a number for a float tag, an integer for
    an int tag, a boolean for a bool tag).

    :meth:`floats` returns the values then, else None -- and the caller decodes the document
    field by field with :func:`walk` and :meth:`TagCodec.from_json`, which also give the
    precise error. Both give the same values for every document the fast step accepts."""

    __slots__ = ("_allowed", "_good", "extract")

    def __init__(self, paths: Sequence[Sequence[str]], types: Sequence[str]) -> None:
        self.extract = _extractor(paths)
        self._allowed = [_AS_IS[t] for t in types]
        self._good: set[tuple[type, ...]] = set()

    def floats(self, doc: dict[str, Any]) -> list[float] | None:
        try:
            values = self.extract(doc)
        except (KeyError, TypeError):  # absent, or below a list or a scalar
            return None
        sig = tuple(map(type, values))
        if sig not in self._good:
            if not all(t in ok for t, ok in zip(sig, self._allowed, strict=True)):
                return None
            if len(self._good) < _SIGNATURES_MAX:
                self._good.add(sig)
        try:
            return list(map(float, values))
        except OverflowError:  # an integer beyond float's range: from_json says so
            return None


def walk(doc: Any, path: Sequence[str]) -> Any:
    """The value at a dotted path (list items by decimal index); ``_MISSING`` if absent."""
    cur = doc
    for key in path:
        if isinstance(cur, dict):
            cur = cur.get(key, _MISSING)
        elif isinstance(cur, list) and key.isdigit() and int(key) < len(cur):
            cur = cur[int(key)]
        else:
            return _MISSING
        if cur is _MISSING:
            return _MISSING
    return cur


def is_missing(v: Any) -> bool:
    return v is _MISSING


def parse_timestamp(raw: Any, fmt: str) -> int | None:
    """Nanoseconds since the epoch from a payload's time field; None when it is a time but not
    one the store can hold (before 1970, after 2262, not finite): unknown, and the caller
    falls back to the receive time. PayloadError when it is not a time at all."""
    if fmt == "iso8601":
        if not isinstance(raw, str):
            raise PayloadError("bad timestamp", f"expected an ISO 8601 string, got {_show(raw)}")
        try:
            dt = datetime.fromisoformat(raw)
        except ValueError as exc:
            raise PayloadError("bad timestamp", f"{raw[:60]!r} is not ISO 8601") from exc
        return datetime_ns(dt)
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise PayloadError("bad timestamp", f"expected a number ({fmt}), got {_show(raw)}")
    if isinstance(raw, float):
        if not math.isfinite(raw):
            return None
        ns_f = raw * NS_PER[fmt]
        return int(ns_f) if 0 <= ns_f < NS_MAX else None
    ns = raw * NS_PER[fmt]
    return ns if 0 <= ns <= NS_MAX else None


def _clean(text: str) -> str:
    """JSON may escape lone surrogates (\\ud800) that no store can encode: replace them."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True, slots=True)
class TagCodec:
    """Turns one tag's raw value (payload text or a JSON value) into (value, text)."""

    type: str
    #: canonical or device enum names -> raw value, for enumerated tags sent as names
    names: dict[str, int]
    #: longest text (UTF-8 bytes) a string tag takes; a longer one is TEXT_TOO_LONG
    max_text: int = DEFAULT_MAX_TEXT

    @classmethod
    def of(cls, tag: MqttTag, max_text: int = DEFAULT_MAX_TEXT) -> TagCodec:
        names: dict[str, int] = {}
        if tag.enum is not None and tag.role in ENUM_ROLES + REASON_ROLES:
            names = {name.lower(): raw for raw, name in tag.enum.items()}
        return cls(tag.type, names, max_text)

    def _too_long(self, size: int) -> PayloadError:
        return PayloadError(TEXT_TOO_LONG, f"a text of {size:,} bytes, more than max_text_bytes "
                                           f"({self.max_text:,})")

    def _text(self, text: str) -> str:
        """``text`` if it fits max_text (in UTF-8 bytes), else TEXT_TOO_LONG."""
        # a character is at most 4 UTF-8 bytes: encode only when that can matter
        if len(text) * 4 > self.max_text:
            size = len(text.encode("utf-8", "surrogatepass"))
            if size > self.max_text:
                raise self._too_long(size)
        return text

    def from_text(self, payload: bytes) -> tuple[float, str | None]:
        """A plain payload: the decimal text (or name, or true/false) of one value."""
        if self.type == "string" and len(payload) > self.max_text:
            raise self._too_long(len(payload))  # before decoding it
        try:
            text = payload.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise PayloadError("not utf-8", str(exc)) from exc
        if self.type == "string":
            return math.nan, text
        if self.type == "bool":
            low = text.lower()
            if low in _TRUE:
                return 1.0, None
            if low in _FALSE:
                return 0.0, None
            raise PayloadError("wrong type", f"{_show(text)} is not a boolean")
        try:
            if self.type == "int":
                return float(int(text, 10)), None
            value = float(text)
        except OverflowError:
            raise PayloadError("wrong type", f"{_show(text)} is out of range") from None
        except ValueError:
            raw = self.names.get(text.lower())
            if raw is not None:
                return float(raw), None
            if self.type == "int":
                try:
                    f = float(text)
                except ValueError:
                    f = math.nan
                if f.is_integer():
                    return f, None
            raise PayloadError("wrong type", f"{_show(text)} is not {_A[self.type]}") from None
        return value, None

    def from_json(self, v: Any) -> tuple[float, str | None]:
        """A JSON value of this tag's type (numbers for float and int, true/false or 0/1 for
        bool; an enumerated tag also takes its names)."""
        if self.type == "string":
            if isinstance(v, str):
                return math.nan, _clean(self._text(v))
            if v is None or isinstance(v, dict | list):
                raise PayloadError("wrong type", f"expected a string, got {_show(v)}")
            return math.nan, self._text(json.dumps(v))
        if isinstance(v, bool):
            if self.type == "bool":
                return float(v), None
            raise PayloadError("wrong type", f"expected {_A[self.type]}, got {_show(v)}")
        if isinstance(v, int):
            if self.type == "bool" and v not in (0, 1):
                raise PayloadError("wrong type", f"expected a boolean, got {_show(v)}")
            try:
                return float(v), None
            except OverflowError:
                raise PayloadError("wrong type", f"{_show(v)} is out of range") from None
        if isinstance(v, float):
            if self.type == "bool" or (self.type == "int" and not v.is_integer()):
                raise PayloadError("wrong type", f"expected {_A[self.type]}, got {_show(v)}")
            return v, None
        if isinstance(v, str) and self.names:
            raw = self.names.get(v.lower())
            if raw is not None:
                return float(raw), None
        raise PayloadError("wrong type", f"expected {_A[self.type]}, got {_show(v)}")
