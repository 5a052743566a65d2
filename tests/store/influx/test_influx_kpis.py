"""KPIs computed from InfluxDB 1.6 equal those from the embedded store for the same week.

The simulated plant's history (report-by-exception samples of the demo configuration) is
written to a real SQLite store and, batch for batch, to a real InfluxDB 1.6 through the
store a gateway opens for it (``store.open_store``: ``InfluxStore`` behind its spool, which
must hand the readers what the InfluxDB store says of itself); the KPI service then reads
each store like any stored data. Every KPI, time
element and evidence figure of every asset, line and the plant must be the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from api.gateway import tag_records
from api.rollups import DAY, RollupMaintainer, local_day_edges
from api.service import KpiService
from config.store import InfluxStoreSettings
from config.times import to_ns
from simulators import Plant
from store import InfluxStore, SpooledStore, SqliteStore, open_store
from tests.helpers import shift_demo_settings
from tests.influx_servers import InfluxDB16, ServerFailed

pytestmark = pytest.mark.influxdb

NOW = datetime(2026, 11, 18, 9, 17, 23, tzinfo=UTC)  # as in tests/integration/test_truth.py


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KpiService, KpiService]]:
    root = Path(tmp_path_factory.mktemp("influx_kpis"))
    server = InfluxDB16(root / "influxdb")
    try:
        server.start()
    except ServerFailed as exc:
        pytest.fail(str(exc), pytrace=False)
    settings = shift_demo_settings()
    embedded = SqliteStore(root / "embedded.db")
    influx = open_store(InfluxStoreSettings(
        type="influx", api="v1", url=server.url, database=server.database,
        meta_path=str(root / "meta.db"), batch_size=5000, spool={"path": str(root / "spool")},
    ))
    assert isinstance(influx, SpooledStore) and isinstance(influx.inner, InfluxStore)
    try:
        records = tag_records(settings)
        ids = embedded.register_tags(records)
        assert influx.register_tags(records) == ids
        plant = Plant(settings, now=NOW)
        points = 0
        for batch in plant.history_batches(ids, to_ns(NOW - timedelta(days=8)), to_ns(NOW)):
            embedded.write(batch)
            influx.write(batch)
            points += len(batch)
        assert points > 100_000 and influx.stats().points_written == points
        yield KpiService(settings, embedded), KpiService(settings, influx)
    finally:
        influx.close()
        embedded.close()
        server.kill()


def _diff(a: Any, b: Any, where: str = "") -> list[str]:
    """Paths at which two JSON-like values differ (floats compared exactly: same samples, same
    numpy code, so the same bits)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}.{k}: only in one" for k in set(a) ^ set(b)]
        for k in set(a) & set(b):
            out += _diff(a[k], b[k], f"{where}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _diff(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


@pytest.mark.parametrize(
    "window",
    [
        (timedelta(days=7), timedelta(0)),  # the simulated week
        (timedelta(days=7, hours=5), timedelta(days=2, hours=3, minutes=7)),  # odd edges
        (timedelta(hours=30), timedelta(hours=6)),
    ],
    ids=["week", "odd-edges", "30h"],
)
def test_kpis_from_influxdb_equal_embedded(
    services: tuple[KpiService, KpiService], window: tuple[timedelta, timedelta]
) -> None:
    embedded, influx = services
    start, end = NOW - window[0], NOW - window[1]
    want = embedded.kpis(start, end)
    got = influx.kpis(start, end)
    assert len(want["assets"]) == len(embedded.settings.assets) >= 8
    assert want["total"]["oee"] is not None
    assert _diff(want, got) == []


def test_kpis_with_rollups_from_influxdb_equal_embedded_in_few_requests(
    services: tuple[KpiService, KpiService],
) -> None:
    """Roll-ups of two days computed in each store (as the maintainers would have): a 30-hour
    window from rows and raw edges is the same on both, and on InfluxDB its reads are issued
    together (``api.readahead``): a handful of ``/query`` requests, not one per tag."""
    embedded, influx = services
    assert isinstance(influx.store, SpooledStore) and isinstance(influx.store.inner, InfluxStore)
    for service in services:
        rolled = KpiService(service.settings, service.store, rollups=True)
        assert RollupMaintainer(rolled, backfill_days=2, clock_ns=lambda: to_ns(NOW)).run_once() > 0
    start, end = NOW - timedelta(hours=30, minutes=13), NOW - timedelta(minutes=4)
    want = KpiService(embedded.settings, embedded.store, rollups=True).kpis(start, end)
    requests: list[object] = []
    influx.store.inner._http.event_hooks["request"].append(requests.append)
    try:
        got = KpiService(influx.settings, influx.store, rollups=True).kpis(start, end)
    finally:
        influx.store.inner._http.event_hooks["request"].clear()
    assert _diff(want, got) == []
    rolled_hours = [a["rollups"]["from_rollups"] for a in got["assets"].values()]
    assert min(rolled_hours) > 0  # every asset's window was carried by roll-ups
    tags = sum(len(a["evidence"]["tags"]) for a in got["assets"].values())
    assert tags > 50 and len(requests) <= 4, len(requests)  # rows, then the raw parts


def test_influxdb_holds_every_hour_row_of_the_embedded_store(
    services: tuple[KpiService, KpiService],
) -> None:
    """The same data rolled up in each store: InfluxDB holds exactly the embedded store's hour
    rows (same key, reach, data and evidence; none lost to a series key or timestamp that two
    rows share), and no other kind. The embedded store holds more rows -- its day, day-sum and
    head rows (``api.rollups``), which InfluxDB does not keep (docs/influxdb.md) -- so the
    two stores' row counts differ without any row missing."""
    embedded, influx = services
    for service in services:
        rolled = KpiService(service.settings, service.store, rollups=True)
        RollupMaintainer(rolled, backfill_days=2, clock_ns=lambda: to_ns(NOW)).run_once()
    assets = [a.path for a in embedded.settings.assets]
    rows = {name: s.store.rollups(assets, -(2**62), 2**62)  # type: ignore[attr-defined]
            for name, s in (("embedded", embedded), ("influx", influx))}
    hour = {name: {(r.asset, r.hour_ns): (r.key, r.reach_ns, r.data, r.extra)
                   for r in got if ":" not in r.key} for name, got in rows.items()}
    assert len(hour["embedded"]) >= 2 * 24 * len(assets)
    assert hour["influx"] == hour["embedded"]
    assert len(rows["influx"]) == len(hour["influx"])  # hour rows only
    others = {r.key.rsplit(":", 1)[1] for r in rows["embedded"] if ":" in r.key}
    assert others == {"day", "sum", "head"}, others


def test_day_rows_found_in_influxdb_are_not_read(services: tuple[KpiService, KpiService]) -> None:
    """InfluxDB keeps no day rows (a late write voids the hour points it makes stale, not a
    day's). Day rows found there anyway -- a gateway wrote them before its spool passed on
    ``keeps_day_rows`` -- are not read: nothing voided them, so they may be stale. Put last:
    it leaves them in the module's InfluxDB."""
    embedded, influx = services
    assets = list(embedded.settings.assets)
    rolled = {name: KpiService(s.settings, s.store, rollups=True)
              for name, s in (("embedded", embedded), ("influx", influx))}
    for service in rolled.values():
        RollupMaintainer(service, backfill_days=2, clock_ns=lambda: to_ns(NOW)).run_once()
    days = local_day_edges(embedded.settings.calendar.timezone, to_ns(NOW - timedelta(days=2)),
                           to_ns(NOW))
    assert days and len(rolled["embedded"].day_vectors(assets, days)) == len(days)
    rows = [r for r in embedded.store.rollups([a.path for a in assets], -(2**62), 2**62)  # type: ignore[attr-defined]
            if r.key.endswith(DAY)]
    inner = influx.store.inner  # type: ignore[attr-defined]
    assert inner.put_rollups(rows, inner.rollup_claim(max(r.hour_ns for r in rows) + 1)) == len(rows)
    assert rolled["influx"].day_vectors(assets, days) == {}
    assert rolled["influx"].day_rows(assets, days) == {}


def test_kpis_stay_equal_while_the_plant_goes_on(services: tuple[KpiService, KpiService]) -> None:
    """(Last in the module: it writes after NOW.) The plant goes on after NOW, a minute at a
    time, into both stores; a 7-day window that moves with it, called after each minute, is
    the same on both. On InfluxDB its raw edges come more and more from the read cache
    (``store.influx.readcache``): the samples written since extend what it read."""
    # from raw samples alone (the rows of an earlier test would make the sums equal to 1e-9
    # relative only: each store sums its own)
    embedded, influx = (KpiService(s.settings, s.store, rollups=False) for s in services)
    assert isinstance(influx.store, SpooledStore) and isinstance(influx.store.inner, InfluxStore)
    inner = influx.store.inner
    ids = {t.path: t.tag_id for t in embedded.store.tags()}
    requests: list[object] = []
    inner._http.event_hooks["request"].append(requests.append)
    per_call: list[int] = []
    try:
        t = NOW
        for _ in range(4):
            nxt = t + timedelta(minutes=1)
            for batch in Plant(embedded.settings, now=nxt).history_batches(ids, to_ns(t), to_ns(nxt)):
                embedded.store.write(batch)
                influx.store.write(batch)
            t = nxt
            start = t - timedelta(days=7, minutes=-7)
            want = embedded.kpis(start, t)
            requests.clear()
            got = influx.kpis(start, t)
            per_call.append(len(requests))
            assert _diff(want, got) == [], t
    finally:
        inner._http.event_hooks["request"].clear()
    assert inner._cache is not None and inner._cache.hits > 0
    # the first call reads each tag's week; the minutes written since extend what it read
    assert per_call[0] > 0 and per_call[1:] == [0, 0, 0], per_call
