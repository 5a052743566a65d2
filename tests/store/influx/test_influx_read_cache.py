"""The read cache of a gateway's InfluxDB store (``store.influx.readcache``) on a real
InfluxDB 1.6: a range read once is answered from what the store kept, and stays exactly what
InfluxDB holds while the store writes -- live samples extend it, a late sample, a rewrite of
a stamp, a NaN, a partial write or a write during the read drop it and it is asked again.
The oracle is the embedded store given the same batches, or, where InfluxDB itself drops
points, a second InfluxDB store with the cache off over the same database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from config.store import InfluxStoreSettings
from store import Batch, InfluxStore, Series, SqliteStore, TagRecord
from tests.influx_servers import InfluxDB16

pytestmark = pytest.mark.influxdb

SEC = 10**9
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_700_000_000 * SEC + 123_456_789
SIGNALS = ("total_count", "good_count", "state")


def _records(asset: str = "plant/a/l1/m1") -> list[TagRecord]:
    return [TagRecord(path=f"{asset}/{s}", asset=asset, role=s, device="plc", protocol="modbus")
            for s in SIGNALS]


def _settings(server: InfluxDB16, tmp: Path, measurement: str, **kw: object) -> InfluxStoreSettings:
    return InfluxStoreSettings(type="influx", api="v1", url=server.url, database="tierproof",
                               measurement=measurement, meta_path=str(tmp / f"{measurement}.db"),
                               gzip=False, **kw)  # type: ignore[arg-type]


def _history(ids: dict[str, int], start: int, end: int, seed: int = 30) -> Batch:
    """Counters every ~5 s, the state every ~20 min, a bad sample now and then."""
    rng = np.random.default_rng(seed)
    parts = []
    for path, t in ids.items():
        step = 20 * MIN if path.endswith("state") else 5 * SEC
        ts = np.arange(start, end, step, dtype=np.int64) + rng.integers(0, SEC, 1)
        ts = ts[ts < end]
        value = (rng.integers(0, 3, len(ts)).astype(float) if path.endswith("state")
                 else np.cumsum(rng.integers(0, 2, len(ts))).astype(float) + 0.25)
        quality = rng.choice([0, 0, 0, 0, 2], len(ts)).astype(np.uint8)
        parts.append(Batch.of(np.full(len(ts), t), ts, value, quality))
    return Batch.concat(parts)


def _same(got: list[Series], want: list[Series], where: str) -> None:
    assert len(got) == len(want), where
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_array_equal(g.ts_ns, w.ts_ns, err_msg=f"{where} [{k}] ts")
        np.testing.assert_array_equal(g.value, w.value, err_msg=f"{where} [{k}] value")
        np.testing.assert_array_equal(g.quality, w.quality, err_msg=f"{where} [{k}] quality")


#: a gateway's InfluxDB store, the embedded oracle, the tag ids, the requests made
Stores = tuple[InfluxStore, SqliteStore, dict[str, int], list[httpx.Request]]


@pytest.fixture
def stores(influxdb16: InfluxDB16, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stores]:
    """A gateway's InfluxDB store (cache on) and the embedded oracle, both given a day of
    history up to T0; the requests the InfluxDB store makes from then on."""
    name = "rc_" + "".join(c if c.isalnum() else "_" for c in request.node.name[:40])
    influx = InfluxStore(_settings(influxdb16, tmp_path, name))
    oracle = SqliteStore(tmp_path / "oracle.db")
    try:
        ids = influx.register_tags(_records())
        assert oracle.register_tags(_records()) == ids
        batch = _history(ids, T0 - DAY, T0)
        influx.write(batch)
        oracle.write(batch)
        requests: list[httpx.Request] = []
        influx._http.event_hooks["request"].append(requests.append)
        yield influx, oracle, ids, requests
    finally:
        influx.close()
        oracle.close()


def _edges(ids: dict[str, int], now: int) -> list[tuple[int, int, int]]:
    """A 20-hour window's edges, as a KPI call reads them: its partial first hour (closed:
    written long before) and its partial last hour up to now (open: nothing written after)."""
    start = now - 20 * HOUR + 7 * MIN
    first_hour_end = (start // HOUR + 1) * HOUR
    last_hour = now // HOUR * HOUR
    return [(t, start, first_hour_end) for t in ids.values()] + [
        (t, last_hour, now) for t in ids.values()]


def _write(influx: InfluxStore, oracle: SqliteStore, batch: Batch) -> None:
    influx.write(batch)
    oracle.write(batch)


def test_a_range_read_once_is_answered_from_the_cache_and_follows_live_writes(stores: Stores) -> None:
    influx, oracle, ids, requests = stores
    wanted = _edges(ids, T0)
    _same(influx.read_ranges(wanted), oracle.read_ranges(wanted), "first read")
    assert requests, "the first read asks InfluxDB"
    requests.clear()
    _same(influx.read_ranges(wanted), oracle.read_ranges(wanted), "again")
    assert requests == [], "the same ranges again: from the cache"
    now = T0
    for step in range(5):  # the plant goes on: each 30 s written, the window moves with it
        _write(influx, oracle, _history(ids, now, now + 30 * SEC, seed=step))
        now += 30 * SEC
        moved = _edges(ids, now)
        _same(influx.read_ranges(moved), oracle.read_ranges(moved), f"live step {step}")
    assert requests == [], "live samples extend the open ranges; the start edge moved within its hour"
    assert influx._cache is not None and influx._cache.hits >= 6 * len(wanted)


def test_a_late_sample_a_rewritten_stamp_and_a_nan_are_asked_again(stores: Stores) -> None:
    influx, oracle, ids, requests = stores
    wanted = _edges(ids, T0)
    influx.read_ranges(wanted)
    counter = ids["plant/a/l1/m1/total_count"]
    start = wanted[0][1]
    held = oracle.read(counter, start, T0)
    cases = {
        # a late sample inside the closed first edge
        "late": Batch.of(np.array([counter]), np.array([start + 61 * SEC + 17]),
                         np.array([99.0]), np.array([0], np.uint8)),
        # the open edge's last sample written again with another value (InfluxDB keeps the last)
        "rewrite": Batch.of(np.array([counter]), held.ts_ns[-1:], held.value[-1:] + 5.0,
                            np.array([0], np.uint8)),
        # a NaN after the open edge's samples (no value field is written: quality only)
        "nan": Batch.of(np.array([counter]), np.array([T0 + 3 * SEC]), np.array([np.nan]),
                        np.array([2], np.uint8)),
    }
    for name, batch in cases.items():
        _write(influx, oracle, batch)
        requests.clear()
        now = T0 + 10 * SEC
        moved = _edges(ids, now)
        _same(influx.read_ranges(moved), oracle.read_ranges(moved), name)
        assert requests, f"{name}: the counter's range was dropped and asked again"
        requests.clear()
        _same(influx.read_ranges(moved), oracle.read_ranges(moved), f"{name}, again")
        assert requests == [], f"{name}: kept again"


def test_a_write_while_a_read_is_asked_is_not_kept(stores: Stores) -> None:
    """The write lands between the read's request and its answer (the test posts it from
    inside the read: the interleaving two threads produce now and then)."""
    influx, oracle, ids, requests = stores
    wanted = _edges(ids, T0)
    late = _history(ids, T0 - 3 * MIN, T0 - 2 * MIN, seed=7)  # late: inside the open edge
    answers = influx._answers
    done: list[bool] = []

    def racing(*args: Any, **kwargs: Any) -> Any:
        if not done:
            done.append(True)
            _write(influx, oracle, late)
        return answers(*args, **kwargs)

    influx._answers = racing  # type: ignore[method-assign]
    try:
        influx.read_ranges(wanted)
    finally:
        del influx._answers
    assert done
    requests.clear()
    _same(influx.read_ranges(wanted), oracle.read_ranges(wanted), "after the race")
    assert requests, "what was read during the write is asked again"


def test_a_partial_write_drops_the_ranges_of_its_tags(influxdb16: InfluxDB16, tmp_path: Path) -> None:
    """InfluxDB refuses the points of a shard where the field has another type (a float
    ``quality`` some other program wrote there) and keeps the rest: what it holds of the
    batch's tags is then not what the store wrote, so their ranges are asked again. The
    oracle: the same database read by a store with the cache off."""
    settings = _settings(influxdb16, tmp_path, "rc_partial")
    with InfluxStore(settings) as influx, InfluxStore(
            _settings(influxdb16, tmp_path, "rc_partial").model_copy(
                update={"read_cache_samples": 0, "meta_path": str(tmp_path / "plain.db")})) as plain:
        ids = influx.register_tags(_records())
        assert plain.register_tags(_records()) == ids
        influx.write(_history(ids, T0 - DAY, T0))
        wanted = _edges(ids, T0)
        influx.read_ranges(wanted)
        # a week later (another shard group): some other program's float quality there
        later = T0 + 8 * DAY
        key = "rc_partial,area=a,asset=m1,device=plc,line=l1,role=total_count,signal=total_count,site=plant"
        r = httpx.post(f"{influxdb16.url}/write", params={"db": "tierproof"},
                       content=f"{key} value=1,quality=0 {later}\n")
        assert r.status_code == 204, r.text
        counter = ids["plant/a/l1/m1/total_count"]
        batch = Batch.of(np.array([counter, counter]), np.array([T0 + 5 * SEC, later + SEC]),
                         np.array([1e6, 2e6]), np.array([0, 0], np.uint8))
        influx.write(batch)  # the first point taken, the second refused
        assert influx._partial_dropped == 1
        requests: list[httpx.Request] = []
        influx._http.event_hooks["request"].append(requests.append)
        moved = _edges(ids, T0 + 10 * SEC)
        _same(influx.read_ranges(moved), plain.read_ranges(moved), "after a partial write")
        assert requests, "the batch's tags were asked again"


def test_a_store_reading_other_gateways_data_keeps_nothing(stores: Stores, tmp_path: Path) -> None:
    influx, _, ids, _ = stores
    influx._send_register()  # the tag register a central store discovers
    central = InfluxStore(influx.settings.model_copy(update={"meta_path": str(tmp_path / "central.db")}))
    try:
        assert central.discover_tags(["plant/a/l1/m1"]) == len(SIGNALS)
        cids = {t.path: t.tag_id for t in central.tags()}
        wanted = [(cids[path], a, b) for path, t in ids.items()
                  for (tt, a, b) in _edges(ids, T0) if tt == t]
        requests: list[httpx.Request] = []
        central._http.event_hooks["request"].append(requests.append)
        first = central.read_ranges(wanted)
        n = len(requests)
        _same(central.read_ranges(wanted), first, "central, again")
        assert len(requests) == 2 * n, "a central store asks every time"
        assert central._cache is None
    finally:
        central.close()


def test_a_small_bound_keeps_answers_exact(influxdb16: InfluxDB16, tmp_path: Path) -> None:
    """With room for a few hundred samples: ranges are dropped least recently used first, and
    an open range that grows past a quarter of the bound keeps its newer half; every answer
    stays the oracle's."""
    with InfluxStore(_settings(influxdb16, tmp_path, "rc_bound", read_cache_samples=400)) as influx, \
            SqliteStore(tmp_path / "oracle.db") as oracle:
        ids = influx.register_tags(_records())
        assert oracle.register_tags(_records()) == ids
        _write(influx, oracle, _history(ids, T0 - DAY, T0))
        now = T0
        for step in range(12):
            wanted = [(t, now - 4 * MIN, now) for t in ids.values()]
            _same(influx.read_ranges(wanted), oracle.read_ranges(wanted), f"step {step}")
            _write(influx, oracle, _history(ids, now, now + 90 * SEC, seed=step))
            now += 90 * SEC
        assert influx._cache is not None and influx._cache._held <= 400
