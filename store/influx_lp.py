"""InfluxDB line protocol from columnar batches (see ``store/INFLUX_SCHEMA.md``).

A line is four pieces: the tag's series key with the first field's name (computed once per tag
at registration), the value, the quality field, and the timestamp (plus the server and
gateway timestamps as fields, for batches that carry them). Each piece is built for the
whole batch at once — a table lookup by ``tag_id`` or ``quality``, one ``repr`` of the value
list, one string per distinct timestamp — and the pieces are interleaved into one list joined
in one call. The float formatting is CPython's shortest round-trip ``repr`` (what Go's
``ParseFloat`` reads back to the same float64); it is most of the cost.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from .base import TagRecord
from .batch import TS_UNKNOWN, Batch

__all__ = ["HIERARCHY", "LineEncoder", "UnknownTags", "escape_field_str", "gap_line", "series_key"]

#: tag keys of the ISA-95 hierarchy, one per segment of a tag path
HIERARCHY = ("site", "area", "line", "asset", "signal")

_MEASUREMENT_ESC = str.maketrans({",": r"\,", " ": r"\ "})
_TAG_ESC = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_FIELD_STR_ESC = str.maketrans({"\\": "\\\\", '"': '\\"'})
# quality piece after a value field, and as the first field (no value: NaN, inf or text)
_Q_AFTER = np.array([f",quality={q}i" for q in range(256)], dtype=object)
_Q_FIRST = np.array([f"quality={q}i" for q in range(256)], dtype=object)


class UnknownTags(ValueError):
    """A batch names tag ids that were never registered with this store."""

    def __init__(self, tag_ids: list[int]) -> None:
        super().__init__(f"tag ids not registered with the store: {tag_ids[:10]}"
                         + (f" and {len(tag_ids) - 10} more" if len(tag_ids) > 10 else ""))
        self.tag_ids = tag_ids


def _tag_value(key: str, value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError(f"tag {key}={value!r}: line protocol cannot carry a line break in a tag")
    if value.endswith("\\"):
        raise ValueError(f"tag {key}={value!r}: line protocol cannot end a tag value with '\\'")
    return value.translate(_TAG_ESC)


def escape_field_str(text: str) -> str:
    """A string field value, quoted."""
    return '"' + text.translate(_FIELD_STR_ESC) + '"'


def series_key(measurement: str, tag: TagRecord) -> str:
    """``measurement,tag=value,...`` for one tag: the hierarchy from its path, role, device.

    Keys in lexical order (InfluxDB sorts them anyway; sorted input saves it the work); empty
    values are left out (line protocol has no empty tag values)."""
    segments = tag.path.split("/")
    if len(segments) != len(HIERARCHY) or not all(segments):
        raise ValueError(f"tag path {tag.path!r} is not site/area/line/asset/signal")
    pairs = dict(zip(HIERARCHY, segments, strict=True))
    pairs.update(role=tag.role, device=tag.device)
    return measurement.translate(_MEASUREMENT_ESC) + "".join(
        f",{k}={_tag_value(k, v)}" for k, v in sorted(pairs.items()) if v
    )


def gap_line(measurement: str, device: str, start_ns: int, end_ns: int | None, reason: str,
             asset: str | None = None) -> str:
    """The gap marker point: one per gap, at its start; closing it rewrites it with end_ns.
    Tagged ``asset`` when the gap covers one asset of the device only."""
    fields = f"start_ns={int(start_ns)}i"
    if end_ns is not None:
        fields += f",end_ns={int(end_ns)}i"
    fields += f",reason={escape_field_str(reason)}"
    key = f"{measurement}_gaps".translate(_MEASUREMENT_ESC)
    if asset:
        key += f",asset={_tag_value('asset', asset)}"
    if device:
        key += f",device={_tag_value('device', device)}"
    return f"{key} {fields} {int(start_ns)}\n"


def _timestamps(ts: npt.NDArray[np.int64]) -> list[str]:
    """``" <ts>\\n"`` per sample, formatted once per run of equal timestamps (a poll's samples
    share one)."""
    n = len(ts)
    change = np.flatnonzero(ts[1:] != ts[:-1]) + 1
    if len(change) > n // 4:  # mostly distinct: no run bookkeeping
        return [f" {t}\n" for t in ts.tolist()]
    run = np.zeros(n, dtype=np.intp)
    run[change] = 1
    np.cumsum(run, out=run)
    starts = np.concatenate(([0], change))
    strs = np.array([f" {t}\n" for t in ts[starts].tolist()], dtype=object)
    result: list[str] = strs[run].tolist()
    return result


def _reprs(values: npt.NDArray[np.float64] | npt.NDArray[np.int64]) -> list[str]:
    """``repr`` of every element: one C-level call for the list, then a split."""
    return repr(values.tolist())[1:-1].split(", ") if len(values) else []


def _numbers(value: npt.NDArray[np.float64]) -> list[str]:
    """Each value as line protocol reads it back to the same float64: integral values (states,
    counts) as integers — still float fields without the ``i`` suffix, and formatted ~2x
    faster than floats — the others by CPython's shortest round-trip ``repr``."""
    integral = (value == np.trunc(value)) & (np.abs(value) < 2.0**53)
    if integral.all():
        return _reprs(value.astype(np.int64))
    if not integral.any():
        return _reprs(value)
    out = np.empty(len(value), dtype=object)
    out[integral] = _reprs(value[integral].astype(np.int64))
    out[~integral] = _reprs(value[~integral])
    result: list[str] = out.tolist()
    return result


class LineEncoder:
    """Line protocol for batches of registered tags (``keys``: tag_id -> series key)."""

    def __init__(self, keys: Mapping[int, str]) -> None:
        size = max(keys, default=-1) + 1
        self._known = np.zeros(size, dtype=bool)
        self._with_value = np.full(size, None, dtype=object)  # "key value="
        self._bare = np.full(size, None, dtype=object)  # "key "
        for tid, key in keys.items():
            self._known[tid] = True
            self._with_value[tid] = key + " value="
            self._bare[tid] = key + " "

    def _check(self, tag_id: npt.NDArray[np.int32]) -> None:
        inside = (tag_id >= 0) & (tag_id < len(self._known))
        ok = inside.copy()
        ok[inside] = self._known[tag_id[inside]]
        if not ok.all():
            raise UnknownTags(sorted({int(t) for t in tag_id[~ok].tolist()}))

    def encode(self, batch: Batch, batch_size: int) -> list[bytes]:
        """The batch as line protocol, in bodies of at most ``batch_size`` lines, in batch order."""
        n = len(batch)
        if n == 0:
            return []
        tid = batch.tag_id
        self._check(tid)
        value = batch.value
        finite = np.isfinite(value)
        texts = batch.text
        has_text = (np.fromiter((t is not None for t in texts), dtype=bool, count=n)
                    if texts is not None else np.zeros(n, dtype=bool))
        first_value = finite & ~has_text  # the common case: "value=<v>,quality=<q>i"
        values = _numbers(value)
        if first_value.all():
            keys: list[str] = self._with_value[tid].tolist()
            quality: list[str] = _Q_AFTER[batch.quality].tolist()
        else:
            keys = np.where(first_value, self._with_value[tid], self._bare[tid]).tolist()
            quality = np.where(first_value, _Q_AFTER[batch.quality],
                               _Q_FIRST[batch.quality]).tolist()
            # Python loop over the exceptions only (NaN/inf values and text samples are rare)
            for i in np.flatnonzero(~first_value).tolist():
                piece = f"value={values[i]}," if finite[i] else ""
                if has_text[i]:
                    assert texts is not None
                    piece += f"text={escape_field_str(str(texts[i]))},"
                values[i] = piece
        columns: list[list[str]] = [keys, values, quality]
        for name, other in (("server_ts", batch.server_ts_ns), ("gateway_ts", batch.gateway_ts_ns)):
            if other is not None:
                columns.append([f",{name}={t}i" if t != TS_UNKNOWN else "" for t in other.tolist()])
        columns.append(_timestamps(batch.ts_ns))
        k = len(columns)
        pieces: list[str] = [""] * (k * n)
        for j, col in enumerate(columns):
            pieces[j::k] = col
        step = k * batch_size
        return ["".join(pieces[i:i + step]).encode() for i in range(0, k * n, step)]
