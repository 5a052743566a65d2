"""Batched reads on a real InfluxDB 1.6: ``read_many`` of many tags -- more statements than one
``/query`` request carries -- returns exactly what a read of each tag on its own returns (with
and without ``prior``, empty tags, text samples), the embedded store given the same batches
agrees, and ``store.gzip`` decides whether writes are compressed and reads ask the server for gzip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import httpx
import numpy as np
import pytest

from config.store import InfluxStoreSettings
from store import Batch, InfluxStore, Series, SqliteStore, TagRecord
from store.influx import store as influx_store
from store.influx.sink import V1Sink
from tests.influx_servers import InfluxDB16

pytestmark = pytest.mark.influxdb

SEC = 10**9
T0 = 1_700_000_000 * SEC + 987_654_321
TAGS = 130  # of 33 assets: one or two statements per asset


def _settings(url: str, tmp_path: Path, gzip: bool | Literal["auto"] = True) -> InfluxStoreSettings:
    return InfluxStoreSettings(type="influx", api="v1", url=url, database="tierproof",
                               measurement="readbatch", meta_path=str(tmp_path / "meta.db"),
                               gzip=gzip)


def _records() -> list[TagRecord]:
    return [TagRecord(path=f"plant/a/l{i % 3}/m{i % 11}/sig{i}", asset=f"plant/a/l{i % 3}/m{i % 11}",
                      role="analog", device=f"plc{i % 4}", protocol="modbus") for i in range(TAGS)]


@pytest.fixture
def stores(influxdb16: InfluxDB16, tmp_path: Path) -> Iterator[tuple[InfluxStore, SqliteStore, list[int]]]:
    influx = InfluxStore(_settings(influxdb16.url, tmp_path))
    oracle = SqliteStore(tmp_path / "oracle.db")
    records = _records()
    ids = influx.register_tags(records)
    assert oracle.register_tags(records) == ids
    tag_ids = [ids[r.path] for r in records]
    rng = np.random.default_rng(14)
    parts = []
    for k, t in enumerate(tag_ids):
        if k % 10 == 9:
            continue  # every tenth tag: never written (an empty read)
        n = int(rng.integers(1, 40))
        ts = T0 + np.sort(rng.choice(100 * n, n, replace=False)).astype(np.int64) * SEC + k
        value = rng.normal(size=n)
        value[rng.random(n) < 0.1] = np.nan  # non-finite: no value field, read back as NaN
        quality = rng.choice([0, 1, 2], n).astype(np.uint8)
        parts.append(Batch.of(np.full(n, t), ts, value, quality))
    batch = Batch.concat(parts)
    influx.write(batch)
    oracle.write(batch)
    yield influx, oracle, tag_ids
    influx.close()
    oracle.close()


def _same(got: Series, want: Series, where: str) -> None:
    np.testing.assert_array_equal(got.ts_ns, want.ts_ns, err_msg=where)
    np.testing.assert_array_equal(got.value, want.value, err_msg=where)  # NaN == NaN here
    np.testing.assert_array_equal(got.quality, want.quality, err_msg=where)


@pytest.mark.parametrize("prior", [True, False])
def test_read_many_equals_per_tag_reads(stores: tuple[InfluxStore, SqliteStore, list[int]],
                                        prior: bool) -> None:
    influx, oracle, ids = stores
    requests: list[httpx.Request] = []
    influx._http.event_hooks["request"].append(requests.append)
    start, end = T0 + 500 * SEC, T0 + 2500 * SEC  # cuts most tags' histories on both sides
    many = influx.read_many(ids, start, end, prior=prior)
    # one statement per asset (two with the sample before), all in one request; with prior
    # one more for the never-written tags, whose sample before is looked for without bound
    assert len(requests) == (2 if prior else 1)
    statements = httpx.QueryParams(requests[0].content.decode())["q"].split(";")
    assert len(statements) == len({r.asset for r in _records()}) * (2 if prior else 1)
    assert list(many) == ids
    want = oracle.read_many(ids, start, end, prior=prior)
    empty = 0
    for t in ids:
        one = influx.read(t, start, end, prior=prior)
        _same(many[t], one, f"tag {t}: read_many vs read")
        _same(many[t], want[t], f"tag {t}: InfluxDB vs embedded")
        empty += not len(one.ts_ns)
    assert empty >= TAGS // 10  # the never-written tags, at least
    assert sum(len(s.ts_ns) for s in many.values()) > 500
    if prior:  # some tag's first sample is the one before the window
        assert any(len(s.ts_ns) and s.ts_ns[0] < start for s in many.values())


@pytest.mark.parametrize("gzip", [True, False, "auto"])
def test_gzip_setting_governs_writes_and_reads(influxdb16: InfluxDB16, tmp_path: Path,
                                               gzip: bool | Literal["auto"]) -> None:
    """``store.gzip`` decides both the write bodies and the answers asked for; ``auto`` (the
    default) is off here, the server being on loopback."""
    assert InfluxStoreSettings(type="influx", api="v1", database="x", url=influxdb16.url).gzip == "auto"
    compressed = gzip is True
    with InfluxStore(_settings(influxdb16.url, tmp_path, gzip=gzip)) as store:
        (tid,) = store.register_tags(_records()[:1]).values()
        posted: list[str | None] = []
        sink = store._sink
        assert isinstance(sink, V1Sink)
        sink._client.event_hooks["request"].append(
            lambda r: posted.append(r.headers.get("content-encoding")))
        n = 2000  # an answer large enough for the server to compress it
        store.write(Batch.of(np.full(n, tid), T0 + np.arange(n) * SEC, np.arange(n) * 0.5))
        asked: list[str | None] = []
        answered: list[str | None] = []
        store._http.event_hooks["request"].append(lambda r: asked.append(r.headers.get("accept-encoding")))
        store._http.event_hooks["response"].append(
            lambda r: answered.append(r.headers.get("content-encoding")))
        got = store.read(tid, T0, T0 + n * SEC, prior=False)
        np.testing.assert_array_equal(got.value, np.arange(n) * 0.5)
    assert posted and set(posted) == ({"gzip"} if compressed else {None})
    assert asked == (["gzip"] if compressed else ["identity"])
    assert answered == (["gzip"] if compressed else [None])


@pytest.mark.parametrize("per_request", [200, 7])
def test_read_ranges_equals_per_tag_reads(stores: tuple[InfluxStore, SqliteStore, list[int]],
                                          per_request: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tag over a window of its own, in one call (a KPI request's read-ahead); a tag
    asked twice gets its samples twice; with fewer statements a request (7) the statements
    of one window are split across requests and still find their tags."""
    influx, oracle, ids = stores
    monkeypatch.setattr(influx_store, "_STATEMENTS_PER_QUERY", per_request)
    # the first tags: one window per asset (k % 33 is the asset); the others: each its own
    window = [k % 33 % 4 if k < 80 else 4 + k % 17 for k in range(len(ids))]
    wanted = [(t, T0 + w * 100 * SEC, T0 + w * 100 * SEC + (w % 5 + 1) * 400 * SEC)
              for w, t in zip(window, ids, strict=True)]
    wanted += wanted[:3]
    requests: list[httpx.Request] = []
    influx._http.event_hooks["request"].append(requests.append)
    got = influx.read_ranges(wanted, prior=True)
    statements = [st for r in requests for st in httpx.QueryParams(r.content.decode())["q"].split(";")]
    # the second look for the sample before, without bound: the never-written tags'
    unbounded = [st for st in statements if "ORDER BY" in st and "AND time >= " not in st]
    first = len(statements) - len(unbounded)
    assert len(requests) == -(-first // per_request) + -(-len(unbounded) // per_request)
    assert len(got) == len(wanted) and 0 < len(unbounded) < first
    # tags of one asset and window share their statements (two: samples, the one before)
    asset = {t: r.asset for t, r in zip(ids, _records(), strict=True)}
    assert first == 2 * len({(asset[t], a, b) for t, a, b in wanted}) < 2 * len(ids) * 0.7
    for (t, a, b), s in zip(wanted, got, strict=True):
        _same(s, influx.read(t, a, b, prior=True), f"tag {t} [{a}, {b})")
        _same(s, oracle.read(t, a, b, prior=True), f"tag {t} [{a}, {b}) embedded")
    assert influx.read_ranges([]) == []


def test_sample_before_the_window_from_anywhere(influxdb16: InfluxDB16, tmp_path: Path) -> None:
    """The sample before a window is looked for in the day before it first; a tag whose last
    sample is older (here 3 days and 30 days) is asked again without that bound, in one more
    request; a tag with none at all has none."""
    day = 86_400 * SEC
    with InfluxStore(_settings(influxdb16.url, tmp_path)) as influx, \
            SqliteStore(tmp_path / "oracle.db") as oracle:
        records = _records()[:4]  # four assets
        ids = influx.register_tags(records)
        assert oracle.register_tags(records) == ids
        near, old, ancient, never = (ids[r.path] for r in records)
        batch = Batch.of(np.array([near, near, old, old, ancient, ancient, never]),
                         np.array([T0 - 3600 * SEC, T0 + 5 * SEC, T0 - 3 * day, T0 + 9 * SEC,
                                   T0 - 30 * day, T0 - 29 * day, T0 + 7 * SEC]),
                         np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]), 0)
        influx.write(batch)
        oracle.write(batch)
        requests: list[httpx.Request] = []
        influx._http.event_hooks["request"].append(requests.append)
        got = influx.read_many([near, old, ancient, never], T0, T0 + 60 * SEC)
        assert len(requests) == 2  # the bounded look, then old and ancient anywhere
        assert "time >= " not in httpx.QueryParams(requests[1].content.decode())["q"].split("WHERE")[1] \
            .split("AND time <")[0]
        for t in (near, old, ancient, never):
            _same(got[t], oracle.read(t, T0, T0 + 60 * SEC), f"tag {t}")
        assert [len(got[t].ts_ns) for t in (near, old, ancient, never)] == [2, 2, 1, 1]
