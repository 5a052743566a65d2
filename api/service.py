"""Reads the store and feeds the KPI core: the only place where KPIs meet I/O."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np

from config.errors import KpiError, NotFoundError
from config.fingerprint import config_fingerprint
from config.settings import Asset, Settings
from config.signals import CANONICAL, Role, canonical_code
from config.times import iso, to_ns
from kpi import (
    ALGORITHM_VERSION,
    AssetEvidence,
    CounterDelta,
    Kpis,
    Step,
    TagEvidence,
    TimeElements,
    UnitSignals,
    asset_gaps,
    counter_increase,
    gap_intervals,
    group_by_line,
    missing_roles,
    pbt_inside,
    planned_intervals,
    roll_up,
    time_elements,
)
from kpi.batch import PartSignals, batch_elements, evidence_counts
from kpi.calendar import clip
from store.base import RollupRow, Store, TagRecord
from store.batch import Series

from .declared import config_versions
from .readahead import ReadAhead
from .rollups import (
    DAY,
    ELEMENT_FIELDS,
    HEAD,
    HOUR_NS,
    NEVER,
    SUM,
    Cell,
    Part,
    day_slot,
    decode_cells,
    decode_each,
    encode,
    has_rollups,
    head_slot,
    keyed_rows,
    local_day_edges,
    reach_ns,
    rollup_key,
    sum_slot,
    tag_sum,
    time_sum,
)

_NS: Final = 1_000_000_000
#: the fewest assets whose roll-up rows ``results`` reads (and holds) at once, and whose raw
#: parts it reads ahead and computes together
_ROW_BATCH: Final = 50
#: the most roll-up rows ``results`` holds at once (estimated from the window: 50 assets' month
#: of hour rows, the bound of _ROW_BATCH assets in a store without day-level rows)
_ROWS_AT_ONCE: Final = 50 * 30 * 24
#: the most hours of raw stretches (asset-hours between and around the usable rows) whose
#: samples ``results`` reads ahead at once beyond _ROW_BATCH assets: 50 assets' whole days
_RAW_HOURS_AT_ONCE: Final = 50 * 24
#: a span of a window read from a row: (start, reach_ns, data, extra, end) -- an hour row
#: (end = start + 1 h), a day-sum row (a local day) or a head row (midnight to its end)
Span = tuple[int, int, bytes, "str | None", int]
#: the order in which ``asset_result`` reads the roles (its evidence lists follow it)
_ROLE_ORDER = (Role.STATE, Role.MODE, Role.CHANNEL_MODE, Role.TOTAL_COUNT, Role.GOOD_COUNT,
               Role.REJECT_COUNT, Role.ENERGY_KWH)
_STEP_ROLES: Final = frozenset(_ROLE_ORDER[:3])
_COUNTER_ROLES: Final = frozenset(_ROLE_ORDER[3:])


def _read_ids(tags: Mapping[Role, TagRecord], roles: frozenset[Role] = frozenset(_ROLE_ORDER)) -> list[int]:
    """The ids of ``tags``' tags of ``roles`` that ``asset_result`` reads (not an analog or
    status tag: read ahead, their samples would be read for nothing)."""
    return [t.tag_id for r, t in tags.items() if r in roles]


#: an asset-day's row as ``KpiService.day_vectors`` gives it: (elements vector, tags, good
#: samples, gap_s)
DayVector = tuple["np.ndarray[Any, np.dtype[np.float64]]", int, int, float]


def _gap_s(extra: str | None) -> float:
    """A day row's ``gap_s`` (its ``extra``'s last key, ``rollup_day_row``) without parsing
    the whole JSON document: ``"gap_s": `` cannot occur inside a JSON string (its quotes
    would be escaped there)."""
    if not extra:
        return 0.0
    i = extra.rfind('"gap_s": ')
    if i < 0:
        return 0.0
    j = i + 9
    # the value ends at the next "," or "}" (or the text's end), found in C, not char by char
    ends = [k for k in (extra.find(",", j), extra.find("}", j)) if k >= 0]
    return float(extra[j:min(ends)] if ends else extra[j:])


@dataclass(frozen=True, slots=True)
class AssetResult:
    asset: Asset
    elements: TimeElements
    evidence: AssetEvidence
    #: with roll-ups on: (whole hours of the window, of them read from roll-up rows); the
    #: others were computed from raw samples (rows missing, stale, or of another key)
    hours: tuple[int, int] | None = None


class KpiService:
    """Computes ISO 22400 KPIs of assets, lines and the plant from the store."""

    def __init__(self, settings: Settings, store: Store, *, rollups: bool | None = None,
                 declared_versions: dict[str, dict[str, Any]] | None = None) -> None:
        """``rollups`` (default ``kpi.rollups``, true): read whole hours (and an assessment's
        whole local days) from the store's roll-ups where it keeps them (``api.rollups``);
        False: every window from raw samples. ``declared_versions``: the version of each
        declared item in ``settings`` (``api.declared``; default: the configuration's, 0)."""
        self.settings = settings
        self.declared_versions = declared_versions or config_versions()
        self._store = store
        #: this thread's read-ahead view of the store while ``results`` computes (``store``),
        #: and the raw parts its outermost ``snapshot`` computed (``parts``)
        self._ahead = threading.local()
        want = settings.kpi.rollups if rollups is None else rollups
        self.use_rollups = bool(want) and has_rollups(store)
        self._plans: dict[tuple[int, int], tuple[Any, Any]] = {}
        #: instant -> the first local midnight after it (``_pieces``), None: none in 3 days
        self._midnights: dict[int, int | None] = {}
        self._keys: dict[tuple[object, ...], str] = {}
        #: of the file's meaning, not of the runtime overrides (config.fingerprint)
        self.fingerprint = config_fingerprint(settings)

    @property
    def store(self) -> Store:
        """The store; inside ``results``, on that thread, the view of it that serves the reads
        read ahead (``api.readahead``)."""
        view: Store | None = getattr(self._ahead, "view", None)
        return self._store if view is None else view

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A block in which every store read of this thread sees one state of the store
        (``Store.snapshot``): one ``kpis`` call, or one whole assessment.

        The outermost block of a thread also keeps the raw parts that ``_part`` computes
        (``_cached_part``): an assessment's windows share edges (the current window and its
        first local day start at the same instant; the current window, the history span and
        the last local day end in the same partial hour), and within one state of the store
        the same part is the same computation. Dropped when the block ends, as is the tag
        table it read (``_tags_by_asset``)."""
        if getattr(self._ahead, "parts", None) is not None:
            with self.store.snapshot():
                yield
            return
        with self.store.snapshot():
            self._ahead.parts = {}
            try:
                yield
            finally:
                self._ahead.parts = self._ahead.by_asset = self._ahead.keys = None

    @contextmanager
    def sharing_rows(self) -> Iterator[None]:
        """Inside a ``snapshot``: the roll-up rows that ``results`` reads are kept until the
        block ends and served again to every later read of the same or a narrower range
        (``_keyed``). An assessment's windows read the same rows several times: the current
        window's day-sum rows again within the history span's, the hour rows at the edges
        of its local days again for the window and the span (the same hours, the same
        state of the store). Memory: the rows the block reads (~75 MB for 500 machines x 30
        days); a single ``kpis`` call, which reads each row once, does not keep them."""
        if getattr(self._ahead, "parts", None) is None or getattr(self._ahead, "rows", None) is not None:
            yield  # outside a snapshot (rows could change between reads), or nested
            return
        self._ahead.rows = {}
        try:
            yield
        finally:
            self._ahead.rows = None

    def _keyed(self, keys: Mapping[str, str], start_ns: int, end_ns: int,
               min_reach_ns: int | None = None, *, dense: bool = False) -> dict[str, list[Cell]]:
        """``keyed_rows``, from the rows kept by ``sharing_rows`` where they cover
        [start_ns, end_ns) (then filtered by ``min_reach_ns`` here, as the store would)."""
        kept: dict[tuple[str, str], list[tuple[int, int, list[Cell]]]] | None = getattr(
            self._ahead, "rows", None)
        if kept is None:
            return keyed_rows(self.store, keys, start_ns, end_ns, min_reach_ns, dense=dense)
        lo = NEVER if min_reach_ns is None else min_reach_ns
        out: dict[str, list[Cell]] = {}
        missing: dict[str, str] = {}
        for path, key in keys.items():
            for a, b, cells in kept.get((path, key), ()):
                if a <= start_ns and end_ns <= b:
                    got = [c for c in cells if start_ns <= c[0] < end_ns and c[1] >= lo]
                    if got:
                        out[path] = got
                    break
            else:
                missing[path] = key
        if missing:
            fresh = keyed_rows(self.store, missing, start_ns, end_ns, dense=dense)
            for path, key in missing.items():
                cells = fresh.get(path, [])
                kept.setdefault((path, key), []).append((start_ns, end_ns, cells))
                got = [c for c in cells if c[1] >= lo]
                if got:
                    out[path] = got
        return {p: out[p] for p in keys if p in out}

    def first_sample_ns(self, end_ns: int) -> int | None:
        """The time of the store's first sample (any tag) before ``end_ns``, or None: where
        the history held begins (the assessment's stable operation, the roll-ups' start).

        The store's ``first_ts`` where it has one; else a bisection over whole seconds with
        ``read_many(..., prior=True)`` (does any tag hold a sample at or before p?), then one
        read of that second: about 32 reads whatever the length of the history, instead of
        reading it all.
        """
        store = self.store
        fast = getattr(store, "first_ts", None)
        if callable(fast):  # the store knows it (SqliteStore: its chunks' and rows' t_min)
            first = fast()
            return int(first) if first is not None and first < end_ns else None
        ids = [t.tag_id for t in store.tags()]
        if not ids:
            return None

        def held_by(p_ns: int) -> bool:
            return any(len(s.ts_ns) for s in store.read_many(ids, p_ns, p_ns + 1, prior=True).values())

        if end_ns <= 0 or not held_by(end_ns - 1):  # no sample before end_ns
            return None
        hi = (end_ns - 1) // _NS + 1  # held_by(hi s) holds, as held_by(end_ns - 1) does
        lo = -1  # held_by(lo) is False: nothing before the epoch
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if held_by(mid * _NS):
                hi = mid
            else:
                lo = mid
        got = store.read_many(ids, max(hi - 1, 0) * _NS, hi * _NS + 1, prior=False)
        firsts = [int(s.ts_ns[0]) for s in got.values() if len(s.ts_ns)]
        return min(firsts) if firsts else hi * _NS

    def _tags_by_asset(self) -> dict[str, dict[Role, TagRecord]]:
        """asset -> role -> tag, from one read of the store's tag table (one per outermost
        ``snapshot``: within it the table does not change)."""
        held: dict[str, dict[Role, TagRecord]] | None = getattr(self._ahead, "by_asset", None)
        if held is not None:
            return held
        out = self._read_tags()
        if getattr(self._ahead, "parts", None) is not None:  # inside a snapshot
            self._ahead.by_asset = out
            self._ahead.keys = {}  # rollup_key of its assets
        return out

    def _read_tags(self) -> dict[str, dict[Role, TagRecord]]:
        roles = set(Role)
        out: dict[str, dict[Role, TagRecord]] = {}
        for t in self.store.tags():
            if t.role in roles:
                out.setdefault(t.asset, {}).setdefault(Role(t.role), t)
        return out

    @staticmethod
    def _lut(tag: TagRecord) -> dict[int, int] | None:
        role = Role(tag.role)
        if tag.enum is None or role not in CANONICAL:
            return None
        return {int(raw): canonical_code(role, name) for raw, name in tag.enum.items()}

    def asset_result(
        self, asset: Asset, start_ns: int, end_ns: int, tags: dict[Role, TagRecord] | None = None,
        *, context_start_ns: int | None = None, series: Mapping[int, Series] | None = None,
        raw: bool = False, cells: list[Span] | None = None,
    ) -> AssetResult:
        """One asset's elements and evidence; ``tags`` (role -> tag) saves a store read.

        ``context_start_ns`` (<= ``start_ns``): the part [start_ns, end_ns) of the window that
        starts there, as that window's computation counts it (``kpi.time_elements``): the
        parts of a window at any cuts add up to it. Reads, gaps and the plan then reach back
        to the window's start; the evidence is the part's own (samples in it, the one before).
        ``series`` (tag_id -> samples read with ``prior`` from at or before the context's
        start): read from there instead of the store. ``raw``: from raw samples even where
        roll-ups are on; ``cells``: the window's roll-up rows of the asset, already read
        (``results`` reads those of every asset at once)."""
        if tags is None:
            tags = self._tags_by_asset().get(asset.path, {})
        whole: tuple[int, int] | None = None
        if context_start_ns is None and self.use_rollups and tags and not raw:
            rolled = self._rolled(asset, start_ns, end_ns, tags, cells)
            if rolled is not None:
                return rolled
            whole = (max(0, end_ns // HOUR_NS - -(-start_ns // HOUR_NS)), 0)
        ctx = start_ns if context_start_ns is None else context_start_ns
        tag_evidence: list[TagEvidence] = []

        def read(role: Role) -> Series | None:
            """The role's samples in the window and the one before; notes the tag's evidence."""
            tag = tags.get(role)
            if tag is None:
                return None
            pre = series.get(tag.tag_id) if series is not None else None
            if pre is None:
                s = self.store.read(tag.tag_id, ctx, end_ns, prior=True)
            else:  # the same samples, sliced: pre holds every sample from the one before ctx
                i = max(int(np.searchsorted(pre.ts_ns, ctx, "left")) - 1, 0)
                j = int(np.searchsorted(pre.ts_ns, end_ns, "left"))
                s = pre.cut(i, j)
            # the part's own evidence: from the last sample before its start
            lo = max(int(np.searchsorted(s.ts_ns, start_ns, "left")) - 1, 0) if ctx < start_ns else 0
            tag_evidence.append(
                TagEvidence.of(tag.path, tag.tag_id, role, s.ts_ns[lo:], s.quality[lo:], start_ns,
                               end_ns)
            )
            return s

        #: the earliest step sample read (the one in force at ctx, if any): the gaps are read
        #: back to it, since a gap between it and ctx ends its validity (``kpi.combine``)
        since = [ctx]

        def step(role: Role) -> Step | None:
            s = read(role)
            if s is not None and len(s.ts_ns):
                since.append(int(s.ts_ns[0]))
            return None if s is None else Step.from_samples(
                s.ts_ns, s.value, s.quality, self._lut(tags[role])
            )

        pru = asset.ideal_cycle_time_s
        # the most parts a second the machine can make: faster rises are counter glitches
        max_per_s = self.settings.kpi.counter_rate_factor / pru if pru else None
        implausible: list[tuple[str, int, int, float, float]] = []

        def count(role: Role) -> CounterDelta | None:
            s = read(role)
            if s is None:
                return None
            parts = role in (Role.TOTAL_COUNT, Role.GOOD_COUNT, Role.REJECT_COUNT)
            c = counter_increase(
                s.ts_ns, s.value, s.quality, start_ns, end_ns, max_per_s if parts else None,
                self.settings.kpi.counter_stamp_tolerance_s,
            )
            implausible.extend((role.value, *x) for x in c.implausible)
            return c

        state, mode = step(Role.STATE), step(Role.MODE)
        # no mode tag: the configured default_mode, if any, is the mode over the whole window
        # (a mode tag wins; check-config warns when both are given)
        default_mode = asset.default_mode if mode is None else None
        sig = UnitSignals(
            state=state,
            mode=mode,
            channel=step(Role.CHANNEL_MODE),
            total=count(Role.TOTAL_COUNT),
            good=count(Role.GOOD_COUNT),
            reject=count(Role.REJECT_COUNT),
            energy=count(Role.ENERGY_KWH),
            ideal_cycle_s=asset.ideal_cycle_time_s,
            manual_only=asset.control in ("manual", "none"),
            default_mode=None if default_mode is None else canonical_code(Role.MODE, default_mode),
        )
        # the gaps after the reads: a damaged chunk a read just found is one of them. Read
        # back to the step samples in force at ctx: a gap after such a sample and before ctx
        # makes its value unknown until the tag's next sample, as in any window that starts
        # before the gap (the parts of a window at any cuts add up to it, also when each part
        # is a window of its own, as the assessment's local days are)
        devices = sorted({t.device for t in tags.values()})
        gaps = asset_gaps(
            (g for d in devices for g in self.store.gaps(d, min(since), end_ns)), asset.path
        )
        planned = self._planned(ctx, end_ns)
        elements = time_elements(sig, start_ns, end_ns, planned, gap_intervals(gaps, end_ns),
                                 context_start_ns=context_start_ns)
        # the part's own gaps (those overlapping it) and plan
        gaps = [g for g in gaps if g.end_ns is None or g.end_ns > start_ns]
        if ctx < start_ns:
            planned = clip(planned, start_ns, end_ns)
        evidence = AssetEvidence(
            tags=tuple(tag_evidence),
            missing_roles=tuple(missing_roles(set(tags) | ({Role.MODE} if default_mode else set()))),
            gaps=tuple(gaps),
            planned_intervals=len(planned[0]),
            ideal_cycle_time_s=asset.ideal_cycle_time_s,
            implausible_increases=tuple(implausible),
            default_mode=default_mode,
        )
        return AssetResult(asset, elements, evidence, whole)

    # ------------------------------------------------------------------ hourly roll-ups

    def rollup_row(
        self, asset: Asset, tags: dict[Role, TagRecord], hour_ns: int, key: str,
        series: Mapping[int, Series] | None = None, read_from_ns: int | None = None,
    ) -> RollupRow:
        """The roll-up row of ``asset``'s hour [hour_ns, +1 h): the hour as part of every
        window starting at or before its ``reach_ns`` (``api.rollups``). ``series``: its
        tags' samples read with ``prior`` from ``read_from_ns``, used where they reach."""
        reach = reach_ns(self.store, tags, hour_ns, series, read_from_ns)
        ctx = hour_ns if reach == NEVER else reach
        usable = series is not None and read_from_ns is not None and read_from_ns <= ctx
        r = self.asset_result(asset, hour_ns, hour_ns + HOUR_NS, tags, context_start_ns=ctx,
                              series=series if usable else None)
        return encode(Part(r.elements, r.evidence.tags, r.evidence.implausible_increases), key,
                      asset.path, hour_ns, reach)

    def rollup_rows(
        self, asset: Asset, tags: dict[Role, TagRecord], hours: Sequence[int], key: str,
        series: Mapping[int, Series], read_from_ns: int,
    ) -> list[RollupRow]:
        """``rollup_row`` of each of ``hours`` (``series``: the tags' samples read with
        ``prior`` from ``read_from_ns``), the hours whose context (reach) the samples cover
        computed together (``kpi.batch``: the same floats as one by one); an hour it leaves (a
        gap, an implausible counter rise, a reach before ``read_from_ns``) one by one."""
        reaches = [reach_ns(self.store, tags, h, series, read_from_ns) for h in hours]
        ctxs = [h if r == NEVER else r for h, r in zip(hours, reaches, strict=True)]
        todo = [k for k, c in enumerate(ctxs) if read_from_ns <= c]
        parts: dict[int, Part] = {}
        if todo:
            got = self._batch_of([(asset, tags, hours[k], hours[k] + HOUR_NS, ctxs[k],
                                   self._part_reads(tags, series, ctxs[k], hours[k] + HOUR_NS))
                                  for k in todo])
            if got is not None:
                parts = {k: p for k, p in zip(todo, got, strict=True) if p is not None}
        return [encode(parts[k], key, asset.path, h, reaches[k]) if k in parts
                else self.rollup_row(asset, tags, h, key, series, read_from_ns)
                for k, h in enumerate(hours)]

    def _part(self, asset: Asset, tags: dict[Role, TagRecord], window_start: int, a: int, b: int) -> Part:
        """[a, b) computed from raw samples as part of the window starting at window_start,
        reading back only as far as the part depends on (its reach) when that is enough:
        every tag read once, from an hour before the part. Inside a ``snapshot`` a part
        already computed for a window it serves is taken as it is (``_cached_part``)."""
        cache: dict[tuple[str, int, int], list[tuple[int, bool, Part]]] | None = getattr(
            self._ahead, "parts", None)
        got = self._cached_part(asset.path, window_start, a, b)
        if got is not None:
            return got
        ctx, by_reach, series = self._part_input(tags, window_start, a, b)
        r = self.asset_result(asset, a, b, tags, context_start_ns=ctx, series=series)
        part = Part(r.elements, r.evidence.tags, r.evidence.implausible_increases)
        if cache is not None:
            cache.setdefault((asset.path, a, b), []).append((ctx, by_reach, part))
        return part

    def _part_input(self, tags: dict[Role, TagRecord], window_start: int, a: int, b: int
                    ) -> tuple[int, bool, Mapping[int, Series] | None]:
        """What ``_part`` computes [a, b) from: its context, whether that is its reach, and
        the samples read for it (None: ``asset_result`` reads them)."""
        if a <= window_start:
            return window_start, False, None
        r0 = max(a - HOUR_NS, window_start)
        # the counters from a (with the sample before it): a counter's part counts only the
        # increases dated in [a, b), the first from its last good sample before a, so when
        # that is the sample before a (nearly always) its earlier samples change nothing, and
        # that sample is its reach; where one is bad (reach_ns: NEVER), read as far back as
        # reach_ns looks (an hour), as before. The steps from r0: the one in force at the
        # context, which lies before a
        steps, counters = _read_ids(tags, _STEP_ROLES), _read_ids(tags, _COUNTER_ROLES)
        series = {**self.store.read_many(steps, r0, b, prior=True),
                  **self.store.read_many(counters, a, b, prior=True)}
        reach = reach_ns(self.store, tags, a, series, a)
        if reach == NEVER and counters and r0 < a:
            series.update(self.store.read_many(counters, r0, b, prior=True))
            reach = reach_ns(self.store, tags, a, series, r0)
        by_reach = reach != NEVER and reach >= window_start
        ctx = reach if by_reach else window_start
        if by_reach and ctx < r0:
            # the step tags from the context; the counters as read: a counter counts only
            # increases dated in [a, b), from its last good sample before a, which a
            # reach other than NEVER says is in them (samples before it change nothing)
            series = {**series, **self.store.read_many(_read_ids(tags, _STEP_ROLES), ctx, b)}
        return ctx, by_reach, series if ctx >= r0 or by_reach else None

    def _batch_parts(self, batch: list[Asset], by_asset: dict[str, dict[Role, TagRecord]],
                     cells: dict[str, list[Span]], start_ns: int, end_ns: int) -> None:
        """The raw parts that ``_rolled`` will compute for ``batch`` (those of assets whose
        window roll-ups carry, not computed yet in this snapshot), computed together
        (``kpi.batch``) into the snapshot's parts (``_cached_part``), where ``_part`` then
        finds them. Only where no gap (nor damaged data) touches the batch's reads; a part
        ``kpi.batch`` leaves (an implausible counter rise) is computed by ``_part``."""
        cache: dict[tuple[str, int, int], list[tuple[int, bool, Part]]] | None = getattr(
            self._ahead, "parts", None)
        if cache is None:
            return
        todo: list[tuple[Asset, dict[Role, TagRecord], int, int, int, bool,
                        dict[Role, Series]]] = []
        inputs: list[tuple[Asset, dict[Role, TagRecord], int, int, int, bool,
                           Mapping[int, Series] | None]] = []
        for asset in batch:
            rows = cells.get(asset.path, [])
            tags = by_asset.get(asset.path, {})
            if not tags:
                continue
            stretches: list[tuple[int, int]] = []  # without rows: the whole window
            at = start_ns
            for c in rows:
                if at < c[0]:
                    stretches.append((at, c[0]))
                at = c[4]
            if at < end_ns:
                stretches.append((at, end_ns))
            for x, y in stretches:
                for a, b in self._pieces(start_ns, x, y):
                    if self._cached_part(asset.path, start_ns, a, b) is not None:
                        continue
                    ctx, by_reach, series = self._part_input(tags, start_ns, a, b)
                    inputs.append((asset, tags, a, b, ctx, by_reach, series))
        # the parts that read their samples from the store (a context before what was read
        # for them: the window's start) and are not held by the view, read ahead together
        # (one read_ranges, not three statements per tag)
        view = getattr(self._ahead, "view", None)
        if isinstance(view, ReadAhead):
            ranges: dict[tuple[int, int], list[int]] = {}
            for _, tags, _, b, ctx, _, series in inputs:
                if series is None:
                    ranges.setdefault((ctx, b), []).extend(
                        t for t in _read_ids(tags) if not view.holds(t, ctx, b))
            if any(ranges.values()):
                view.fetch_all(ranges)
        for asset, tags, a, b, ctx, by_reach, series in inputs:
            todo.append((asset, tags, a, b, ctx, by_reach, self._part_reads(tags, series, ctx, b)))
        if not todo:
            return
        parts = self._batch_of([(asset, tags, a, b, ctx, got) for asset, tags, a, b, ctx, _, got in todo])
        if parts is None:
            return  # asset_result reads the gaps, part by part
        for (asset, _, a, b, ctx, by_reach, _), part in zip(todo, parts, strict=True):
            if part is not None:
                cache.setdefault((asset.path, a, b), []).append((ctx, by_reach, part))

    def _part_reads(self, tags: dict[Role, TagRecord], series: Mapping[int, Series] | None,
                    ctx: int, b: int) -> dict[Role, Series]:
        """Each role's samples that ``asset_result`` reads for a part ending at ``b`` with the
        context ``ctx``: sliced from ``series`` (read with ``prior`` from at or before ctx)
        as it slices them, else read from the store."""
        got: dict[Role, Series] = {}
        for role in _ROLE_ORDER:
            tag = tags.get(role)
            if tag is None:
                continue
            pre = series.get(tag.tag_id) if series is not None else None
            if pre is None:
                got[role] = self.store.read(tag.tag_id, ctx, b, prior=True)
            else:  # as asset_result slices it (one search of both bounds)
                i, j = pre.ts_ns.searchsorted((ctx, b)).tolist()
                i = max(i - 1, 0)
                got[role] = pre.cut(i, j)
        return got

    def _batch_of(self, todo: Sequence[tuple[Asset, dict[Role, TagRecord], int, int, int,
                                             dict[Role, Series]]]) -> list[Part | None] | None:
        """The parts (asset, tags, a, b, ctx, reads by ``_part_reads``) computed together
        (``kpi.batch``): each as ``asset_result(asset, a, b, tags, context_start_ns=ctx)``
        gives its elements, tag evidence and (none) implausible increases; None for a part
        ``kpi.batch`` leaves (an implausible counter rise). None for all when a gap (or
        damaged data) touches the reads: ``asset_result`` then computes them one by one."""
        # the gaps asset_result would read: back to each part's first step sample
        lo = min(min([ctx, *(int(s.ts_ns[0]) for r, s in got.items()
                             if r in _STEP_ROLES and len(s.ts_ns))])
                 for _, _, _, _, ctx, got in todo)
        hi = max(b for _, _, _, b, _, _ in todo)
        devices = sorted({t.device for _, tags, *_ in todo for t in tags.values()})
        # every device's gaps at once first (none, usually: then none of these devices')
        if self.store.gaps(None, lo, hi) and any(self.store.gaps(d, lo, hi) for d in devices):
            return None
        plan_lo = min(ctx for _, _, _, _, ctx, _ in todo)
        planned = self._planned(plan_lo, hi)

        def step(r: Role, tags: dict[Role, TagRecord], got: dict[Role, Series]) -> Any:
            s = got.get(r)
            return None if s is None else ((s.ts_ns, s.value, s.quality), self._lut(tags[r]))

        def count(r: Role, got: dict[Role, Series]) -> Any:
            s = got.get(r)
            return None if s is None else (s.ts_ns, s.value, s.quality)

        rate = self.settings.kpi.counter_rate_factor
        inputs = [PartSignals(
            a, b, ctx, step(Role.STATE, tags, got), step(Role.MODE, tags, got),
            step(Role.CHANNEL_MODE, tags, got), count(Role.TOTAL_COUNT, got),
            count(Role.GOOD_COUNT, got), count(Role.REJECT_COUNT, got), count(Role.ENERGY_KWH, got),
            asset.ideal_cycle_time_s,
            rate / asset.ideal_cycle_time_s if asset.ideal_cycle_time_s else None,
            manual_only=asset.control in ("manual", "none"),
            default_mode=(canonical_code(Role.MODE, asset.default_mode)
                          if Role.MODE not in tags and asset.default_mode is not None else None),
            stamp_tolerance_s=self.settings.kpi.counter_stamp_tolerance_s,
        ) for asset, tags, a, b, ctx, got in todo]
        # each tag's evidence (TagEvidence.of of the part's samples), one role at a time
        starts = np.array([t[2] for t in todo], np.int64)
        ends = np.array([t[3] for t in todo], np.int64)
        counts = {}
        for role in _ROLE_ORDER:
            sel = [None if (sr := t[5].get(role)) is None else (sr.ts_ns, sr.quality) for t in todo]
            if any(v is not None for v in sel):
                counts[role] = evidence_counts(sel, starts, ends)
        out: list[Part | None] = []
        for k, ((_, tags, _, _, _, got), e) in enumerate(
                zip(todo, batch_elements(inputs, planned), strict=True)):
            if e is None:
                out.append(None)
                continue
            evidence = tuple(
                TagEvidence(tags[r].path, tags[r].tag_id, r, counts[r][0][k], counts[r][1][k],
                            counts[r][2][k]) for r in got)
            out.append(Part(e, evidence, ()))
        return out

    def _pieces(self, window_start: int, a: int, b: int) -> list[tuple[int, int]]:
        """A raw stretch [a, b) of the window starting at ``window_start``, cut at the first
        local midnight inside it when it is the window's first: that piece is then the
        computation of the window's first local day, which an assessment asks for on its
        own (``_cached_part`` shares it; the parts of a window at any cuts add up to it).
        Later stretches share nothing by a cut: they are left whole."""
        if a != window_start:
            return [(a, b)]
        # the first local midnight after a (every asset of a window asks for the same one)
        if a in self._midnights:
            d = self._midnights[a]
        else:
            first = local_day_edges(self.settings.calendar.timezone, a + 1, a + 3 * 86_400 * _NS)
            d = first[0][0] if first else None
            if len(self._midnights) >= 4096:
                self._midnights.clear()
            self._midnights[a] = d
        cut = [d] if d is not None and d < b else []
        return list(itertools.pairwise([a, *cut, b]))

    def _cached_part(self, path: str, window_start: int, a: int, b: int) -> Part | None:
        """The part [a, b) of ``path`` as part of the window starting at ``window_start``, if
        this snapshot computed it already: one computed with the context ``window_start``
        itself, or one computed with the part's own reach as context (then it is the part of
        every window starting at or before that reach, as a roll-up row is)."""
        cache = getattr(self._ahead, "parts", None)
        if cache is None:
            return None
        for ctx, by_reach, part in cache.get((path, a, b), ()):
            if ctx == window_start or (by_reach and ctx >= window_start):
                return part
        return None

    def _planned(self, start_ns: int, end_ns: int) -> tuple[Any, Any]:
        """``planned_intervals`` of the calendar, remembered: every asset of a request (and
        every part of its windows) asks for the same ones."""
        got = self._plans.get((start_ns, end_ns))
        if got is None:
            got = planned_intervals(self.settings.calendar, start_ns, end_ns)
            if len(self._plans) >= 4096:
                self._plans.clear()
            self._plans[(start_ns, end_ns)] = got
        return got

    def rollup_key(self, asset: Asset, tags: dict[Role, TagRecord]) -> str:
        """``api.rollups.rollup_key``, remembered per asset and tag set (a request asks it
        for every asset); inside a snapshot, per asset of its tag table without rebuilding the
        tag set's description (``_tags_by_asset``: the table does not change within it)."""
        held = getattr(self._ahead, "by_asset", None)
        memo: dict[str, tuple[Asset, str]] | None = getattr(self._ahead, "keys", None)
        if held is not None and memo is not None and held.get(asset.path) is tags:
            mine = memo.get(asset.path)
            if mine is not None and mine[0] is asset:
                return mine[1]
            key = self._rollup_key(asset, tags)
            memo[asset.path] = (asset, key)
            return key
        return self._rollup_key(asset, tags)

    def _rollup_key(self, asset: Asset, tags: dict[Role, TagRecord]) -> str:
        ck = (asset.path, *sorted((r.value, t.tag_id, t.path, t.device,
                                   tuple(sorted((t.enum or {}).items()))) for r, t in tags.items()))
        got = self._keys.get(ck)
        if got is None:
            got = rollup_key(self.settings, asset, tags)
            if len(self._keys) >= 65536:
                self._keys.clear()
            self._keys[ck] = got
        return got

    def _window_cells(self, assets: list[Asset], by_asset: dict[str, dict[Role, TagRecord]],
                      start_ns: int, end_ns: int) -> dict[str, list[Span]]:
        """The rows that serve the window, of every asset, by start: the day-sum rows of its
        whole local days (where the store keeps them and they serve it: ``reach_ns >=
        start_ns``), the usable hour rows of its other whole hours, and, for a window that
        starts on a local midnight, the day's head row when it ends before the first usable
        hour row and by the window's end. One read of each kind for the assets that need the
        same hours (``api.rollups.keyed_rows``)."""
        h0 = -(-start_ns // HOUR_NS) * HOUR_NS
        h1 = end_ns // HOUR_NS * HOUR_NS
        keys = {a.path: self.rollup_key(a, by_asset[a.path]) for a in assets if by_asset.get(a.path)}
        if h1 <= h0 or not keys:
            return {}
        tz = self.settings.calendar.timezone
        days = [(a, b) for a, b in local_day_edges(tz, h0, h1) if a % HOUR_NS == 0 and b % HOUR_NS == 0]
        daily = self._keeps_days()
        sums: dict[str, list[Cell]] = {}
        if daily and days:
            sums = self._keyed({p: k + SUM for p, k in keys.items()},
                              sum_slot(days[0][1]), sum_slot(days[-1][1]) + 1, start_ns)
        day_of = {sum_slot(b): (a, b) for a, b in days}
        out: dict[str, list[Span]] = {}
        # the hours no day-sum covers, per asset; assets with the same ones read together
        wanted: dict[tuple[tuple[int, int], ...], dict[str, str]] = {}
        for path, key in keys.items():
            spans: list[Span] = []
            holes: list[tuple[int, int]] = []
            at = h0
            for c in sums.get(path, ()):
                if c[0] not in day_of:
                    continue
                a, b = day_of[c[0]]
                if at < a:
                    holes.append((at, a))
                spans.append((a, c[1], c[2], c[3], b))
                at = b
            if at < h1:
                holes.append((at, h1))
            out[path] = spans
            wanted.setdefault(tuple(holes), {})[path] = key
        for missing, group in wanted.items():
            for a, b in missing:
                for path, cells in self._keyed(group, a, b, start_ns, dense=True).items():
                    out[path] += [(c[0], c[1], c[2], c[3], c[0] + HOUR_NS) for c in cells]
        for spans in out.values():
            spans.sort(key=lambda x: x[0])
        first = local_day_edges(tz, start_ns, start_ns + 2 * 86_400 * _NS)
        if daily and first and first[0][0] == start_ns:  # the window starts on a local midnight
            b = first[0][1]
            heads = self._keyed({p: k + HEAD for p, k in keys.items()}, head_slot(b),
                               head_slot(b) + 1)
            for path, cells in heads.items():
                c = cells[0]
                end = int(json.loads(c[3] or "{}")["end"])
                spans = out[path]
                if end <= end_ns and (not spans or spans[0][0] >= end):
                    spans.insert(0, (start_ns, c[1], c[2], c[3], end))
        return out

    def rollup_day_row(self, asset: Asset, tags: dict[Role, TagRecord], day_start: int,
                       day_end: int, key: str) -> RollupRow:
        """The day row of ``asset``'s local day [day_start, day_end): the day computed on its
        own from raw samples (exactly what ``results`` of that day gives without roll-ups),
        with the hours of planned busy time its device gaps hold (``extra["gap_s"]``, the
        assessment's reporting rule); kept at ``day_slot(day_end)`` under ``key + DAY``."""
        lo = day_start - HOUR_NS
        series = self.store.read_many([t.tag_id for t in tags.values()], lo, day_end, prior=True)
        reach = reach_ns(self.store, tags, day_start, series, lo)
        r = self.asset_result(asset, day_start, day_end, tags, raw=True, series=series)
        gap_s = pbt_inside(self._planned(day_start, day_end), gap_intervals(r.evidence.gaps, day_end))
        return encode(Part(r.elements, r.evidence.tags, r.evidence.implausible_increases),
                      key + DAY, asset.path, day_slot(day_end), min(reach, day_start),
                      more={"gap_s": gap_s})

    def rollup_head_row(self, asset: Asset, tags: dict[Role, TagRecord], day_start: int,
                        head_end: int, day_end: int, key: str) -> RollupRow:
        """The head row of ``asset``'s local day [day_start, day_end): [day_start, head_end)
        as part of a window starting at day_start (what ``_part`` computes for such a
        window's first raw stretch), ``head_end`` the first hour whose row serves that window
        (``api.rollups._head_end``); kept at ``head_slot(day_end)`` under ``key + HEAD``, its
        end in ``extra["end"]``."""
        r = self.asset_result(asset, day_start, head_end, tags, context_start_ns=day_start)
        reach = reach_ns(self.store, tags, day_start)
        return encode(Part(r.elements, r.evidence.tags, r.evidence.implausible_increases),
                      key + HEAD, asset.path, head_slot(day_end), min(reach, day_start),
                      more={"end": head_end})

    def day_rows(self, assets: list[Asset], days: list[tuple[int, int]]
                 ) -> dict[int, dict[str, tuple[TimeElements, tuple[TagEvidence, ...], float]]]:
        """Of the local days ``days`` (start, end), every day row held for ``assets``: day
        start -> asset -> (elements, tag evidence, gap_s). Read in one pass; an asset-day
        without a current row is absent (the caller computes it)."""
        if not self.use_rollups or not days:
            return {}
        start_of, got = self._day_cells(assets, days)
        by_asset = self._tags_by_asset()  # as _day_cells read it (held inside a snapshot)
        out: dict[int, dict[str, tuple[TimeElements, tuple[TagEvidence, ...], float]]] = {}
        for asset, cells in got.items():
            mine = [c for c in cells if c[0] in start_of]
            for c, (part, head) in zip(mine, decode_each(mine, by_asset[asset]), strict=True):
                out.setdefault(start_of[c[0]], {})[asset] = (part.elements, part.tags,
                                                             float(head.get("gap_s", 0.0)))
        return out

    def _day_cells(self, assets: list[Asset], days: list[tuple[int, int]]
                   ) -> tuple[dict[int, int], dict[str, list[Cell]]]:
        """The day rows' cells of ``assets`` over the local days ``days``, read in one pass:
        (day slot -> day start, asset -> its cells)."""
        if not self._keeps_days():
            return {}, {}
        by_asset = self._tags_by_asset()
        keys = {a.path: self.rollup_key(a, by_asset[a.path]) + DAY for a in assets if by_asset.get(a.path)}
        start_of = {day_slot(e): s for s, e in days}
        return start_of, keyed_rows(self.store, keys, min(start_of), max(start_of) + 1)

    def _keeps_days(self) -> bool:
        """Whether the store keeps day, day-sum and head rows (``api.rollups``). InfluxDB does
        not (``InfluxStore.keeps_day_rows``: a late write voids the hour points it makes
        stale, not a day's): such rows found there anyway (written by a gateway before
        ``SpooledStore`` told it so) are not read, since nothing voided them."""
        return bool(getattr(self.store, "keeps_day_rows", True))

    def day_vectors(self, assets: list[Asset], days: list[tuple[int, int]]
                    ) -> dict[int, dict[str, DayVector]]:
        """``day_rows`` without building an object per asset-day: day start -> asset ->
        (its elements as a float64 vector in ``ELEMENT_FIELDS`` order, None as NaN; its tags'
        count and good samples; ``gap_s``). One read of every asset's day rows, one
        conversion of each asset's rows to a matrix; an assessment sums the vectors of a day
        in one numpy pass (``api.assessment``). An asset-day without a current row is absent."""
        if not self.use_rollups or not days:
            return {}
        start_of, got = self._day_cells(assets, days)
        n = len(ELEMENT_FIELDS)
        out: dict[int, dict[str, DayVector]] = {}
        for asset, cells in got.items():
            mine = [c for c in cells if c[0] in start_of]
            if not mine:
                continue
            m = np.frombuffer(b"".join(c[2] for c in mine), "<f8").reshape(len(mine), -1)
            counts = m[:, n::2]  # per tag: samples, then bad samples
            good = (counts.sum(axis=1) - m[:, n + 1::2].sum(axis=1)).tolist()
            ntags = counts.shape[1]
            for c, vec, g in zip(mine, m[:, :n], good, strict=True):
                out.setdefault(start_of[c[0]], {})[asset] = (vec, ntags, int(g), _gap_s(c[3]))
        return out

    def _rolled(
        self, asset: Asset, start_ns: int, end_ns: int, tags: dict[Role, TagRecord],
        cells: list[Span] | None = None,
    ) -> AssetResult | None:
        """The window as Σ of its whole hours' roll-ups (those usable for it) and raw parts
        for the rest, the first stretch cut at the first local midnight (``_pieces``); a
        window without a usable row is its raw parts alone. ``cells``: its rows, if read."""
        if cells is None:
            cells = self._window_cells([asset], {asset.path: tags}, start_ns, end_ns).get(asset.path, [])
        parts: list[Part] = []
        at = start_ns
        run: list[Span] = []  # consecutive usable rows, decoded at once
        for c in cells:
            h = c[0]
            if at < h:
                if run:
                    parts.append(decode_cells(run, tags))
                    run = []
                parts += [self._part(asset, tags, start_ns, a, b) for a, b in self._pieces(start_ns, at, h)]
            run.append(c)
            at = c[4]
        if run:
            parts.append(decode_cells(run, tags))
        if at < end_ns:
            parts += [self._part(asset, tags, start_ns, a, b) for a, b in self._pieces(start_ns, at, end_ns)]
        elements = time_sum([p.elements for p in parts], (end_ns - start_ns) / 1e9)
        devices = sorted({t.device for t in tags.values()})
        gaps = asset_gaps(
            (g for d in devices for g in self.store.gaps(d, start_ns, end_ns)), asset.path
        )
        default_mode = asset.default_mode if Role.MODE not in tags else None
        order = {r.value: i for i, r in enumerate(_ROLE_ORDER)}
        implausible = sorted((x for p in parts for x in p.implausible), key=lambda x: order[x[0]])
        evidence = AssetEvidence(
            tags=tag_sum(parts),
            missing_roles=tuple(missing_roles(set(tags) | ({Role.MODE} if default_mode else set()))),
            gaps=tuple(gaps),
            planned_intervals=len(self._planned(start_ns, end_ns)[0]),
            ideal_cycle_time_s=asset.ideal_cycle_time_s,
            implausible_increases=tuple(implausible),
            default_mode=default_mode,
        )
        whole_hours = max(0, end_ns // HOUR_NS - -(-start_ns // HOUR_NS))
        # the whole hours rows served (a day-sum row serves its day's, a head row the hours
        # from the window's start to its end)
        h0 = -(-start_ns // HOUR_NS) * HOUR_NS
        served = sum((c[4] - (c[0] if c[0] > h0 else h0)) // HOUR_NS for c in cells)
        return AssetResult(asset, elements, evidence, (whole_hours, min(served, whole_hours)))

    def short_windows(self, assets: list[Asset], windows: list[tuple[int, int]],
                      chunk_ns: int = 86_400 * _NS) -> dict[str, list[TimeElements]]:
        """asset -> its elements over each of ``windows`` (sorted, disjoint, each an hour at
        most: no whole hour but possibly its own, whose row is usable only when it is the
        window's own computation), each window computed from raw samples on its own, as
        ``results`` computes a window without a usable row. Each asset's tags are read ahead
        once per ``chunk_ns`` of windows (memory: a chunk of one asset), not once per
        window."""
        out: dict[str, list[TimeElements]] = {}
        with self.snapshot():
            by_asset = self._tags_by_asset()
            for a in assets:
                tags = by_asset.get(a.path, {})
                ids = [t.tag_id for t in tags.values()]
                got: list[TimeElements] = []
                i = 0
                while i < len(windows):
                    lo = windows[i][0]
                    j = i
                    while j < len(windows) and windows[j][1] - lo <= chunk_ns:
                        j += 1
                    j = max(j, i + 1)
                    view = ReadAhead(self._store)
                    view.fetch(ids, lo, windows[j - 1][1])
                    self._ahead.view = view
                    try:
                        got += [self.asset_result(a, s, e, tags, raw=True).elements
                                for s, e in windows[i:j]]
                    finally:
                        self._ahead.view = None
                    i = j
                out[a.path] = got
        return out

    def assets_for(self, asset: str | None, line: str | None) -> list[Asset]:
        assets = self.settings.assets
        if asset is not None:
            assets = [a for a in assets if a.path == asset]
            if not assets:
                raise NotFoundError(f"no asset {asset!r}; GET /api/v1/assets lists them")
        if line is not None:
            assets = [a for a in assets if a.line == line]
            if not assets:
                raise NotFoundError(
                    f"no line {line!r}; a line is site/area/line, e.g. "
                    f"{self.settings.assets[0].line if self.settings.assets else 'site/area/line'}"
                )
        return assets

    def results(self, start_ns: int, end_ns: int, assets: list[Asset] | None = None) -> list[AssetResult]:
        """Elements and evidence of ``assets`` (default: every asset of the register) over
        [start_ns, end_ns), from one read of the tag table."""
        with self.snapshot():  # every asset's reads from the same data
            by_asset = self._tags_by_asset()
            chosen = self.settings.assets if assets is None else assets
            out: list[AssetResult] = []
            # the rows of as many assets at a time as hold ~_ROWS_AT_ONCE of them (a month
            # of 500 assets' hour rows is ~360,000 tuples, which need not be held at once);
            # their raw parts read ahead and computed together in groups of at least
            # _ROW_BATCH assets, more while their raw stretches stay within
            # _RAW_HOURS_AT_ONCE (per-batch costs, ~60 numpy and SQL steps, then amortise
            # over more assets: a window's edges are short)
            rows = self._rows_per_asset(start_ns, end_ns)
            step = max(_ROW_BATCH, _ROWS_AT_ONCE // rows)
            for i in range(0, len(chosen), step):
                cells = (self._window_cells(chosen[i:i + step], by_asset, start_ns, end_ns)
                         if self.use_rollups else {})
                for batch in self._raw_groups(chosen[i:i + step], cells, start_ns, end_ns):
                    mine = {a.path: cells[a.path] for a in batch if a.path in cells}
                    self._batch(batch, by_asset, mine, start_ns, end_ns, out)
            return out

    def _rows_per_asset(self, start_ns: int, end_ns: int) -> int:
        """The most roll-up rows ``_window_cells`` can give an asset of the window: its whole
        hours, or, where the store keeps day-level rows, a row per local day and the hours
        of its first and last day."""
        hours = max(1, (end_ns - start_ns) // HOUR_NS + 1)
        if getattr(self.store, "keeps_day_rows", True):
            return max(1, min(hours, hours // 24 + 2 * 24 + 1))
        return hours

    @staticmethod
    def _raw_groups(assets: list[Asset], cells: dict[str, list[Span]], start_ns: int,
                    end_ns: int) -> list[list[Asset]]:
        """``assets`` in consecutive groups of at least _ROW_BATCH, a group growing while the
        hours its assets' raw stretches are read ahead over (``_read_ahead``: the window
        outside their usable rows, the step tags from the row before; an asset without rows
        is read on its own, one at a time) stay within _RAW_HOURS_AT_ONCE."""
        groups: list[list[Asset]] = []
        group: list[Asset] = []
        raw = 0.0
        for a in assets:
            spans = cells.get(a.path)
            mine = 0.0
            if spans:
                # each raw stretch from where _read_ahead reads its step tags (after a row:
                # the row's reach, an hour back at least), as if every tag were read from there
                at, lo = start_ns, start_ns
                for b, row in [*((c[0], c) for c in spans), (end_ns, None)]:
                    if at < b:
                        mine += b - min(lo, max(at - HOUR_NS, start_ns))
                    if row is not None:
                        at, lo = row[4], max(min(int(row[1]), row[0]), start_ns)
                mine /= HOUR_NS
            if len(group) >= _ROW_BATCH and raw + mine > _RAW_HOURS_AT_ONCE:
                groups.append(group)
                group, raw = [], 0.0
            group.append(a)
            raw += mine
        if group:
            groups.append(group)
        return groups

    def _batch(self, batch: list[Asset], by_asset: dict[str, dict[Role, TagRecord]],
               cells: dict[str, list[Span]], start_ns: int, end_ns: int, out: list[AssetResult]
               ) -> None:
        """``results`` of one group of assets (``_raw_groups``), appended to ``out``."""
        view = self._read_ahead(batch, by_asset, cells, start_ns, end_ns)
        view.fetch_gaps(start_ns, end_ns)  # _rolled's reads of each asset's gaps
        self._ahead.view = view
        try:
            if cells:
                self._batch_parts(batch, by_asset, cells, start_ns, end_ns)
            for a in batch:
                tags = by_asset.get(a.path, {})
                if not cells.get(a.path) and self._uncached(a.path, start_ns, start_ns, end_ns):
                    # from raw samples: its whole window
                    view.forget(start_ns, end_ns)
                    view.fetch(_read_ids(tags), start_ns, end_ns)
                out.append(self.asset_result(a, start_ns, end_ns, tags, cells=cells.get(a.path)))
        finally:
            self._ahead.view = None

    def _read_ahead(self, batch: list[Asset], by_asset: dict[str, dict[Role, TagRecord]],
                    cells: dict[str, list[Span]], start_ns: int, end_ns: int) -> ReadAhead:
        """A view of the store holding what ``_rolled`` will read of every asset of ``batch``
        whose window roll-ups carry (``api.readahead``): the samples of each raw part
        (``_part``) -- the start up to the first usable row, an hour without one, the end
        after the last -- from as far back as the part usually reaches: an hour before it, its
        step tags from the row's ``reach_ns`` too when that is earlier (a part whose own reach
        lies before both reads the rest from the store); the start is read from the window's
        start. All in one request where the store reads many ranges at once
        (``read_ranges``), else one ``read_many`` per range. Parts are short (the rows carry
        the rest), so a batch's are held at once; an asset computed from raw samples is read
        ahead by ``results``, its whole window, one asset at a time. A part this snapshot
        has computed already (``_cached_part``) is not read again."""
        view = ReadAhead(self._store)
        ranges: dict[tuple[int, int], list[int]] = {}
        for asset in batch:
            rows = cells.get(asset.path)
            if not rows:
                continue
            tags = by_asset.get(asset.path, {})
            steps, counters = _read_ids(tags, _STEP_ROLES), _read_ids(tags, _COUNTER_ROLES)
            at, last = start_ns, None
            # each raw part [at, b): before each row, and after the last (the rows follow one
            # another mostly: only where one does not is there a part)
            for b, after in itertools.chain(((c[0], c) for c in rows), ((end_ns, None),)):
                if at < b and self._uncached(asset.path, start_ns, at, b):
                    # after a (day-sum) row: its first hour's reach, before its last hour's
                    # (conservative); at the window's start, the start
                    lo = start_ns if last is None else max(min(int(last[1]), last[0]), start_ns)
                    # as _part reads: every tag from an hour back, the steps also from the
                    # reach when that is before (at the window's start: both from there)
                    back = max(at - HOUR_NS, start_ns)
                    ranges.setdefault((min(lo, back), b), []).extend(steps)
                    ranges.setdefault((at, b), []).extend(counters)
                if after is not None:
                    at, last = after[4], after
        view.fetch_all(ranges)
        return view

    def _uncached(self, path: str, window_start: int, a: int, b: int) -> bool:
        """Whether a piece of the raw stretch [a, b) is still to compute (``_pieces``)."""
        return any(self._cached_part(path, window_start, x, y) is None
                   for x, y in self._pieces(window_start, a, b))

    def kpis(
        self, start: datetime, end: datetime, asset: str | None = None, line: str | None = None,
        *, evidence: bool = True,
    ) -> dict[str, Any]:
        """KPIs per asset, per line and for the selection, with their evidence (``evidence``
        False: without it, as the assessment answers)."""
        if end <= start:
            raise KpiError(
                f"the window is empty: to ({end.isoformat()}) is not after from ({start.isoformat()})"
            )
        start_ns, end_ns = to_ns(start), to_ns(end)
        results = self.results(start_ns, end_ns, self.assets_for(asset, line))
        return {
            "window": {"from": iso(start_ns), "to": iso(end_ns)},
            "algorithm_version": ALGORITHM_VERSION,
            "config_fingerprint": self.fingerprint,
            **self.entries([(r.asset.path, r.elements, r.evidence.as_dict(iso) if evidence else None,
                             r.hours) for r in results]),
        }

    @classmethod
    def entries(cls, per_asset: Sequence[tuple[str, TimeElements, dict[str, Any] | None,
                                               tuple[int, int] | None]]) -> dict[str, Any]:
        """The ``assets``, ``lines`` and ``total`` of a ``kpis`` answer from each asset's
        (path, elements, evidence or None, whole hours), in register order (the order of the
        sums): also what an assessment whose assets were computed in several processes
        answers (``api.assessment``)."""
        elements = {p: e for p, e, _, _ in per_asset}
        return {
            "assets": {p: cls._entry(e, ev, hours) for p, e, ev, hours in per_asset},
            "lines": {p: cls._entry(e) for p, e in group_by_line(elements).items()},
            "total": cls._entry(roll_up(elements.values())),
        }

    def total(self, start_ns: int, end_ns: int) -> TimeElements:
        """The elements of every asset of the register over [start_ns, end_ns), summed: the
        ``total`` of ``kpis`` without building its per-asset answer."""
        return roll_up(r.elements for r in self.results(start_ns, end_ns))

    @staticmethod
    def _entry(e: TimeElements, evidence: dict[str, Any] | None = None,
               hours: tuple[int, int] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = dict(Kpis.of(e).as_dict())
        out["elements"] = e.as_dict()
        if evidence is not None:
            out["evidence"] = evidence
        if hours is not None:  # says which whole hours came from roll-ups, and which did not
            out["rollups"] = {"whole_hours": hours[0], "from_rollups": hours[1],
                              "from_raw_samples": hours[0] - hours[1]}
        return out
