"""Hourly roll-ups: each asset's time elements and evidence counts per closed hour, stored in
the SQLite store's ``rollups`` table, so that a KPI window reads its whole hours from there
and computes only its edges (and any hour without a usable row) from raw samples.

Exactness (``docs/kpis.md``, "Hourly roll-ups"): a window's elements are the sum of its hours
computed *as parts of the window* (``kpi.time_elements(context_start_ns=)``). The part of
hour h depends on the window's start S only through data before h: the counter samples
before each first increase dated in h (an increase is spread over the span from its earlier
sample, clipped to S). The step samples in force at h do not: every window reads them, and
the gaps back to them, wherever it starts (algorithm version 4). A row is computed with the
context ``reach_ns``, the earliest such instant, and is the part of every window starting at
or before it (``usable``). A window that starts later (within seconds of
h, e.g. exactly on it) computes that hour from raw samples.

A row's ``key`` is the algorithm version and a hash of what the elements rest on in config
(the calendar, the asset's PRU, default mode and control, ``counter_rate_factor`` and
``counter_stamp_tolerance_s``, its tags' roles, paths and enumerations, the element layout
and the row's, ``ROW_LAYOUT``); a row of another key is ignored, and recomputed. A row names
its tags by role (``encode``): the reader gives each tag's path and id from the asset's tags
(``decode``). The store drops rows whose data change (``store/sqlite/rollups.py``);
:class:`RollupMaintainer` computes the closed hours that have no row in the background.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any, Final, Protocol

import numpy as np

from config.settings import Asset, Settings
from config.signals import Quality, Role
from kpi import ALGORITHM_VERSION, TagEvidence, TimeElements
from store.base import RollupRow, Store, TagRecord
from store.batch import Series
from store.changes import EVERYTHING

__all__ = [
    "DAY", "ELEMENT_FIELDS", "HEAD", "HOUR_NS", "NEVER", "SUM", "Cell", "Part", "RollupMaintainer",
    "RollupStore", "day_slot", "decode", "decode_cells", "decode_each", "decode_head", "encode",
    "has_rollups", "head_rows", "head_slot", "hour_rows", "keyed_rows", "local_day_edges",
    "reach_ns", "rollup_key", "sum_cells", "sum_slot", "tag_sum", "time_sum",
]

log = logging.getLogger("tierproof.rollups")

HOUR_NS: Final = 3600 * 1_000_000_000
#: the elements' order in a row's ``data`` (float64 each; None as NaN)
ELEMENT_FIELDS: Final = tuple(f.name for f in fields(TimeElements))
_INT_FIELDS: Final = frozenset(f.name for f in fields(TimeElements) if f.type in ("int", int))
#: a unit's own flags: equal in every hour of it, taken once, not summed over time
PER_UNIT: Final = frozenset({"units", "pq_known", "gq_known", "units_without_pru", "std_units"})
#: taken from a run's first row, not summed (``decode_cells``)
_FIRST: Final = PER_UNIT | {"shared_pru_s"}
#: a tag's role as a row's ``extra`` names it: its position here (``encode``). Part of every
#: ``rollup_key``: a change of this table changes the keys, so no row is read by another one
ROLE_CODES: Final = tuple(r.value for r in Role)
#: a role by its code (``decode_head``): ``Role(value)`` goes through the enum machinery
_ROLE_OF: Final = tuple(Role(v) for v in ROLE_CODES)
_CODE_OF: Final = {r: i for i, r in enumerate(_ROLE_OF)}
#: what a row's ``extra`` holds (``encode``), in ``rollup_key``'s basis: a row of another
#: layout has another key, and is recomputed, never misread
ROW_LAYOUT: Final = {"tags": "[role code, prior sample ns]", "roles": ROLE_CODES}
NEVER: Final = -(2**63)
_COUNTERS: Final = (Role.TOTAL_COUNT, Role.GOOD_COUNT, Role.REJECT_COUNT, Role.ENERGY_KWH)


class RollupStore(Store, Protocol):
    """A store that keeps roll-up rows (``SqliteStore``)."""

    def rollup_claim(self, end_ns: int) -> int: ...
    def put_rollups(self, rows: Sequence[RollupRow], token: int) -> int: ...
    def rollups(self, assets: Sequence[str], start_ns: int, end_ns: int) -> list[RollupRow]: ...


#: a row's (hour_ns, reach_ns, data, extra), as the read path takes them
Cell = tuple[int, int, bytes, "str | None"]
#: the suffix of a day row's key (``day_slot``)
DAY: Final = ":day"
#: the suffix of a day-sum row's key (``sum_slot``): the Σ of a local day's hour rows
SUM: Final = ":sum"
#: the suffix of a head row's key (``head_slot``): a local day's start up to its first hour
#: whose row serves a window starting at midnight, as part of such a window
HEAD: Final = ":head"


def day_slot(day_end_ns: int) -> int:
    """Where a day row of the local day ending at ``day_end_ns`` is kept: ``hour_ns`` of its
    last hour + 1 ns, so that the store's rule (a change at t drops the rows whose hour ends
    after t) drops it with any change before the day's end, and no hour row is replaced."""
    return day_end_ns - HOUR_NS + 1


def sum_slot(day_end_ns: int) -> int:
    """Where the day-sum row of the local day ending at ``day_end_ns`` is kept (as
    ``day_slot``, 1 ns after it: every change that drops one of the day's hour rows drops it)."""
    return day_end_ns - HOUR_NS + 2


def head_slot(day_end_ns: int) -> int:
    """Where the head row of the local day ending at ``day_end_ns`` is kept (as ``day_slot``,
    2 ns after it: dropped by any change before the day's end, hence before the head's)."""
    return day_end_ns - HOUR_NS + 3


def sum_cells(cells: Sequence[Cell], key: str, asset: str, day_end_ns: int) -> RollupRow:
    """The day-sum row of consecutive hour rows ``cells`` (a local day's, every hour): the
    elements and evidence counts summed as ``decode_cells`` sums them (``_FIRST`` fields
    taken from the first hour), the first hour's tags with their prior samples, the hours'
    implausible increases in order; ``reach_ns`` the hours' earliest (the sum serves a
    window only when every hour does). A run of such rows decodes as the run of their
    hours does, up to the order of the float additions (~1e-16 relative)."""
    values = np.frombuffer(b"".join(c[2] for c in cells), "<f8").reshape(len(cells), -1)
    total = values.sum(axis=0)
    for i, f in enumerate(ELEMENT_FIELDS):
        if f in _FIRST:
            total[i] = values[0, i]
    doc: dict[str, Any] = {"tags": json.loads(cells[0][3] or "{}").get("tags", [])}
    imp = [x for c in cells if c[3] and '"implausible"' in c[3] for x in json.loads(c[3])["implausible"]]
    if imp:
        doc["implausible"] = imp
    return RollupRow(asset, sum_slot(day_end_ns), key + SUM, min(int(c[1]) for c in cells),
                     np.ascontiguousarray(total, "<f8").tobytes(), json.dumps(doc))


def local_day_edges(tz: str, start_ns: int, end_ns: int) -> list[tuple[int, int]]:
    """(start, end) of every whole local calendar day of ``tz`` inside [start_ns, end_ns)."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    d = datetime.fromtimestamp(start_ns // 1_000_000_000, UTC).astimezone(zone).date()
    out: list[tuple[int, int]] = []
    while True:
        a = datetime.combine(d, datetime.min.time(), tzinfo=zone)
        b = datetime.combine(d + timedelta(days=1), datetime.min.time(), tzinfo=zone)
        a_ns, b_ns = int(a.timestamp()) * 1_000_000_000, int(b.timestamp()) * 1_000_000_000
        if b_ns > end_ns:
            return out
        if a_ns >= start_ns:
            out.append((a_ns, b_ns))
        d += timedelta(days=1)


def keyed_rows(store: Store, keys: Mapping[str, str], start_ns: int, end_ns: int,
               min_reach_ns: int | None = None, *, dense: bool = False) -> dict[str, list[Cell]]:
    """asset -> its rows of key ``keys[asset]`` in [start_ns, end_ns) with ``reach_ns >=
    min_reach_ns``, by hour: the store's ``rollups_keyed`` (one statement per asset, plain
    tuples) where it has one, else filtered from ``rollups`` (the three-method protocol).
    ``dense``: hour rows (most rows of the span), which a store may read another way
    (``SqliteStore.rollups_dense``: by its primary key)."""
    fast = getattr(store, "rollups_dense", None) if dense else None
    if not callable(fast):
        fast = getattr(store, "rollups_keyed", None)
    if callable(fast):
        got: dict[str, list[Cell]] = fast(keys, start_ns, end_ns, min_reach_ns)
        return got
    out: dict[str, list[Cell]] = {}
    for r in store.rollups(list(keys), start_ns, end_ns):  # type: ignore[attr-defined]
        if r.key == keys.get(r.asset) and (min_reach_ns is None or r.reach_ns >= min_reach_ns):
            out.setdefault(r.asset, []).append((r.hour_ns, r.reach_ns, r.data, r.extra))
    for v in out.values():
        v.sort(key=lambda c: c[0])
    return out


def has_rollups(store: Store) -> bool:
    return all(callable(getattr(store, m, None)) for m in ("rollup_claim", "put_rollups", "rollups"))


def rollup_key(settings: Settings, asset: Asset, tags: dict[Role, TagRecord]) -> str:
    """What a row of ``asset`` was computed by and from (see the module docstring)."""
    basis = {
        "fields": ELEMENT_FIELDS, "row": ROW_LAYOUT,
        "calendar": settings.calendar.model_dump(mode="json"),
        "pru": asset.ideal_cycle_time_s, "default_mode": asset.default_mode, "control": asset.control,
        "counter_rate_factor": settings.kpi.counter_rate_factor,
        "counter_stamp_tolerance_s": settings.kpi.counter_stamp_tolerance_s,
        # by path, not by the store's id of it: ids are local to a store (the central one
        # numbers the tags it discovers anew) and a path already names one tag
        "tags": sorted([r.value, t.path, t.device, sorted((t.enum or {}).items())]
                       for r, t in tags.items()),
    }
    digest = hashlib.sha256(json.dumps(basis, sort_keys=True, default=str).encode()).hexdigest()
    return f"{ALGORITHM_VERSION}#{digest[:16]}"


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a window: its elements and the evidence that adds up over parts."""

    elements: TimeElements
    tags: tuple[TagEvidence, ...]
    implausible: tuple[tuple[str, int, int, float, float], ...]


def encode(part: Part, key: str, asset: str, hour_ns: int, reach: int,
           more: dict[str, Any] | None = None) -> RollupRow:
    """A row: ``data`` holds the elements (``ELEMENT_FIELDS``, float64, None as NaN) and then
    each tag's samples and bad samples; ``extra`` (JSON) each tag's role (its code in
    ``ROLE_CODES``) and prior sample, and the implausible increases when there are any.

    A tag's path and id are not kept: the row's key covers the asset's tags by role and path
    (``rollup_key``), so a row is only read with the tags it was computed from, whose records
    the reader has (``decode``; ids are the reading store's own, also for rows another
    gateway wrote to InfluxDB). Tag paths repeated in every row made it ~1.15 KB, more than
    a b-tree page holds: SQLite put each in an overflow page of its own."""
    e = part.elements
    values = [np.nan if getattr(e, f) is None else getattr(e, f) for f in ELEMENT_FIELDS]
    values += [x for t in part.tags for x in (t.samples, t.bad_samples)]
    doc: dict[str, Any] = {"tags": [[_CODE_OF[t.role], t.prior_ns] for t in part.tags]}
    if part.implausible:
        doc["implausible"] = [list(x) for x in part.implausible]
    if more:
        doc.update(more)
    return RollupRow(asset, hour_ns, key, reach, np.array(values, "<f8").tobytes(), json.dumps(doc))


def decode(rows: Sequence[RollupRow], tags: Mapping[Role, TagRecord]) -> Part:
    """Consecutive rows of one asset (one key) as one part: their elements and evidence
    counts summed (numpy, over the rows at once), the prior samples of the first row; each
    tag's path and id from ``tags``, the asset's tags by role (those the key was made of)."""
    return decode_cells([(r.hour_ns, r.reach_ns, r.data, r.extra) for r in rows], tags)


def decode_cells(rows: Sequence[Sequence[Any]], tags: Mapping[Role, TagRecord]) -> Part:
    """``decode`` of rows as (hour_ns, reach_ns, data, extra, ...) tuples."""
    return decode_head(rows, tags)[0]


def _evidence(entries: Sequence[Any], counts: Sequence[float], n: int,
              tags: Mapping[Role, TagRecord]) -> tuple[TagEvidence, ...]:
    """A row's tag evidence: ``entries`` its ``extra``'s ``[role code, prior]`` per tag,
    ``counts`` its values (each tag's samples and bad samples from position ``n``)."""
    try:
        roles = [_ROLE_OF[c] for c, _ in entries]
        return tuple(TagEvidence(t.path, t.tag_id, r, int(counts[n + 2 * k]), int(counts[n + 2 * k + 1]),
                                 None if pr is None else int(pr))
                     for k, (r, t, (_, pr)) in enumerate(zip(roles, map(tags.__getitem__, roles), entries,
                                                             strict=True)))
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"roll-up row's tags {entries!r} (role codes of {ROLE_CODES}) are not of "
                         f"the asset's tags ({', '.join(sorted(r.value for r in tags))}): "
                         f"{type(exc).__name__}: {exc}") from exc


def decode_head(rows: Sequence[Sequence[Any]], tags: Mapping[Role, TagRecord]
                ) -> tuple[Part, dict[str, Any]]:
    """``decode_cells``, and the first row's ``extra`` as parsed (a day row's ``gap_s``)."""
    values = np.frombuffer(b"".join(r[2] for r in rows), "<f8").reshape(len(rows), -1)
    total = values.sum(axis=0).tolist() if len(rows) > 1 else values[0].tolist()
    first = values[0].tolist() if len(rows) > 1 else total
    n = len(ELEMENT_FIELDS)
    vals = total[:n]
    for i in _FIRST_AT:
        vals[i] = first[i]
    kw: dict[str, Any] = {f: None if v != v else (int(v) if is_int else float(v))  # v != v: NaN
                          for f, v, is_int in zip(ELEMENT_FIELDS, vals, _IS_INT, strict=True)}
    head = json.loads(rows[0][3] or "{}")
    evidence = _evidence(head.get("tags", ()), total, n, tags)
    imp: tuple[tuple[str, int, int, float, float], ...] = ()
    # rows with implausible increases are rare: one search of all the rows' extras first
    if '"implausible"' in "\n".join([r[3] or "" for r in rows]):
        imp = tuple((str(r), int(a), int(b), float(x), float(y))
                    for row in rows if row[3] and '"implausible"' in row[3]
                    for r, a, b, x, y in json.loads(row[3])["implausible"])
    return Part(TimeElements(**kw), evidence, imp), head


#: positions in ``ELEMENT_FIELDS`` of the fields taken from a run's first row, and whether each
#: field is an int (``decode_head``)
_FIRST_AT: Final = tuple(i for i, f in enumerate(ELEMENT_FIELDS) if f in _FIRST)
_IS_INT: Final = tuple(f in _INT_FIELDS for f in ELEMENT_FIELDS)


def decode_each(rows: Sequence[Sequence[Any]], tags: Mapping[Role, TagRecord]
                ) -> list[tuple[Part, dict[str, Any]]]:
    """``decode_head([row], tags)`` of every row on its own (rows of one width: one key), from
    one conversion of their data: an assessment decodes each asset's day rows."""
    if not rows:
        return []
    matrix = np.frombuffer(b"".join(r[2] for r in rows), "<f8").reshape(len(rows), -1).tolist()
    n = len(ELEMENT_FIELDS)
    ints = [f in _INT_FIELDS for f in ELEMENT_FIELDS]
    out: list[tuple[Part, dict[str, Any]]] = []
    for row, total in zip(rows, matrix, strict=True):
        kw: dict[str, Any] = {f: None if v != v else (int(v) if i else float(v))  # v != v: NaN
              for f, v, i in zip(ELEMENT_FIELDS, total, ints, strict=False)}
        head = json.loads(row[3] or "{}")
        evidence = _evidence(head.get("tags", ()), total, n, tags)
        imp = tuple((str(r), int(a), int(b), float(x), float(y))
                    for r, a, b, x, y in head.get("implausible", ()))
        out.append((Part(TimeElements(**kw), evidence, imp), head))
    return out


def reach_ns(store: Store, tags: dict[Role, TagRecord], start_ns: int,
             series: Mapping[int, Series] | None = None, read_from_ns: int | None = None) -> int:
    """The earliest instant whose data the part starting at ``start_ns`` (a whole hour or
    a window's edge) depends on, as the module docstring says; ``NEVER`` when it cannot be
    told (a counter's last sample before the part is bad and no good one is near).
    ``series``: the tags' samples read with ``prior`` from ``read_from_ns`` (<= start_ns - 1 h
    or as far back as the caller's window goes), used instead of store reads where they
    suffice. Every counter counts, also one without a sample in the part: a reach that
    skipped it would not be monotone in ``start_ns`` (an idle machine's first hour of
    production reaches back to its last part of the day before), and a window starting at a
    local midnight would then meet hours between usable rows that its head row does not
    cover and that it computes from raw samples back to its start (on the 500 x 30 bench,
    1.4x the CPU of this rule).

    The step samples in force at the part's start do not make it depend on the window's
    start: a window reads them with ``prior`` wherever it starts, and reads the gaps back to
    them (``KpiService.asset_result``, algorithm version 4), so their values and where a
    gap ends their validity are the same for every window."""

    def have(tag: TagRecord, lo: int) -> bool:
        return series is not None and tag.tag_id in series and read_from_ns is not None \
            and read_from_ns <= lo

    reach = start_ns
    for role in _COUNTERS:
        tag = tags.get(role)
        if tag is None:
            continue
        if have(tag, start_ns):  # the same samples, or (from a later read_from_ns) fewer, which
            # can only give a reach before read_from_ns, or NEVER: the caller then reads back
            assert series is not None and read_from_ns is not None
            s = series[tag.tag_id]
            lo, hi = s.ts_ns.searchsorted((max(start_ns - HOUR_NS, read_from_ns), start_ns)).tolist()
            lo = max(lo - 1, 0)
            ts, value, quality = s.ts_ns[lo:hi], s.value[lo:hi], s.quality[lo:hi]
        else:
            r = store.read(tag.tag_id, start_ns - HOUR_NS, start_ns, prior=True)
            ts, value, quality = r.ts_ns, r.value, r.quality
        good = np.flatnonzero((quality < Quality.BAD) & np.isfinite(value))
        if len(good):
            reach = min(reach, int(ts[good[-1]]))
        elif len(ts):  # samples before the part, none of them usable nearby
            return NEVER
    return reach


def hour_rows(service: Any, items: Sequence[tuple[Asset, dict[Role, TagRecord], str, Sequence[int],
                                                  Mapping[int, Series], int]]) -> list[RollupRow]:
    """``KpiService.rollup_rows`` of several assets at once: ``items`` (asset, tags, key,
    hours, series, read_from_ns), the hours whose context (reach) their samples cover
    computed in one ``kpi.batch`` pass over all the assets (the same floats as one by one:
    a part's computation does not depend on the other parts of the batch); where a gap (or
    damaged data) touches the reads of one asset, each asset's parts in a pass of its own;
    an hour the batch leaves (a gap, an implausible counter rise, a reach before
    ``read_from_ns``) one by one (``rollup_row``). The rows in ``items``' order."""
    inputs: list[Any] = []
    owner: list[int] = []
    plans: list[tuple[list[int], dict[int, int]]] = []
    for n, (asset, tags, _, hours, series, lo) in enumerate(items):
        reaches = [reach_ns(service.store, tags, h, series, lo) for h in hours]
        at: dict[int, int] = {}
        for k, (h, r) in enumerate(zip(hours, reaches, strict=True)):
            ctx = h if r == NEVER else r
            if lo <= ctx:
                at[k] = len(inputs)
                inputs.append((asset, tags, h, h + HOUR_NS, ctx,
                               service._part_reads(tags, series, ctx, h + HOUR_NS)))
                owner.append(n)
        plans.append((reaches, at))
    got = _batched(service, inputs, owner)  # owners in order: each one's parts together
    rows: list[RollupRow] = []
    for (asset, tags, key, hours, series, lo), (reaches, at) in zip(items, plans, strict=True):
        for k, h in enumerate(hours):
            j = at.get(k)
            p = None if j is None else got[j]
            rows.append(encode(p, key, asset.path, h, reaches[k]) if p is not None
                        else service.rollup_row(asset, tags, h, key, series, lo))
    return rows


def head_rows(service: Any, heads: Sequence[tuple[Asset, dict[Role, TagRecord], int, int, int, str]]
              ) -> list[RollupRow]:
    """``KpiService.rollup_head_row`` of each of ``heads`` (asset, tags, day start, head
    end, day end, key), computed together (``kpi.batch``: each head the part [day start,
    head end) of a window starting at day start, its tags read once from an hour before);
    where a gap touches the reads, asset by asset, and a head the batch leaves one by one.
    A late write anywhere in a local day drops its head row, so a pass computes a head for
    each asset that one touched, as it computes their hours."""
    inputs: list[Any] = []
    reaches: list[int] = []
    for asset, tags, a, upto, _, _ in heads:
        lo = a - HOUR_NS
        series = service.store.read_many([t.tag_id for t in tags.values()], lo, upto, prior=True)
        reaches.append(reach_ns(service.store, tags, a, series, lo))
        inputs.append((asset, tags, a, upto, a, service._part_reads(tags, series, a, upto)))
    got = _batched(service, inputs, list(range(len(inputs))))
    return [encode(p, key + HEAD, asset.path, head_slot(b), min(r, a), more={"end": upto})
            if p is not None else service.rollup_head_row(asset, tags, a, upto, b, key)
            for (asset, tags, a, upto, b, key), r, p in zip(heads, reaches, got, strict=True)]


def _batched(service: Any, inputs: Sequence[Any], owner: Sequence[int]) -> list[Part | None]:
    """``KpiService._batch_of`` of ``inputs`` (parts of the owners ``owner``, each owner's
    parts together): all in one pass; where a gap (or damaged data) touches the reads, a
    pass per owner; None for a part no pass computed (its caller computes it one by one)."""
    got: list[Part | None] | None = service._batch_of(inputs) if inputs else None
    if got is not None:
        return got
    if len(set(owner)) <= 1:
        return [None] * len(inputs)
    out: list[Part | None] = []
    for n in sorted(set(owner)):
        mine = [x for x, o in zip(inputs, owner, strict=True) if o == n]
        part = service._batch_of(mine)
        out += [None] * len(mine) if part is None else part
    return out


def time_sum(parts: Sequence[TimeElements], window_s: float) -> TimeElements:
    """One unit's elements over consecutive parts of a window: time elements and quantities
    summed, its own flags (``PER_UNIT``) and PRU taken from the first part.

    Each sum is ``sum(<the field of parts[1:]>) + <the field of parts[0]>``, in that order
    (the floats a window's elements have always had); the fields are read once per part
    (``attrgetter``), not once per field and part."""
    head = _FIELDS_OF(parts[0])
    cols = list(zip(*map(_FIELDS_OF, parts[1:]), strict=True)) if len(parts) > 1 else None
    kw: dict[str, Any] = {}
    for i, f in enumerate(ELEMENT_FIELDS):
        if f in _TAKEN:
            kw[f] = head[i]
        elif f == "window_s":
            kw[f] = window_s
        else:
            kw[f] = (sum(cols[i]) if cols is not None else 0) + head[i]
    return TimeElements(**kw)


_FIELDS_OF: Final = attrgetter(*ELEMENT_FIELDS)
#: taken from the first part by ``time_sum``
_TAKEN: Final = PER_UNIT | {"shared_pru_s"}


def tag_sum(parts: Sequence[Part]) -> tuple[TagEvidence, ...]:
    """Per tag, samples and bad samples summed over the parts; the prior of the first."""
    out: list[TagEvidence] = []
    sets = [p.tags for p in parts]
    for i, t in enumerate(parts[0].tags):
        mine = [s[i] for s in sets]
        out.append(TagEvidence(t.path, t.tag_id, t.role, sum(x.samples for x in mine),
                               sum(x.bad_samples for x in mine), t.prior_ns))
    return tuple(out)


def _head_end(day_start: int, day_end: int, by_hour: Mapping[int, Cell]) -> int | None:
    """Where a local day's head ends: the first hour of the day whose row serves a window
    starting at ``day_start`` (``reach_ns >= day_start``), ``day_end`` (the day's end, or
    the closed hours' end in the day in progress) when none does; None when an hour before
    it has no row (its reach is not known yet)."""
    h = -(-day_start // HOUR_NS) * HOUR_NS
    while h + HOUR_NS <= day_end:
        c = by_hour.get(h)
        if c is None:
            return None
        if c[1] >= day_start:
            return h
        h += HOUR_NS
    return day_end


class RollupMaintainer:
    """Computes the closed hours that have no current row, in a background thread.

    The change feed listener only lowers a watermark (never computes on the writer thread);
    the thread scans, from the watermark to the newest closed hour (``settle_s`` after its
    end by ``clock_ns``), the hours of ``chunk_assets`` assets at a time for a missing or
    stale row, and computes them in groups of at most ``chunk_hours`` asset-hours (claim,
    snapshot, compute in one ``kpi.batch`` pass, put: ``store.put_rollups`` leaves out rows
    a concurrent change touched, which the listener then reports), then the day rows of the
    local days (``calendar.timezone``) that end in the span, ``chunk_days`` at a time. The
    first scan starts ``backfill_days`` before now (None: at the first hour of the store),
    and never before the store's first sample. In its thread it computes at
    most ``duty`` of the time, down to ``busy_duty`` while the store's writer is busy
    (``_yield``)."""

    def __init__(
        self, service: Any, *, settle_s: float = 300.0, chunk_hours: int = 64,
        interval_s: float = 30.0, backfill_days: float | None = 400.0,
        clock_ns: Callable[[], int] = time.time_ns, duty: float = 0.5, chunk_days: int = 8,
        chunk_assets: int = 64, busy_duty: float = 0.05,
    ) -> None:
        self.service = service
        self.store: RollupStore = service.store
        self.settle_ns = int(settle_s * 1e9)
        self.chunk_hours = chunk_hours
        self.chunk_days = chunk_days
        #: assets scanned together (``_assets``): what a pass holds at once stays bounded
        self.chunk_assets = chunk_assets
        self.interval_s = interval_s
        #: the share of time the thread may compute (``_yield``); a direct ``run_once`` (the
        #: rebuild command, tests) computes without rest
        self.duty = duty
        #: the share while the store's writer is saturated (``_duty_now``): ingest at full
        #: speed (a spool drain, a backfill) keeps >= 0.9 of its rate (issue 12; at 0.1 the
        #: maintainer's CPU was 0.10 of the two threads' with a backlog, and a thread the OS
        #: deschedules while it holds the GIL holds it longer than its CPU time)
        self.busy_duty = min(busy_duty, duty)
        self._writer_at: tuple[float, int] | None = None
        self._threaded = False
        self._clock = clock_ns
        now = clock_ns()
        self._from = NEVER if backfill_days is None else now - int(backfill_days * 86400e9)
        self._backfill_ns = None if backfill_days is None else int(backfill_days * 86400e9)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.computed = 0
        self.passes = 0
        #: the start of the pass in progress (its rows may be missing until it ends), or None
        self._scanning: int | None = None
        #: the store's first sample (no hour before it is computed); None: not known yet
        self._first: int | None = None
        changes = getattr(self.store, "changes", None)
        self._unsubscribe = changes.subscribe(self._changed) if changes is not None else None
        self._thread: threading.Thread | None = None

    def _changed(self, since_ns: int) -> None:
        """On the writer's thread: note where to rescan from; nothing else."""
        with self._lock:
            # the first hour whose rows a change at since_ns may touch (the store drops the
            # rows whose hour ends after it): a live write after the closed hours moves
            # nothing, so the next pass does not scan the hours it left complete again
            self._from = min(self._from, (since_ns - 1) // HOUR_NS * HOUR_NS)
            if since_ns == EVERYTHING:
                self._first = None  # found again: retention may have moved it
            elif self._first is not None:
                self._first = min(self._first, since_ns)  # a backfill before it

    def retarget(self, service: Any) -> None:
        """Compute for ``service`` from the next pass on: the settings in force changed (a
        calendar or asset register supplied through the API, ``api.declared``), so the rows
        have new keys; the next pass rescans from where the first one did."""
        with self._lock:
            self.service = service
            self._from = NEVER if self._backfill_ns is None else self._clock() - self._backfill_ns

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="tierproof-rollups", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        self._threaded = True
        self._duty_now()  # where the writer's time is counted from
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("roll-up maintenance failed; retrying")
            # not woken by writes: a pass every interval_s does whatever they left
            self._stop.wait(self.interval_s)

    def closed_end(self) -> int:
        return (self._clock() - self.settle_ns) // HOUR_NS * HOUR_NS

    def run_once(self) -> int:
        """One pass: compute every missing row of closed hours from the watermark on."""
        with self._lock:
            start, self._from = self._from, self.closed_end()
            self._scanning = start
        try:
            return self._scan(start)
        finally:
            self._scanning = None

    def lag_s(self) -> float | None:
        """Seconds from the oldest closed hour that may still lack its row (not computed yet,
        or dropped by a late write) to the newest closed hour: 0 when every closed hour is
        rolled up. None before the store's first sample is known (nothing to roll up yet).
        Read by ``/metrics``; takes no more than this object's lock."""
        with self._lock:
            low = self._from if self._scanning is None else min(self._from, self._scanning)
        first = self._first
        if first is None:
            return None
        low = max(low, first // HOUR_NS * HOUR_NS)
        return max(0, self.closed_end() - low) / 1e9

    def _scan(self, start: int) -> int:
        end = self.closed_end()
        if self._first is None:  # once (and after a change of everything): ~32 reads
            self._first = self._first_ns()
        if self._first is None:  # no sample yet: scan again from where this pass began
            with self._lock:
                self._from = min(self._from, start)
            return 0
        start = max(start, self._first) // HOUR_NS * HOUR_NS
        if start >= end:
            return 0
        done = 0
        service = self.service
        try:
            by_asset = service._tags_by_asset()
            work = [(a, by_asset[a.path]) for a in service.settings.assets if by_asset.get(a.path)]
            for i in range(0, len(work), self.chunk_assets):
                if self._stop.is_set():
                    raise InterruptedError
                done += self._assets(work[i:i + self.chunk_assets], start, end)
        except BaseException:
            with self._lock:  # what is left is for the next pass (or the next maintainer)
                self._from = min(self._from, start)
            if not self._stop.is_set():  # stopping: not an error
                raise
        self.passes += 1
        return done

    def _first_ns(self) -> int | None:
        return self.service.first_sample_ns(self._clock())

    def _asset(self, asset: Asset, tags: dict[Role, TagRecord], start: int, end: int) -> int:
        """``_assets`` of one asset (``tierproof rollups rebuild`` reports each)."""
        return self._assets([(asset, tags)], start, end) if tags else 0

    def _assets(self, work: Sequence[tuple[Asset, dict[Role, TagRecord]]], start: int, end: int) -> int:
        """The missing rows of ``work``'s assets (each with its tags) in [start, end): hour
        rows, then day rows, then day-sum and head rows, each kind for all the assets at once
        (one read of the rows held, one claim, snapshot and put per group of rows, the hour
        rows of a group computed in one ``kpi.batch`` pass): in a live pass each asset has an
        hour or a few to compute, and per asset those steps cost several times the hour's
        own computation (issue 12, docs/benchmarks.md "Roll-up maintenance during ingest")."""
        service = self.service
        if end <= start or not work:
            return 0
        keys = {asset.path: service.rollup_key(asset, tags) for asset, tags in work}
        held = keyed_rows(self.store, keys, start, end)
        todo: list[tuple[Asset, dict[Role, TagRecord], str, list[int]]] = []
        for asset, tags in work:
            have = {c[0] for c in held.get(asset.path, ())}
            hours = [h for h in range(start, end, HOUR_NS) if h not in have]
            if hours:
                todo.append((asset, tags, keys[asset.path], hours))
        done = 0
        for group in self._hour_groups(todo):
            if self._stop.is_set():
                break
            t0 = time.monotonic()
            token = self.store.rollup_claim(max(chunk[-1] for *_, chunk in group) + HOUR_NS)
            with service.snapshot():
                items = []
                for asset, tags, key, chunk in group:
                    # every tag read once for the chunk, from an hour before it
                    lo = chunk[0] - HOUR_NS
                    series = self.store.read_many([t.tag_id for t in tags.values()], lo,
                                                  chunk[-1] + HOUR_NS, prior=True)
                    items.append((asset, tags, key, chunk, series, lo))
                rows = hour_rows(service, items)
            done += self.store.put_rollups(rows, token)
            self._yield(time.monotonic() - t0)
        # a store that cannot drop a day row with the hours a late write touches (InfluxDB:
        # its voids are points on the hour grid) keeps none; the assessment then sums hours
        if not getattr(self.store, "keeps_day_rows", True) or self._stop.is_set():
            self.computed += done
            return done
        # the local days that end in the scanned span (and after it started): day rows
        days = [(a, b) for a, b in local_day_edges(service.settings.calendar.timezone,
                                                   start - 2 * 86400 * 10**9, end) if b > start]
        if days:
            dkeys = {path: key + DAY for path, key in keys.items()}
            held_days = keyed_rows(self.store, dkeys, day_slot(days[0][1]), day_slot(days[-1][1]) + 1)
            todo_days: list[tuple[Asset, dict[Role, TagRecord], int, int]] = []
            for asset, tags in work:
                have_days = {c[0] for c in held_days.get(asset.path, ())}
                todo_days += [(asset, tags, a, b) for a, b in days if day_slot(b) not in have_days]
            for i in range(0, len(todo_days), self.chunk_days):
                if self._stop.is_set():
                    break
                t0 = time.monotonic()
                dchunk = todo_days[i:i + self.chunk_days]
                token = self.store.rollup_claim(max(b for *_, b in dchunk) + 1)
                with service.snapshot():
                    drows = [service.rollup_day_row(asset, tags, a, b, keys[asset.path])
                             for asset, tags, a, b in dchunk]
                done += self.store.put_rollups(drows, token)
                self._yield(time.monotonic() - t0)
        if not self._stop.is_set():
            done += self._sums_and_heads(work, keys, days, end)
        self.computed += done
        return done

    def _hour_groups(self, todo: Sequence[tuple[Asset, dict[Role, TagRecord], str, list[int]]]
                     ) -> Iterator[list[tuple[Asset, dict[Role, TagRecord], str, list[int]]]]:
        """``todo``'s hours (asset, tags, key, hours) in groups of at most ``chunk_hours``
        asset-hours, each asset's hours cut into runs of at most ``chunk_hours``: the
        samples a group reads stay what one asset's chunk read before (a backfill computes
        an asset per group, a live pass every asset's new hour in one)."""
        group: list[tuple[Asset, dict[Role, TagRecord], str, list[int]]] = []
        size = 0
        for asset, tags, key, hours in todo:
            for i in range(0, len(hours), self.chunk_hours):
                chunk = hours[i:i + self.chunk_hours]
                if group and size + len(chunk) > self.chunk_hours:
                    yield group
                    group, size = [], 0
                group.append((asset, tags, key, chunk))
                size += len(chunk)
        if group:
            yield group

    def _sums_and_heads(self, work: Sequence[tuple[Asset, dict[Role, TagRecord]]],
                        keys: Mapping[str, str], days: list[tuple[int, int]], end: int) -> int:
        """The day-sum and head rows of ``days`` (closed local days) and the head row of the
        local day in progress at ``end`` (the closed hours' end), where not held as they
        would be now, for every asset of ``work`` (``keys``: asset -> its rows' key): a
        day-sum row where every hour of the day has a row (hour-aligned days only); a head
        row up to where the day's hour rows show the first one serving a window from
        midnight (``_head_end``) -- for the day in progress, up to ``end`` while none does
        yet, so it is computed again as hours close until one does. All from the hour rows
        as read in one snapshot after the claim, so that a change since leaves them out
        (``put_rollups``)."""
        service = self.service
        tz = service.settings.calendar.timezone
        todo_days = list(days)
        open_day = [(a, b) for a, b in local_day_edges(tz, end - 2 * 86_400 * 10**9, end + 2 * 86_400 * 10**9)
                    if a < end < b]
        todo_days += [d for d in open_day if d not in todo_days]
        if not todo_days:
            return 0
        lo, hi = day_slot(todo_days[0][1]), head_slot(todo_days[-1][1]) + 1
        sums = {path: {c[0] for c in cells} for path, cells in
                keyed_rows(self.store, {p: k + SUM for p, k in keys.items()}, lo, hi).items()}
        heads = {path: {c[0]: int(json.loads(c[3] or "{}").get("end", 0)) for c in cells}
                 for path, cells in keyed_rows(self.store, {p: k + HEAD for p, k in keys.items()},
                                               lo, hi).items()}
        done = 0
        for i in range(0, len(todo_days), self.chunk_days):
            if self._stop.is_set():
                break
            t0 = time.monotonic()
            dchunk = todo_days[i:i + self.chunk_days]
            # what the chunk's rows rest on ends by the closed hours' end: a day-sum row is
            # computed for a closed day only, and a head row ends at or before ``end`` (the
            # day in progress's head too). Claiming its day's end instead told the store
            # that every live write until the local midnight touches a row: each took the
            # invalidation transaction (BEGIN, DELETE, COMMIT instead of one autocommit
            # INSERT) and dropped the head row, computed again in the next pass (issue 12,
            # docs/benchmarks.md "Roll-up maintenance during ingest")
            token = self.store.rollup_claim(min(dchunk[-1][1], end) + 1)
            rows: list[RollupRow] = []
            todo_heads: list[tuple[Asset, dict[Role, TagRecord], int, int, int, str]] = []
            with service.snapshot():
                hours = keyed_rows(self.store, keys, dchunk[0][0], min(dchunk[-1][1], end))
                for asset, tags in work:
                    key = keys[asset.path]
                    by_hour = {c[0]: c for c in hours.get(asset.path, ())}
                    have_sums = sums.get(asset.path, set())
                    have_heads = heads.get(asset.path, {})
                    for a, b in dchunk:
                        grid = list(range(a, b, HOUR_NS))
                        have = [by_hour[h] for h in grid if h in by_hour]
                        if b <= end and sum_slot(b) not in have_sums and a % HOUR_NS == 0 \
                                and b % HOUR_NS == 0 and len(have) == len(grid) and grid:
                            rows.append(sum_cells(have, key, asset.path, b))
                        upto = _head_end(a, min(b, end), by_hour)
                        if upto is not None and upto > a and have_heads.get(head_slot(b)) != upto:
                            todo_heads.append((asset, tags, a, upto, b, key))
                rows += head_rows(service, todo_heads)
            if rows:
                done += self.store.put_rollups(rows, token)
            self._yield(time.monotonic() - t0)
        return done

    def _yield(self, busy_s: float) -> None:
        """In the background thread: rest so that the thread computes at most ``_duty_now()``
        of the time (it holds the GIL while it computes, which the ingest path then waits for)."""
        if self._threaded and self.duty < 1.0:
            self._stop.wait(busy_s * (1.0 / self._duty_now() - 1.0))

    def _duty_now(self) -> float:
        """``duty`` less the share of the time since the last call that the store's writer
        spent writing (``SqliteStore.write_ns``), never below ``busy_duty``: while ingest
        runs at full speed (a spool drain, a backfill, the roll-up benchmark) every slice of
        the interpreter the maintainer takes is one the writer waits for, and the ratio of
        ingest with roll-ups to without is about 1 - (busy share of the maintainer) x (the
        share of its work that holds the GIL, ~0.5-0.7); a live plant's writer is idle
        nearly all the time, and a backlog (a re-roll, the first backfill) is caught up at
        ``duty``. A store without the counter: ``duty``."""
        written = getattr(self.store, "write_ns", None)
        if not isinstance(written, int):
            return self.duty
        now, last = time.monotonic(), self._writer_at
        self._writer_at = (now, written)
        if last is None or now <= last[0]:
            return self.duty
        share = min(max((written - last[1]) / 1e9 / (now - last[0]), 0.0), 1.0)
        return max(self.busy_duty, self.duty * (1.0 - share))

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
