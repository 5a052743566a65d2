"""KPIs read from hourly roll-ups equal the raw computation (issue 12, roll-ups).

The demo's backfilled SQLite store, hardened at hour edges (``test_hour_parts.harden``: a
counter glitch, a reset, a bad counter sample, a device gap), its closed hours rolled up by
``RollupMaintainer``; then for random windows and assets the service with roll-ups gives
the raw service's elements (1e-9 relative) and the very same evidence; late data drop the
hours they touch, the answer stays equal, and the next pass computes them again.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from dataclasses import fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.gateway import tag_records
from api.rollups import HOUR_NS, RollupMaintainer, local_day_edges
from api.service import KpiService
from config import Settings
from config.times import iso, to_ns
from kpi import TimeElements
from simulators import Plant
from store.batch import Batch
from store.sqlite import SqliteStore
from tests.integration.test_hour_parts import ASSET, NOW, _hour, harden

DAYS = 3
NAMES = [f.name for f in fields(TimeElements)]
Stores = tuple[KpiService, KpiService, RollupMaintainer]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, settings: Settings
           ) -> Iterator[tuple[KpiService, KpiService, RollupMaintainer]]:
    store = SqliteStore(Path(tmp_path_factory.mktemp("rolled")) / "demo.db")
    try:
        tag_ids = store.register_tags(tag_records(settings))
        for batch in Plant(settings, now=NOW).history_batches(
                tag_ids, to_ns(NOW - timedelta(days=DAYS)), to_ns(NOW)):
            store.write(batch)
        harden(store)
        rolled, raw = KpiService(settings, store, rollups=True), KpiService(settings, store, rollups=False)
        assert rolled.use_rollups and not raw.use_rollups
        m = RollupMaintainer(rolled, settle_s=300, backfill_days=None, clock_ns=lambda: to_ns(NOW))
        # every closed hour from the one of the first sample (09:00 three days ago) to 09:00,
        # a day row of each local (Shanghai) day ending in that span: three, a day-sum and a
        # head row of each of them whose hours all have rows: the last two, and the head of
        # today (in progress: up to its first hour serving a window from midnight, or 09:00)
        assert m.run_once() == len(settings.assets) * (DAYS * 24 + DAYS + 2 * (DAYS - 1) + 1)
        assert m.run_once() == 0  # nothing left
        yield rolled, raw, m
        m.close()
    finally:
        store.close()


def assert_same(rolled: KpiService, raw: KpiService, asset: str, start: int, end: int) -> None:
    a = rolled.settings.asset(asset)
    with rolled.snapshot():
        got, want = rolled.asset_result(a, start, end), raw.asset_result(a, start, end)
    for name in NAMES:
        g, w = getattr(got.elements, name), getattr(want.elements, name)
        if w is None or isinstance(w, int):
            assert g == w, (asset, name)
        else:
            assert g == pytest.approx(w, rel=1e-9, abs=1e-6), (asset, name)
    assert got.evidence.as_dict(iso) == want.evidence.as_dict(iso)


def test_random_windows_equal_the_raw_computation(stores: Stores) -> None:
    rolled, raw, _ = stores
    rnd = random.Random(7)
    lo = to_ns(NOW - timedelta(days=DAYS))
    used = 0
    for k in range(30):
        asset = rnd.choice(rolled.settings.assets).path if k % 4 else ASSET
        start = rnd.randrange(lo, to_ns(NOW) - 3 * HOUR_NS)
        if k % 3 == 0:  # on an hour edge (an assessment's local days)
            start -= start % HOUR_NS
        end = min(start + rnd.randrange(HOUR_NS // 2, 60 * HOUR_NS), to_ns(NOW))
        assert_same(rolled, raw, asset, start, end)
        a = rolled.settings.asset(asset)
        used += rolled._rolled(a, start, end, rolled._tags_by_asset()[asset]) is not None
    assert used > 20  # most windows read roll-ups (not those within one hour, or near it)


class Recording:
    """The store, noting every (tag, start, end) read of samples."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.reads: list[tuple[int, int, int]] = []

    def read(self, tag_id: int, start_ns: int, end_ns: int, prior: bool = True) -> Any:
        self.reads.append((int(tag_id), start_ns, end_ns))
        return self._store.read(tag_id, start_ns, end_ns, prior)

    def read_many(self, tag_ids: Any, start_ns: int, end_ns: int, prior: bool = True) -> Any:
        self.reads += [(int(t), start_ns, end_ns) for t in tag_ids]
        return self._store.read_many(tag_ids, start_ns, end_ns, prior)

    def read_ranges(self, wanted: Any, prior: bool = True) -> Any:
        self.reads += [(int(t), a, b) for t, a, b in wanted]
        return self._store.read_ranges(wanted, prior)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest.mark.parametrize("back", [50, 40, 30, 7])
def test_a_raw_edge_reads_its_counters_from_its_start(stores: Stores, back: int) -> None:
    """The part after a window's last whole hour h reads each counter from h (with the sample
    before it), not from an hour before: a counter's part counts only the increases dated in
    it, the first from its last good sample before h. Where that sample is bad (before h3 =
    _hour(50) of ``harden``) it reads back an hour, as reach_ns looks. The answer is the raw
    computation's either way (h1, h2: a glitch and a reset across the edge)."""
    rolled, raw, _ = stores
    store = rolled.store
    assert isinstance(store, SqliteStore)
    h = _hour(back)
    start, end = h - 5 * HOUR_NS - 17 * 10**9, h + 17 * 60 * 10**9
    seen = Recording(store)
    service = KpiService(rolled.settings, seen, rollups=True)  # type: ignore[arg-type]
    got = service.results(start, end, [service.settings.asset(ASSET)])[0]
    want = raw.asset_result(raw.settings.asset(ASSET), start, end)
    assert got.hours is not None and got.hours[1] >= 1  # rows, then the tail from raw samples
    for name in NAMES:
        assert getattr(got.elements, name) == pytest.approx(getattr(want.elements, name), rel=1e-9)
    assert got.evidence.as_dict(iso) == want.evidence.as_dict(iso)
    tags = service._tags_by_asset()[ASSET]
    counters = {t.tag_id for t in tags.values() if t.role.endswith("_count") or t.role == "energy_kwh"}
    tail = [a for t, a, b in seen.reads if t in counters and b == end]
    assert tail
    assert min(tail) == (h - HOUR_NS if back == 50 else h), [(a - h) / 1e9 for a in tail]


def test_whole_history_and_kpis(stores: Stores) -> None:
    rolled, raw, _ = stores
    start, end = NOW - timedelta(days=DAYS) + timedelta(minutes=7), NOW
    got, want = rolled.kpis(start, end), raw.kpis(start, end)
    for path, entry in want["assets"].items():
        assert got["assets"][path]["evidence"] == entry["evidence"]
        for k, v in entry.items():
            if k not in ("evidence", "elements") and v is not None:
                assert got["assets"][path][k] == pytest.approx(v, rel=1e-9), (path, k)
    assert got["total"]["oee"] == pytest.approx(want["total"]["oee"], rel=1e-9)


def test_late_data_reopen_the_hours_they_touch(stores: Stores) -> None:
    rolled, raw, m = stores
    store = rolled.store
    assert isinstance(store, SqliteStore)
    other = next(a.path for a in rolled.settings.assets if a.path != ASSET)
    hour = (to_ns(NOW) // HOUR_NS - 10) * HOUR_NS
    before = {a: len(store.rollups([a], 0, to_ns(NOW))) for a in (ASSET, other)}
    total = next(t for t in store.tags() if t.asset == ASSET and t.role == "total_count")
    v = float(store.read(total.tag_id, hour, hour, prior=True).value[-1])
    store.write(Batch(np.array([total.tag_id], np.int32), np.array([hour + 1234]), np.array([v + 3]),
                      np.zeros(1, np.uint8)))
    after = {a: len(store.rollups([a], 0, to_ns(NOW))) for a in (ASSET, other)}
    assert after[other] == before[other] and after[ASSET] == before[ASSET] - 10
    assert_same(rolled, raw, ASSET, hour - 5 * HOUR_NS - 17, to_ns(NOW))
    assert m.run_once() == 11  # and today's head (its slot is the day's last hour)
    assert_same(rolled, raw, ASSET, hour - 5 * HOUR_NS - 17, to_ns(NOW))


def test_maintainer_thread_starts_computes_and_stops(tmp_path: Path, settings: Settings) -> None:
    with SqliteStore(tmp_path / "bg.db") as store:
        tag_ids = store.register_tags(tag_records(settings))
        for batch in Plant(settings, now=NOW).history_batches(
                tag_ids, to_ns(NOW - timedelta(hours=6)), to_ns(NOW)):
            store.write(batch)
        service = KpiService(settings, store, rollups=True)
        # the default look-back (400 days) but no hour before the first sample is computed
        m = RollupMaintainer(service, interval_s=0.05, clock_ns=lambda: to_ns(NOW))
        m.start()
        try:
            for _ in range(200):
                if m.passes:
                    break
                threading.Event().wait(0.05)
        finally:
            m.close()
        assert m.computed == len(settings.assets) * 6
        assert len(store.rollups([ASSET], 0, to_ns(NOW))) == 6


def test_across_a_dst_change(tmp_path: Path, settings: Settings) -> None:
    """The demo plant on Berlin's calendar over the night the clocks go back (2026-10-25):
    its shifts and planned stops move by an hour in UTC, and the 25-hour local day is one of
    the windows."""
    from zoneinfo import ZoneInfo

    berlin = settings.model_copy(update={"calendar": settings.calendar.model_copy(
        update={"timezone": "Europe/Berlin"})})
    now = NOW.replace(month=10, day=27, hour=11)
    with SqliteStore(tmp_path / "dst.db") as store:
        tag_ids = store.register_tags(tag_records(berlin))
        for batch in Plant(berlin, now=now).history_batches(
                tag_ids, to_ns(now - timedelta(days=DAYS)), to_ns(now)):
            store.write(batch)
        rolled, raw = KpiService(berlin, store, rollups=True), KpiService(berlin, store, rollups=False)
        RollupMaintainer(rolled, backfill_days=None, clock_ns=lambda: to_ns(now)).run_once()
        tz = ZoneInfo("Europe/Berlin")
        day = to_ns(datetime(2026, 10, 25, tzinfo=tz)), to_ns(datetime(2026, 10, 26, tzinfo=tz))
        assert day[1] - day[0] == 25 * HOUR_NS
        # the 25-hour local day's row: that day on its own, as the raw computation gives it
        held = rolled.day_rows(rolled.settings.assets, [day])[day[0]]
        for r in raw.results(*day):
            assert held[r.asset.path][0] == r.elements
        rnd = random.Random(3)
        for asset in rolled.settings.assets[:6]:
            assert_same(rolled, raw, asset.path, *day)
            start = day[0] - rnd.randrange(1, 5 * HOUR_NS)
            assert_same(rolled, raw, asset.path, start, day[1] + rnd.randrange(1, 5 * HOUR_NS))
        # the Sunday has no shift; the window into Monday's has planned busy time
        monday = day[0], to_ns(datetime(2026, 10, 26, 18, tzinfo=tz))
        for asset in rolled.settings.assets:
            assert_same(rolled, raw, asset.path, *monday)
        first = rolled.settings.assets[0]
        assert raw.asset_result(first, *monday).elements.pbt_s > 0
        # and the hours did come from roll-ups
        assert rolled._rolled(first, *monday, rolled._tags_by_asset()[first.path]) is not None


def _close(got: object, want: object, where: str = "") -> None:
    """Equal, floats to 1e-9 relative (the roll-ups' bar), everything else exactly."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for k in want:
            _close(got[k], want[k], f"{where}/{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _close(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and isinstance(got, float):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), where
    else:
        assert got == want, where


def test_assessment_equals_the_raw_assessment(stores: Stores) -> None:
    """The assessment from hour and day rows (whole local days read from day rows, the
    windows' clipped days and totals from hour rows and raw edges) equals the raw one: every
    figure, interval, delta, verdict and KPI to 1e-9 relative."""
    from api.assessment import assess
    from config import load_tiers

    rolled, raw, _ = stores
    lo = NOW - timedelta(days=DAYS)
    cut = iso(to_ns(lo + timedelta(hours=37, minutes=11)))

    def run(service: KpiService) -> dict[str, object]:
        with service.snapshot():
            return assess(service.settings, service, load_tiers(), now=NOW, from_=cut,
                          to=iso(to_ns(NOW)), baseline_from=iso(to_ns(lo + timedelta(minutes=3))),
                          baseline_to=cut)

    assets = rolled.settings.assets
    days = local_day_edges(rolled.settings.calendar.timezone, to_ns(lo), to_ns(NOW))
    held = rolled.day_rows(assets, days)
    assert len(days) == 2 and all(len(held[a]) == len(assets) for a, _ in days)
    for a, b in days:  # a day row is that day computed on its own: exactly the raw figures
        for r in raw.results(a, b):
            assert held[a][r.asset.path][0] == r.elements
    got = run(rolled)
    # the one difference allowed: each asset's KPIs say how many whole hours came from rows
    sources = _pop_sources(got)
    assert sources and all(s["from_rollups"] > 0 for s in sources)
    _close(got, run(raw))


def _pop_sources(doc: object) -> list[dict[str, int]]:
    """Remove (and return) every ``rollups`` provenance entry of a KPI answer."""
    out: list[dict[str, int]] = []
    if isinstance(doc, dict):
        if isinstance(doc.get("rollups"), dict) and "from_rollups" in doc["rollups"]:
            out.append(doc.pop("rollups"))
        for v in doc.values():
            out += _pop_sources(v)
    elif isinstance(doc, list):
        for v in doc:
            out += _pop_sources(v)
    return out


class _Protocol:
    """The real store seen through the ``Store`` and roll-up protocol only (no ``first_ts``,
    no ``rollups_keyed``): what another backend offers. Every call goes to the real store."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> object:
        if name in ("first_ts", "rollups_keyed"):
            raise AttributeError(name)
        return getattr(self._store, name)


def test_a_store_with_the_protocol_only(stores: Stores) -> None:
    """The first sample by bisection equals the store's ``first_ts``; rows read through
    ``rollups()`` give the same answer as ``rollups_keyed``."""
    rolled = stores[0]
    plain = KpiService(rolled.settings, _Protocol(rolled.store), rollups=True)  # type: ignore[arg-type]
    first = rolled.first_sample_ns(to_ns(NOW))
    assert first is not None and first == plain.first_sample_ns(to_ns(NOW))
    assert rolled.first_sample_ns(first) is None and plain.first_sample_ns(first) is None
    assert rolled.first_sample_ns(first + 1) == first == plain.first_sample_ns(first + 1)
    start, end = NOW - timedelta(days=2, minutes=13), NOW
    a, b = rolled.kpis(start, end), plain.kpis(start, end)
    assert a == b


def _local_midnights(service: KpiService) -> list[tuple[int, int]]:
    """The whole local days of the fixture's history (the last two hold every hour's row)."""
    lo = to_ns(NOW - timedelta(days=DAYS))
    return local_day_edges(service.settings.calendar.timezone, lo, to_ns(NOW))


def _spans(service: KpiService, asset: str, start: int, end: int) -> list[tuple[int, int]]:
    """(start, end) of the rows that serve the window for ``asset`` (hours, day sums, heads)."""
    a = service.settings.asset(asset)
    tags = service._tags_by_asset()[asset]
    with service.snapshot():
        return [(c[0], c[4]) for c in service._window_cells([a], {asset: tags}, start, end)[asset]]


def _head_first(service: KpiService, asset: str, start: int, end: int) -> bool:
    """Whether the window's first serving row is the day's head row (its extra has "end"):
    since a row's reach no longer goes back to the step samples in force (algorithm version
    4), a head often covers just the first hour, whose row reaches back before midnight."""
    a = service.settings.asset(asset)
    with service.snapshot():
        cells = service._window_cells([a], {asset: service._tags_by_asset()[asset]}, start, end)[asset]
    return bool(cells) and '"end"' in (cells[0][3] or "")


def test_day_sums_and_heads_equal_the_raw_computation(stores: Stores) -> None:
    """Windows over whole local days read one day-sum row per day, and windows starting on
    a local midnight read the day's head row for their first hours; random windows of both
    kinds and random assets equal the raw computation (1e-9 relative, the same evidence),
    and a day-sum row holds the Σ of its day's hour rows."""
    from api.rollups import SUM, decode_cells, keyed_rows, sum_slot

    rolled, raw, _ = stores
    rnd = random.Random(11)
    days = _local_midnights(rolled)
    assert len(days) == 2
    sums = heads = 0
    for k in range(24):
        asset = rnd.choice(rolled.settings.assets).path if k % 3 else ASSET
        if k % 2:  # from a local midnight to a random end (an assessment's last local day)
            start = rnd.choice(days)[0]
            end = min(start + rnd.randrange(HOUR_NS, 40 * HOUR_NS), to_ns(NOW))
        else:  # from before the first whole day over at least one of them
            start = days[0][0] - rnd.randrange(1, 8 * HOUR_NS)
            end = rnd.randrange(days[0][1], to_ns(NOW))
        assert_same(rolled, raw, asset, start, end)
        spans = _spans(rolled, asset, start, end)
        sums += sum(b - a > HOUR_NS and (a, b) in days for a, b in spans)
        heads += bool(spans) and spans[0][0] == start and start in {a for a, _ in days} \
            and _head_first(rolled, asset, start, end)
    assert sums >= 5 and heads >= 2, (sums, heads)
    for asset in rolled.settings.assets:  # a window over the last whole day and into today
        start, end = days[-1][0], to_ns(NOW)
        assert_same(rolled, raw, asset.path, start, end)
        spans = _spans(rolled, asset.path, start, end)
        assert spans[0][0] == start
    # a day-sum row is its hours summed (up to the order of the additions)
    a, b = days[-1]
    store = rolled.store
    for asset in rolled.settings.assets:
        tags = rolled._tags_by_asset()[asset.path]
        key = rolled.rollup_key(asset, tags)
        hours = keyed_rows(store, {asset.path: key}, a, b)[asset.path]
        (row,) = keyed_rows(store, {asset.path: key + SUM}, sum_slot(b), sum_slot(b) + 1)[asset.path]
        got, want = decode_cells([row], tags), decode_cells(hours, tags)
        assert got.tags == want.tags and got.implausible == want.implausible
        for name in NAMES:
            g, w = getattr(got.elements, name), getattr(want.elements, name)
            assert g == w if w is None or isinstance(w, int) else g == pytest.approx(w, rel=1e-12)
        assert row[1] == min(c[1] for c in hours)


def test_late_data_drop_the_day_sums_and_heads_they_touch(stores: Stores) -> None:
    """A late sample inside the first whole local day drops that asset's day-sum and head
    rows of that day and of the next (their hours may reach back to it), no other asset's;
    windows stay equal to the raw computation meanwhile, and the next pass computes the rows
    again, equal to before."""
    from api.rollups import HEAD, SUM, keyed_rows

    rolled, raw, m = stores
    store = rolled.store
    assert isinstance(store, SqliteStore)
    days = _local_midnights(rolled)
    other = next(a.path for a in rolled.settings.assets if a.path != ASSET)

    def rows(asset: str) -> dict[int, bytes]:
        a = rolled.settings.asset(asset)
        key = rolled.rollup_key(a, rolled._tags_by_asset()[asset])
        return {c[0]: c[2] for k in (SUM, HEAD) for c in keyed_rows(
            store, {asset: key + k}, days[0][0], to_ns(NOW)).get(asset, [])}

    before = {a: rows(a) for a in (ASSET, other)}
    assert len(before[ASSET]) == 4 and len(before[other]) == 4
    at = days[0][0] + 10 * HOUR_NS + 1234
    total = next(t for t in store.tags() if t.asset == ASSET and t.role == "total_count")
    v = float(store.read(total.tag_id, at, at, prior=True).value[-1])
    store.write(Batch(np.array([total.tag_id], np.int32), np.array([at]), np.array([v]),
                      np.zeros(1, np.uint8)))
    assert rows(ASSET) == {} and rows(other) == before[other]
    for start, end in ((days[0][0], to_ns(NOW)), (days[1][0], days[1][0] + 13 * HOUR_NS),
                       (days[0][0] - 7 * HOUR_NS - 5, days[1][1])):
        assert_same(rolled, raw, ASSET, start, end)
    assert m.run_once() > 4
    again = rows(ASSET)
    assert again.keys() == before[ASSET].keys()
    for start, end in ((days[0][0], to_ns(NOW)), (days[1][0], days[1][0] + 13 * HOUR_NS)):
        assert_same(rolled, raw, ASSET, start, end)
        assert _spans(rolled, ASSET, start, end)[0][0] == start  # served by the head again


def test_day_sums_and_heads_of_another_key_are_not_used(stores: Stores, monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    """A changed calendar, asset register (the mapping an element rests on: here the PRU) or
    algorithm version gives another key: the rows held are not used, and the answer is the
    raw computation under the new configuration."""
    import api.rollups

    rolled, _, _ = stores
    days = _local_midnights(rolled)
    windows = ((days[0][0], to_ns(NOW)), (days[0][0] - 3 * HOUR_NS - 7, days[1][1]))
    s = rolled.settings
    one_shift = s.calendar.model_copy(update={"shifts": s.calendar.shifts[:1]})
    calendar = s.model_copy(update={"calendar": one_shift})
    pru = s.model_copy(update={"assets": [a.model_copy(update={"ideal_cycle_time_s": 7.0}) if a.path == ASSET
                                          else a for a in s.assets]})
    for changed in (calendar, pru, None):
        if changed is None:  # another algorithm version
            monkeypatch.setattr(api.rollups, "ALGORITHM_VERSION", "tierproof-kpi/test")
            changed = s
        svc = KpiService(changed, rolled.store, rollups=True)
        fresh = KpiService(changed, rolled.store, rollups=False)
        for start, end in windows:
            assert _spans(svc, ASSET, start, end) == []
            assert_same(svc, fresh, ASSET, start, end)
    monkeypatch.undo()
    assert _spans(KpiService(s, rolled.store, rollups=True), ASSET, *windows[0])


def test_rows_name_tags_by_role_and_decode_to_the_parts_computed(stores: Stores) -> None:
    """A row's ``extra`` names its tags by role code and prior sample only (no path, no id:
    the key covers the asset's tags, whose records the reader has), so no row spills into an
    overflow page; hour rows (also those with implausible increases) decode, with the
    asset's tags, to the very part computed from raw samples -- elements, evidence with paths
    and ids, implausible increases; tags without one of the row's roles are refused."""
    import sqlite3

    from api.rollups import NEVER, Part, decode_cells, keyed_rows

    rolled, _, _ = stores
    store = rolled.store
    by_asset = rolled._tags_by_asset()
    checked = implausible = 0
    for asset in rolled.settings.assets:
        tags = by_asset[asset.path]
        rows = store.rollups([asset.path], 0, 2**62)  # hour, day, day-sum and head rows
        assert len(rows) > DAYS * 24
        assert not [r.extra for r in rows if "/" in (r.extra or "")]  # no path (nor the asset's)
        hours = keyed_rows(store, {asset.path: rolled.rollup_key(asset, tags)}, 0, 2**62)[asset.path]
        pick = hours[::9] + [c for c in hours if '"implausible"' in (c[3] or "")]
        for h, reach, data, extra in pick:
            ctx = h if reach == NEVER else reach
            r = rolled.asset_result(asset, h, h + HOUR_NS, tags, context_start_ns=ctx)
            want = Part(r.elements, r.evidence.tags, r.evidence.implausible_increases)
            assert decode_cells([(h, reach, data, extra)], tags) == want, (asset.path, h)
            assert {(t.path, t.tag_id) for t in want.tags} <= {(t.path, t.tag_id) for t in tags.values()}
            checked += 1
            implausible += bool(want.implausible)
    assert checked > 50 and implausible >= 1, (checked, implausible)
    with sqlite3.connect(f"file:{store.path}?mode=ro", uri=True) as db:
        pages = dict(db.execute("SELECT pagetype, count(*) FROM dbstat WHERE name = 'rollups' GROUP BY 1"))
    assert pages.get("leaf", 0) > 0 and "overflow" not in pages, pages
    tags = by_asset[ASSET]
    fewer = {r: t for r, t in tags.items() if r.value != "good_count"}
    with pytest.raises(ValueError, match=r"roll-up row's tags .* are not of the asset's tags .*: KeyError"):
        decode_cells(keyed_rows(store, {ASSET: rolled.rollup_key(rolled.settings.asset(ASSET), tags)},
                                0, 2**62)[ASSET][:1], fewer)
