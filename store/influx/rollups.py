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
import re
from collections.abc import Iterable, Mapping
from dataclasses import fields

import numpy as np

from ..base import RollupRow, TagRecord
from ..rollup_log import HOUR_NS, ChangeLog
from .lp import HIERARCHY, _tag_value, escape_field_str

__all__ = [
    "HOUR_NS", "Claims", "elements", "evidence", "rollup_line", "tag_line", "void_lines",
]



@functools.cache
def elements() -> tuple[str, ...]:
    """The time elements' names, in the order a row's ``data`` begins with them
    (``api.rollups.encode``). Imported when first needed: importing the
    store (as the simulators do) must load no ``kpi`` code."""
    from kpi import TimeElements

    return tuple(f.name for f in fields(TimeElements))


_ASSET_KEYS = HIERARCHY[:4]  # site, area, line, asset


def _asset_key(measurement: str, asset: str) -> str:
    segments = asset.split("/")
    if len(segments) != 4 or not all(segments):
        raise ValueError(f"asset path {asset!r} is not site/area/line/asset")
    return measurement + "".join(f",{k}={_tag_value(k, v)}"
                                 for k, v in sorted(zip(_ASSET_KEYS, segments, strict=True)))


def rollup_line(measurement: str, row: RollupRow, written_ns: int | None = None) -> str:
    """The row as one point of ``measurement`` at its hour; ``written_ns``: when it was
    written (a reader holding rows knows by it whether this one changed)."""
    values = np.frombuffer(row.data, "<f8")
    out = [f"key={escape_field_str(row.key)}",
           f"algorithm_version={escape_field_str(row.key.split('#', 1)[0])}",
           f"reach_ns={int(row.reach_ns)}i",
           *([f"written_ns={int(written_ns)}i"] if written_ns is not None else []),
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


#: a tag entry of ``extra`` as ``json.dumps`` writes it: ``["<path>", <id>, ``
_TAG_ENTRY = re.compile(r'\["([^"\\]*)", (-?\d+), ')


def _ids_differ(text: str, ids: Mapping[str, int]) -> bool:
    """Whether ``extra`` may name a tag of ``ids`` by another id (then it is parsed and
    rewritten; else kept as it is, as the rewrite would give it back). A row of
    ``api.rollups.encode`` names its tags by role code only (no path, no id: a reader takes
    them from its own tags), and is kept; text not as ``json.dumps`` writes a row's evidence,
    or with escapes, is left to the parser. Rows that named tags by path and id (written
    before) are of other keys, which a reader ignores."""
    if "\\" in text or not text.startswith('{"tags": [['):
        return True
    if not text.startswith('{"tags": [["'):  # [role code, prior]: nothing to rewrite
        return False
    return any(ids.get(m[1], int(m[2])) != int(m[2]) for m in _TAG_ENTRY.finditer(text))


def decode_point(asset: str, time_ns: int, key: object, reach: object, data: object,
                 extra: object, ids: Mapping[str, int]) -> RollupRow | None:
    """A row from the fields read back; None for a void point or one another writer made.
    The tag ids in ``extra`` are the writing gateway's: they are replaced by this store's
    own ids of the same paths (ids are local, paths are not)."""
    if not key or not isinstance(key, str) or reach is None or not isinstance(data, str):
        return None
    return RollupRow(asset, int(time_ns), key, int(reach),  # type: ignore[call-overload]
                     base64.b64decode(data), evidence(extra, ids))


def evidence(extra: object, ids: Mapping[str, int]) -> str | None:
    """A row's ``extra`` as a reader gets it back (``decode_point``): None when empty, tag
    ids rewritten to ``ids`` where they differ."""
    text = extra if isinstance(extra, str) and extra else None
    if text is not None and ids and _ids_differ(text, ids):
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
    return text


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


class Claims(ChangeLog):
    """InfluxDB's log (every call under the store's rollup lock): a change voids the hour
    points it makes stale, in the same request as its samples."""

    def stale_hours(self, since: Mapping[str | None, int]) -> dict[str, range]:
        """asset -> the hours whose rows a change at ``since[asset]`` makes stale."""
        return {asset: range(t // HOUR_NS * HOUR_NS, self.end_ns, HOUR_NS)
                for asset, t in since.items() if asset is not None and t < self.end_ns}
