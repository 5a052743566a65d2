"""Roll-up rows and the tag register in InfluxDB (``store/influx/SCHEMA.md``).

**Roll-ups** (measurement ``<measurement>_rollup``): one point per asset and hour, tagged
with the asset's hierarchy (``site``, ``area``, ``line``, ``asset``), at the hour's start.
Its fields are the row as the KPI service wrote it -- ``key``, ``reach_ns``, ``data``
(base64 of the opaque bytes) and ``extra`` -- which is what tierproof reads back (exact), and,
for other readers (Grafana, an auditor), ``algorithm_version`` and one float field per time
element decoded from ``data``, with ``nulls`` naming the elements that have no value.

InfluxDB has no transactions and no change feed, but the gateway that owns an asset is the
only writer of its samples and of its rows, so the store knows every change: a write of
samples of asset A at times >= t makes every row of A whose hour ends after t stale. Such a
write carries, in the same posted body and after the samples, a **void** point for each of
those hours (``key=""``: same series and time, so it replaces the row's ``key``; readers skip
a point whose key is empty). A void is sent only for hours a computation may have produced
(before :attr:`Claims.end_ns`); the rows being computed while such a write happens are refused
by :meth:`Claims.admit`, as in the embedded store (``store/sqlite/rollups.py``).

**Tag register** (measurement ``<measurement>_tags``): one point per tag (hierarchy tags
and ``signal``; fields ``role``, ``device``, ``protocol``, ``unit``, ``enum`` as JSON), so that
a tierproof without devices (the central one) learns every gateway's tags from InfluxDB.
"""

from __future__ import annotations

import base64
import functools
import json
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields

import numpy as np

from ..base import RollupRow, TagRecord
from ..batch import I32, I64
from .lp import HIERARCHY, _tag_value, escape_field_str

__all__ = [
    "HOUR_NS", "Claims", "asset_since", "elements", "rollup_line", "tag_line", "void_lines",
]

HOUR_NS = 3600 * 1_000_000_000


@functools.cache
def elements() -> tuple[str, ...]:
    """The time elements' names, in the order a row's ``data`` begins with them
    (``api.rollups.encode``). Imported when first needed: importing the
    store (as the simulators do) must load no ``kpi`` code."""
    from kpi import TimeElements

    return tuple(f.name for f in fields(TimeElements))


_LOG = 4096
_ASSET_KEYS = HIERARCHY[:4]  # site, area, line, asset


def _asset_key(measurement: str, asset: str) -> str:
    segments = asset.split("/")
    if len(segments) != 4 or not all(segments):
        raise ValueError(f"asset path {asset!r} is not site/area/line/asset")
    return measurement + "".join(f",{k}={_tag_value(k, v)}"
                                 for k, v in sorted(zip(_ASSET_KEYS, segments, strict=True)))


def rollup_line(measurement: str, row: RollupRow) -> str:
    """The row as one point of ``measurement`` at its hour."""
    values = np.frombuffer(row.data, "<f8")
    out = [f"key={escape_field_str(row.key)}",
           f"algorithm_version={escape_field_str(row.key.split('#', 1)[0])}",
           f"reach_ns={int(row.reach_ns)}i",
           f"data={escape_field_str(base64.b64encode(row.data).decode())}",
           f"extra={escape_field_str(row.extra or '')}"]
    nulls = []
    for name, v in zip(elements(), values.tolist(), strict=False):
        if math.isfinite(v):
            out.append(f"{name}={v!r}")
        else:
            nulls.append(name)
    # always written: a row replacing an older one of the same hour must not inherit its
    # element fields (InfluxDB merges the fields of points at the same series and time)
    out.append(f"nulls={escape_field_str(','.join(nulls))}")
    return f"{_asset_key(measurement, row.asset)} {','.join(out)} {int(row.hour_ns)}\n"


def void_lines(measurement: str, asset: str, hours: Iterable[int]) -> str:
    key = _asset_key(measurement, asset)
    return "".join(f'{key} key="" {int(h)}\n' for h in hours)


def decode_point(asset: str, time_ns: int, key: object, reach: object, data: object,
                 extra: object, ids: Mapping[str, int]) -> RollupRow | None:
    """A row from the fields read back; None for a void point or one another writer made.
    The tag ids in ``extra`` are the writing gateway's: they are replaced by this store's
    own ids of the same paths (ids are local, paths are not)."""
    if not key or not isinstance(key, str) or reach is None or not isinstance(data, str):
        return None
    text = extra if isinstance(extra, str) and extra else None
    if text is not None and ids:
        try:
            doc = json.loads(text)
            tags = doc.get("tags")
            if isinstance(tags, list):
                for t in tags:
                    if isinstance(t, list) and len(t) > 1 and t[0] in ids:
                        t[1] = ids[t[0]]
                text = json.dumps(doc)
        except (ValueError, AttributeError):
            pass  # opaque to the store: handed back as written
    return RollupRow(asset, int(time_ns), key, int(reach),  # type: ignore[call-overload]
                     base64.b64decode(data), text)


def tag_line(measurement: str, tag: TagRecord, ts_ns: int) -> str:
    """The tag's register point (``<measurement>_tags``)."""
    segments = tag.path.split("/")
    key = measurement + "".join(
        f",{k}={_tag_value(k, v)}" for k, v in sorted(zip(HIERARCHY, segments, strict=True)))
    enum = json.dumps({str(k): v for k, v in sorted((tag.enum or {}).items())}) if tag.enum else ""
    fields_ = (f"role={escape_field_str(tag.role)},device={escape_field_str(tag.device)},"
               f"protocol={escape_field_str(tag.protocol)},unit={escape_field_str(tag.unit)},"
               f"enum={escape_field_str(enum)}")
    return f"{key} {fields_} {int(ts_ns)}\n"


def asset_since(tag_ids: I32, ts_ns: I64, asset_of: Mapping[int, str]) -> dict[str, int]:
    """asset -> earliest time of the batch's samples of its tags."""
    order = np.argsort(tag_ids, kind="stable")
    t, ts = tag_ids[order], ts_ns[order]
    first = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
    mins = np.minimum.reduceat(ts, first)
    out: dict[str, int] = {}
    for tag, m in zip(t[first].tolist(), mins.tolist(), strict=True):
        a = asset_of.get(int(tag))
        if a is not None:
            out[a] = min(out.get(a, int(m)), int(m))
    return out


class Claims:
    """Which hours a computation may have produced rows for, and which computed rows may
    still be put. Every call under the store's rollup lock."""

    def __init__(self, end_ns: int) -> None:
        #: no row ends after this and none being computed does: writes at or after it are
        #: live ingest and void nothing
        self.end_ns = end_ns
        self.seq = 0
        self._log: deque[tuple[int, str, int]] = deque(maxlen=_LOG)

    def claim(self, end_ns: int) -> int:
        self.end_ns = max(self.end_ns, end_ns)
        return self.seq

    def stale_hours(self, since: Mapping[str, int]) -> dict[str, range]:
        """asset -> the hours whose rows a change at ``since[asset]`` makes stale."""
        out: dict[str, range] = {}
        for asset, t in since.items():
            if t < self.end_ns:
                out[asset] = range(t // HOUR_NS * HOUR_NS, self.end_ns, HOUR_NS)
        return out

    def note(self, since: Mapping[str, int]) -> None:
        """After the change reached the server: rows computed before it are refused."""
        for asset, t in since.items():
            if t < self.end_ns:
                self.seq += 1
                self._log.append((self.seq, asset, t))

    def admit(self, rows: Sequence[RollupRow], token: int) -> list[RollupRow]:
        if token < self.seq and (not self._log or self._log[0][0] > token + 1):
            return []
        later = [(a, t) for s, a, t in self._log if s > token]
        return [r for r in rows if not any(a == r.asset and t < r.hour_ns + HOUR_NS for a, t in later)]
