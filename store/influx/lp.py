"""InfluxDB line protocol from columnar batches (see ``store/influx/SCHEMA.md``).

A line is four pieces: the tag's series key with the first field's name (computed once per tag
at registration), the value, the quality field, and the timestamp (plus the server and
gateway timestamps as fields, for batches that carry them). Each piece is built for the
whole batch at once — a table lookup by ``tag_id`` or ``quality``, one ``repr`` of the value
list, one string per distinct timestamp, numpy-computed digits for distinct server and
gateway timestamps — and the pieces are interleaved into one list joined in one call. The
float formatting is CPython's shortest round-trip ``repr`` (what Go's ``ParseFloat`` reads back
to the same float64); it is most of the cost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from ..base import TagRecord
from ..batch import TS_UNKNOWN, Batch

__all__ = ["HIERARCHY", "MIN_LANE_POINTS", "LineEncoder", "UnknownTags", "escape_field_str", "gap_line",
           "series_key", "take"]

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


#: the code points of 000..999: three digits at a time for _fixed_width
_DIGITS3 = np.array([[ord(c) for c in f"{i:03d}"] for i in range(1000)], dtype=np.uint32)

Stamps = tuple[npt.NDArray[np.int64], str, str]  # stamps, text before each, text after each


def _fixed_width(parts: Sequence[Stamps]) -> list[str] | None:
    """One string per sample: ``<prefix><stamp><suffix>`` of every part in turn, when all the
    stamps have 19 digits (every time from 2001-09-09 to the end of int64 in 2262), else None.

    CPython's int-to-str is most of the cost of a column of distinct stamps (~130 ns each),
    so the digits are computed with numpy, three at a time by table lookup, into one
    code-point matrix read back as fixed-width strings: one string per line for all the
    stamps of the line."""
    n = len(parts[0][0])
    if not n or any(ts.min() < 10**18 for ts, _, _ in parts):
        return None
    width = sum(len(prefix) + 19 + len(suffix) for _, prefix, suffix in parts)
    out = np.empty((n, width), dtype=np.uint32)
    col = 0
    for ts, prefix, suffix in parts:
        out[:, col:col + len(prefix)] = [ord(c) for c in prefix]
        col += len(prefix)
        high, low = np.divmod(ts, 10**9)  # high: 10 digits, low: 9 (int32 from here: faster)
        top, mid = np.divmod(high, 10**6)
        groups = np.empty((n, 7), dtype=np.int32)  # d, ddd x 6: 19 digits (the first is "00d")
        groups[:, 0], groups[:, 1] = np.divmod(top.astype(np.int32), 1000)
        groups[:, 2], groups[:, 3] = np.divmod(mid.astype(np.int32), 1000)
        groups[:, 4], rest = np.divmod(low.astype(np.int32), 10**6)
        groups[:, 5], groups[:, 6] = np.divmod(rest, 1000)
        # np.take, not fancy indexing: ~4x faster here
        out[:, col:col + 19] = np.take(_DIGITS3, groups, axis=0).reshape(n, 21)[:, 2:]
        col += 19
        out[:, col:col + len(suffix)] = [ord(c) for c in suffix]
        col += len(suffix)
    result: list[str] = out.view(f"<U{width}").ravel().tolist()
    return result


def _stamps(ts: npt.NDArray[np.int64], prefix: str, suffix: str, optional: bool) -> list[list[str]]:
    """Columns of pieces writing ``<prefix><ts><suffix>`` per sample (nothing at all where an
    ``optional`` stamp is TS_UNKNOWN), without a Python loop over the samples: long runs of
    equal stamps (a poll's samples share one) are formatted once per run, distinct ones by
    :func:`_fixed_width`, or else by one ``repr`` of them all between a constant prefix and
    suffix that are pieces of their own (joining a piece costs less than building a string)."""
    n = len(ts)
    change = np.flatnonzero(ts[1:] != ts[:-1]) + 1
    if len(change) > n // 4:  # mostly distinct: no run bookkeeping
        unknown = ts == TS_UNKNOWN if optional else np.zeros(n, dtype=bool)
        fixed = _fixed_width([(ts[~unknown], prefix, suffix)]) if (~unknown).any() else []
        if fixed is not None:
            if not unknown.any():
                return [fixed]
            col = np.full(n, "", dtype=object)
            col[~unknown] = fixed
            result: list[str] = col.tolist()
            return [result]
        heads, stamps, tails = [prefix] * n, _reprs(ts), [suffix] * n
        for i in np.flatnonzero(unknown).tolist():  # rare where a column is present at all
            heads[i] = stamps[i] = tails[i] = ""
        return [heads, stamps, tails]
    run = np.zeros(n, dtype=np.intp)
    run[change] = 1
    np.cumsum(run, out=run)
    starts = np.concatenate(([0], change))
    strs = np.array([f"{prefix}{t}{suffix}" if not optional or t != TS_UNKNOWN else ""
                     for t in ts[starts].tolist()], dtype=object)
    per_sample: list[str] = strs[run].tolist()
    return [per_sample]


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


#: fewest points per lane of :meth:`LineEncoder.encode_lanes` (below: fewer lanes)
MIN_LANE_POINTS = 500


def take(batch: Batch, idx: npt.NDArray[np.intp]) -> Batch:
    """The samples of ``batch`` at ``idx`` (in that order), every column."""

    def opt(a: npt.NDArray[np.int64] | None) -> npt.NDArray[np.int64] | None:
        return None if a is None else a[idx]

    return Batch(batch.tag_id[idx], batch.ts_ns[idx], batch.value[idx], batch.quality[idx],
                 None if batch.text is None else batch.text[idx],
                 opt(batch.server_ts_ns), opt(batch.gateway_ts_ns))


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

    @staticmethod
    def _stamp_columns(batch: Batch) -> list[list[str]]:
        """``,server_ts=<ns>i,gateway_ts=<ns>i <ts>\\n``: the fields when the batch has them
        (none where a stamp is TS_UNKNOWN), then the timestamp ending the line."""
        complete: list[Stamps] = []  # known for every sample: one string per line for both
        columns: list[list[str]] = []
        for name, other in (("server_ts", batch.server_ts_ns), ("gateway_ts", batch.gateway_ts_ns)):
            if other is None:
                continue
            unknown = other == TS_UNKNOWN
            if not unknown.any():
                complete.append((other, f",{name}=", "i"))
            elif not unknown.all():
                columns += _stamps(other, f",{name}=", "i", optional=True)
        if complete:
            fields = _fixed_width(complete)
            if fields is not None:
                columns.append(fields)
            else:
                for other, prefix, suffix in complete:
                    columns += _stamps(other, prefix, suffix, optional=False)
        # alone, the timestamp is cheaper per run of equal stamps (a poll's samples share one)
        return columns + _stamps(batch.ts_ns, " ", "\n", optional=False)

    def encode_lanes(self, batch: Batch, batch_size: int, lanes: int) -> list[list[bytes]]:
        """The batch as line protocol in up to ``lanes`` independent lanes that may be posted
        at once: a sample goes to lane ``tag_id % k``, so all of one series is in one lane, in
        batch order (each lane's bodies must be posted one after another, the lanes need not
        be). ``k`` is ``lanes``, fewer when the batch has fewer than :data:`MIN_LANE_POINTS`
        points per lane, and never more than the bodies of ``batch_size`` lines the batch
        needs: a write that fits one body is one POST. Splitting it would cost the server one
        request and one WAL fsync per lane (InfluxDB 1.x syncs its WAL on every write by
        default) for nothing a loaded 2-core gateway could measure (docs/benchmarks.md)."""
        n = len(batch)
        k = max(1, min(lanes, n // MIN_LANE_POINTS, -(-n // batch_size)))
        if k == 1:
            return [self.encode(batch, batch_size)] if n else []
        self._check(batch.tag_id)  # one error naming every unknown tag, not one per lane
        lane = batch.tag_id % k
        out = []
        for j in range(k):
            idx = np.flatnonzero(lane == j)
            if len(idx):
                out.append(self.encode(take(batch, idx), batch_size))
        return out

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
        columns += self._stamp_columns(batch)
        k = len(columns)
        pieces: list[str] = [""] * (k * n)
        for j, col in enumerate(columns):
            pieces[j::k] = col
        step = k * batch_size
        return ["".join(pieces[i:i + step]).encode() for i in range(0, k * n, step)]
