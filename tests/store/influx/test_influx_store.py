"""InfluxStore against a real InfluxDB 1.6: write + InfluxQL read round trips, gap markers,
metadata across restarts, and the mapping of every failure to SinkUnavailable/SinkRejected.

The oracle for reads is the embedded store given the same batches: both stores must return
the same arrays for the same questions.
"""

from __future__ import annotations

import http.server
import logging
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from config.errors import SinkRejected, SinkUnauthorized, SinkUnavailable, StoreError
from config.store import InfluxStoreSettings
from store import STORES, Batch, InfluxStore, Series, SqliteStore, Store, TagRecord, open_store
from tests.influx_servers import InfluxDB16

pytestmark = pytest.mark.influxdb

SEC = 10**9
T0 = 1_700_000_000 * SEC + 123_456_789  # not a whole second: ns must survive exactly
PASSWORD = "pa55-w0rd-never-logged"
TOKEN = "t0ken-never-logged=="


def tag(i: int, **kw: Any) -> TagRecord:
    fields: dict[str, Any] = {
        "path": f"plant/area{i % 2}/line{i % 3}/m{i % 7}/sig{i}",
        "asset": f"plant/area{i % 2}/line{i % 3}/m{i % 7}", "role": "analog",
        "device": f"plc {i % 3}", "protocol": "modbus",
    }
    fields.update(kw)
    return TagRecord(**fields)


def settings(url: str, tmp_path: Path, **kw: Any) -> InfluxStoreSettings:
    base: dict[str, Any] = {"type": "influx", "api": "v1", "url": url, "database": "tierproof",
                            "meta_path": str(tmp_path / "meta.db")}
    base.update(kw)
    return InfluxStoreSettings(**base)


@pytest.fixture
def pair(influxdb16: InfluxDB16, tmp_path: Path) -> Iterator[tuple[InfluxStore, SqliteStore]]:
    """An InfluxStore (small batch_size: several POSTs per batch) and an embedded oracle."""
    influx = InfluxStore(settings(influxdb16.url, tmp_path, batch_size=997))
    oracle = SqliteStore(tmp_path / "oracle.db")
    yield influx, oracle
    influx.close()
    oracle.close()


def both(pair: tuple[InfluxStore, SqliteStore], method: str, *args: Any, **kw: Any) -> tuple[Any, Any]:
    influx, oracle = pair
    return getattr(influx, method)(*args, **kw), getattr(oracle, method)(*args, **kw)


def assert_series(got: Series, want: Series) -> None:
    np.testing.assert_array_equal(got.ts_ns, want.ts_ns)
    np.testing.assert_array_equal(got.value, want.value)  # exact; NaN == NaN
    np.testing.assert_array_equal(got.quality, want.quality)
    assert (got.ts_ns.dtype, got.value.dtype, got.quality.dtype) == (np.int64, np.float64, np.uint8)


def random_batches(ids: list[int], rng: np.random.Generator, count: int) -> list[Batch]:
    """Batches out of time order, overlapping each other, with distinct (tag, ts) overall:
    InfluxDB merges the fields of two points of one series at one time where the embedded
    store keeps the last written, so re-sends are tested apart."""
    out = []
    seen = np.empty(0, np.int64)
    for b in range(count):
        n = int(rng.integers(1, 3000))
        tid = rng.choice(ids, n).astype(np.int32)
        offset = b * 60 * SEC + rng.integers(-30 * SEC, 600 * SEC, n)  # ns resolution
        key = tid.astype(np.int64) * 2**42 + offset + 2**41
        _, first = np.unique(key, return_index=True)
        keep = np.zeros(n, bool)
        keep[first] = True
        keep &= ~np.isin(key, seen)
        seen = np.concatenate([seen, key[keep]])
        value = rng.normal(50, 20, n)
        special = rng.random(n)
        value[special < 0.05] = np.nan  # e.g. a BAD sample without a value
        value[(special >= 0.05) & (special < 0.08)] = 1e-300
        value[(special >= 0.08) & (special < 0.1)] = -1.7976931348623157e308
        counts = (special >= 0.1) & (special < 0.3)
        value[counts] = np.round(value[counts])  # integral values, as counters and states are
        out.append(Batch(tid[keep], (T0 + offset[keep]).astype(np.int64), value[keep],
                         rng.integers(0, 7, n).astype(np.uint8)[keep]))
    return out


# --------------------------------------------------------------------------- round trips


def test_registered_and_opened_by_config(influxdb16: InfluxDB16, tmp_path: Path) -> None:
    assert "influx" in STORES
    store = open_store(settings(influxdb16.url, tmp_path, spool={"path": str(tmp_path / "spool")}))
    try:  # open_store may wrap the InfluxStore in the spool (store.spool.store)
        assert isinstance(store, Store)
        assert isinstance(getattr(store, "inner", store), InfluxStore)
    finally:
        store.close()


def test_round_trip_equals_embedded_store(pair: tuple[InfluxStore, SqliteStore]) -> None:
    influx, oracle = pair
    records = [tag(i) for i in range(300)]
    ids_i, ids_o = both(pair, "register_tags", records)
    assert ids_i == ids_o
    ids = list(ids_i.values())
    rng = np.random.default_rng(5)
    batches = random_batches(ids, rng, 12)
    for b in batches:
        influx.write(b)
        oracle.write(b)
    n_points = sum(map(len, batches))
    assert influx.stats().points_written == n_points and n_points > 5000
    assert [t.path for t in influx.tags()] == [t.path for t in records]

    everything = influx.read_many(ids, 0, 2**62, prior=False)
    assert sum(map(len, everything.values())) == n_points  # every point, once
    for tid, s in everything.items():
        assert_series(s, oracle.read(tid, 0, 2**62, prior=False))
    for _ in range(40):
        tid = int(rng.choice(ids))
        start = T0 + int(rng.integers(-60, 1200)) * SEC + int(rng.integers(0, SEC))
        end = start + int(rng.integers(1, 900)) * SEC
        for prior in (True, False):
            got, want = both(pair, "read", tid, start, end, prior=prior)
            assert_series(got, want)
    some = [int(t) for t in rng.choice(ids, 50, replace=False)]
    start, end = T0 + 200 * SEC, T0 + 500 * SEC
    got_many, want_many = both(pair, "read_many", some, start, end)
    assert got_many.keys() == want_many.keys()
    for tid in some:
        assert_series(got_many[tid], want_many[tid])
        assert len(want_many[tid]) > 0

    got_latest, want_latest = both(pair, "latest", ids)
    assert got_latest.keys() == want_latest.keys() and len(got_latest) == len(ids)
    for tid, want in want_latest.items():
        got = got_latest[tid]
        assert (got.ts_ns, got.quality, got.text) == (want.ts_ns, want.quality, want.text)
        assert got.value == want.value or (np.isnan(got.value) and np.isnan(want.value))
    got_last, want_last = both(pair, "last_ts", some)
    assert got_last == want_last is not None


def test_long_read_spans_several_answer_chunks(pair: tuple[InfluxStore, SqliteStore]) -> None:
    """More rows than one chunk of the chunked /query answer (50,000): parts are joined."""
    influx, _ = pair
    (tid,) = influx.register_tags([tag(1)]).values()
    n = 120_000
    ts = T0 + np.arange(n, dtype=np.int64) * 1_000_003
    value = np.sin(np.arange(n) / 100.0)
    influx.write(Batch(np.full(n, tid, np.int32), ts, value, np.zeros(n, np.uint8)))
    got = influx.read(tid, int(ts[1]), int(ts[-1]) + 1)  # with the prior sample ts[0]
    assert_series(got, Series(ts, value, np.zeros(n, np.uint8)))


def test_empty_windows_and_unknown_tags(pair: tuple[InfluxStore, SqliteStore]) -> None:
    influx, _ = pair
    (tid,) = influx.register_tags([tag(1)]).values()
    assert len(influx.read(tid, T0, T0 + SEC)) == 0
    assert influx.latest([tid]) == {} and influx.last_ts([tid]) is None
    influx.write(Batch.of([tid], T0, 1.0))
    assert len(influx.read(tid, T0 + SEC, T0 + 2 * SEC, prior=False)) == 0
    assert_series(influx.read(tid, T0 + SEC, T0 + 2 * SEC),  # only the prior sample
                  Series(np.array([T0]), np.array([1.0]), np.array([0], np.uint8)))
    with pytest.raises(StoreError, match="no tag 99"):
        influx.read(99, T0, T0 + SEC)
    with pytest.raises(SinkRejected, match="not registered") as info:
        influx.write(Batch.of([tid, 99], T0, 1.0))
    assert info.value.status is None


def test_texts_with_awkward_characters(pair: tuple[InfluxStore, SqliteStore]) -> None:
    influx, oracle = pair
    ids_i, ids_o = both(pair, "register_tags", [tag(1, role="program"), tag(2)])
    assert ids_i == ids_o
    tid, num = ids_i.values()
    texts = ['O1234 (MAIN)', 'say "hi"', "back\\slash\\", "tab\tand\nnewline", "ünïcödé ✓",
             "a,b=c d", ""]
    n = len(texts)
    batch = Batch(
        np.array([tid] * n + [num], np.int32), T0 + np.arange(n + 1, dtype=np.int64) * SEC,
        np.array([np.nan] * n + [3.0]), np.array([0] * n + [1], np.uint8),
        np.array([*texts, None], dtype=object),
    )
    influx.write(batch)
    oracle.write(batch)
    got, want = both(pair, "read_text", tid, T0, T0 + 100 * SEC)
    assert got == want and [t for _, t, _ in got] == texts
    assert_series(*both(pair, "read", tid, T0, T0 + 100 * SEC))  # texts read as NaN values
    got_l, want_l = both(pair, "latest", [tid, num])
    assert got_l[tid].text == want_l[tid].text == "" and got_l[num].value == 3.0
    assert influx.read_text(num, T0, T0 + 100 * SEC) == []


def test_server_and_gateway_timestamps(pair: tuple[InfluxStore, SqliteStore]) -> None:
    influx, oracle = pair
    (tid,) = influx.register_tags([tag(3)]).values()
    oracle.register_tags([tag(3)])
    unknown = np.iinfo(np.int64).min
    batch = Batch.of([tid] * 3, T0 + np.arange(3) * SEC, [1.0, 2.0, 3.0],
                     server_ts_ns=[T0 + 5, unknown, T0 + 2 * SEC + 7],
                     gateway_ts_ns=T0 + 10**6 + np.arange(3) * SEC)
    influx.write(batch)
    oracle.write(batch)
    for got, want in zip(*both(pair, "read_timestamps", tid, T0, T0 + 10 * SEC), strict=True):
        np.testing.assert_array_equal(got, want)


def test_resent_batch_counts_once(pair: tuple[InfluxStore, SqliteStore]) -> None:
    """What the spool does after a failure it cannot tell from a lost answer: send again."""
    influx, _ = pair
    ids = list(influx.register_tags([tag(i) for i in range(20)]).values())
    batch = Batch.of(np.repeat(ids, 10), T0 + np.tile(np.arange(10), 20) * SEC,
                     np.arange(200, dtype=np.float64))
    influx.write(batch)
    influx.write(batch)
    got = influx.read_many(ids, 0, 2**62, prior=False)
    assert sum(map(len, got.values())) == 200


def test_metadata_survives_reopen(influxdb16: InfluxDB16, tmp_path: Path) -> None:
    s = settings(influxdb16.url, tmp_path)
    with InfluxStore(s) as store:
        ids = store.register_tags([tag(i) for i in range(5)])
        store.write(Batch.of(list(ids.values()), T0, 7.0))
        store.mark_alive("plc 1", T0 + 5)
    with InfluxStore(s) as store:
        assert store.register_tags([tag(i) for i in range(5)]) == ids
        assert store.last_alive("plc 1") == T0 + 5
        assert {t: len(v) for t, v in store.read_many(list(ids.values()), T0, T0 + 1).items()} \
            == dict.fromkeys(ids.values(), 1)


def test_gaps_are_local_and_marked_in_influxdb(influxdb16: InfluxDB16, tmp_path: Path) -> None:
    with InfluxStore(settings(influxdb16.url, tmp_path)) as store:
        (tid,) = store.register_tags([tag(1)]).values()
        g1 = store.open_gap("plc 1", T0, 'connection refused, "twice"')
        store.close_gap(g1, T0 + 30 * SEC)
        g2 = store.open_gap("plc 2", T0 + 10 * SEC, "timeout")
        assert [(g.gap_id, g.end_ns) for g in store.gaps(None, T0, T0 + 60 * SEC)] == \
            [(g1, T0 + 30 * SEC), (g2, None)]
        rows = influxdb16.query('SELECT * FROM "tierproof_gaps" ORDER BY time', "tierproof")
        series = rows["results"][0]["series"][0]  # type: ignore[index]
        got = [dict(zip(series["columns"], v, strict=True)) for v in series["values"]]
        assert [(r["device"], r["start_ns"], r["end_ns"], r["reason"]) for r in got] == [
            ("plc 1", T0, T0 + 30 * SEC, 'connection refused, "twice"'),
            ("plc 2", T0 + 10 * SEC, None, "timeout"),
        ]
        # InfluxDB down: the gap is recorded locally at once, its marker follows the next write
        influxdb16.stop()
        with pytest.raises(SinkUnavailable):
            store.write(Batch.of([tid], T0, 1.0))
        store.close_gap(g2, T0 + 40 * SEC)
        assert store.gaps("plc 2", T0, T0 + 60 * SEC)[0].end_ns == T0 + 40 * SEC
        assert store.stats().extra["gap_markers_unsent"] == 1
        influxdb16.start()
        store.write(Batch.of([tid], T0, 1.0))
        assert store.stats().extra["gap_markers_unsent"] == 0
        rows = influxdb16.query('SELECT "end_ns" FROM "tierproof_gaps" WHERE "device" = \'plc 2\'',
                                "tierproof")
        assert rows["results"][0]["series"][0]["values"][0][1] == T0 + 40 * SEC  # type: ignore[index]


def test_refused_gap_marker_is_logged_once_and_kept_locally(
    influxdb16: InfluxDB16, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another writer made ``start_ns`` a float: the marker can never be written. InfluxDB
    answers "partial write" (it drops that point for good): logged once, not re-sent, and not
    counted among the dropped data points (a marker is a copy of what is kept locally)."""
    r = httpx.post(f"{influxdb16.url}/write", params={"db": "tierproof", "precision": "ns"},
                   content=f"tierproof_gaps,device=x start_ns=1.5 {T0}".encode())
    assert r.status_code == 204
    with InfluxStore(settings(influxdb16.url, tmp_path)) as store:
        (tid,) = store.register_tags([tag(1)]).values()
        gap = store.open_gap("plc 1", T0 + SEC, "timeout")
        assert [g.gap_id for g in store.gaps("plc 1", T0, T0 + 2 * SEC)] == [gap]
        assert store.stats().extra["gap_markers_unsent"] == 0
        store.write(Batch.of([tid], T0, 1.0))  # samples are unaffected, and nothing re-sent
        assert store.stats().extra["partial_write_dropped_points"] == 0
        assert len(store.read(tid, T0, T0 + SEC, prior=False)) == 1
    refused = [rec for rec in caplog.records if "partial write" in rec.getMessage()]
    assert len(refused) == 1 and "field type conflict" in refused[0].getMessage()


# --------------------------------------------------------------------------- failures


def test_stopped_server_is_unavailable_and_the_batch_goes_through_later(
    influxdb16: InfluxDB16, tmp_path: Path
) -> None:
    with InfluxStore(settings(influxdb16.url, tmp_path)) as store:
        ids = list(store.register_tags([tag(i) for i in range(3)]).values())
        batch = Batch.of(ids, T0, [1.0, 2.0, 3.0])
        influxdb16.stop()
        with pytest.raises(SinkUnavailable, match="ConnectError") as info:
            store.write(batch)
        assert info.value.retry_after_s is None
        with pytest.raises(StoreError, match="query failed"):
            store.read(ids[0], T0, T0 + SEC)
        influxdb16.start()
        store.write(batch)
        assert [len(s) for s in store.read_many(ids, T0, T0 + SEC).values()] == [1, 1, 1]


def test_missing_database_is_rejected_with_the_server_reason(
    influxdb16: InfluxDB16, tmp_path: Path
) -> None:
    with InfluxStore(settings(influxdb16.url, tmp_path, database="nope")) as store:
        (tid,) = store.register_tags([tag(1)]).values()
        with pytest.raises(SinkRejected) as info:
            store.write(Batch.of([tid], T0, 1.0))
        assert info.value.status == 404 and "database not found" in info.value.reason
        with pytest.raises(StoreError, match="database not found"):
            store.read(tid, T0, T0 + SEC)


def test_field_type_conflict_is_a_counted_partial_write(influxdb16: InfluxDB16, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """Another writer made ``quality`` a float in one shard: InfluxDB drops our points there
    (400 "partial write: field type conflict ... dropped=N") and stores the others. Sending
    them again could never succeed: the write is accepted and the drop counted."""
    r = httpx.post(f"{influxdb16.url}/write", params={"db": "tierproof", "precision": "ns"},
                   content=f"tierproof,site=x quality=1.5 {T0}".encode())
    assert r.status_code == 204
    later = T0 + 30 * 86_400 * SEC  # another shard (autogen groups by 7 days): no conflict there
    with InfluxStore(settings(influxdb16.url, tmp_path)) as store:
        ids = list(store.register_tags([tag(1), tag(2)]).values())
        store.write(Batch.of(ids + ids, [T0 + SEC, T0 + SEC, later, later], [1.0, 2.0, 3.0, 4.0]))
        assert store.stats().extra["partial_write_dropped_points"] == 2
        assert [s.ts_ns.tolist() for s in store.read_many(ids, T0, later + SEC, prior=False).values()] \
            == [[later], [later]]
    warned = [r.getMessage() for r in caplog.records if "partial write" in r.getMessage()]
    assert len(warned) == 1 and "field type conflict" in warned[0] and "dropped 2 of" in warned[0]


def test_points_beyond_retention_are_dropped_and_counted_the_rest_stored(
    influxdb16: InfluxDB16, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = influxdb16.create_database("short")
    influxdb16.query(f'CREATE RETENTION POLICY "hour" ON "{db}" DURATION 1h REPLICATION 1 DEFAULT')
    now = time.time_ns()
    yesterday = now - 86_400 * SEC
    with InfluxStore(settings(influxdb16.url, tmp_path, database=db)) as store:
        (tid,) = store.register_tags([tag(1)]).values()
        for k in range(3):  # three writes, one old point each: logged once, counted three times
            store.write(Batch.of([tid, tid], [yesterday + k, now + k], [1.0, 2.0]))
        assert store.stats().extra["partial_write_dropped_points"] == 3
        assert store.stats().points_written == 6  # accepted by the store: none to resend
        got = store.read(tid, yesterday - SEC, now + SEC, prior=False)
        assert got.ts_ns.tolist() == [now, now + 1, now + 2]
    warned = [r.getMessage() for r in caplog.records if "partial write" in r.getMessage()]
    assert len(warned) == 1 and "points beyond retention policy" in warned[0]


def test_a_body_no_line_of_which_parses_is_rejected(influxdb16: InfluxDB16, tmp_path: Path) -> None:
    """A time InfluxDB cannot hold (int64 max): 400 without "partial write", nothing stored."""
    with InfluxStore(settings(influxdb16.url, tmp_path)) as store:
        (tid,) = store.register_tags([tag(1)]).values()
        with pytest.raises(SinkRejected) as info:
            store.write(Batch.of([tid], 2**63 - 1, 1.0))
        assert info.value.status == 400 and "time outside range" in info.value.reason
        assert store.stats().extra["partial_write_dropped_points"] == 0


def test_tag_paths_line_protocol_cannot_carry_are_refused(influxdb16: InfluxDB16,
                                                          tmp_path: Path) -> None:
    with InfluxStore(settings(influxdb16.url, tmp_path)) as store:
        with pytest.raises(StoreError, match="is not site/area/line/asset/signal"):
            store.register_tags([tag(1, path="a/b/c")])
        with pytest.raises(StoreError, match="line break"):
            store.register_tags([tag(1, device="plc\n1")])
        assert store.tags() == []  # nothing half-registered


class _Answer(http.server.BaseHTTPRequestHandler):
    """Answers every request with the server's canned (status, headers, body)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, headers, body = self.server.answer  # type: ignore[attr-defined]
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answering() -> Iterator[http.server.ThreadingHTTPServer]:
    """A stand-in HTTP server: a real InfluxDB cannot be made to answer 429 or 503 on demand
    (1.x has no rate limits; its 5xx need an overloaded or broken disk), so these statuses come
    from here. Everything else in this file uses the real server."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("api", ["v1", "v2"])
@pytest.mark.parametrize(
    ("status", "headers", "body", "error", "retry_after"),
    [
        (429, {"Retry-After": "7"}, b'{"code":"too many requests","message":"slow down"}',
         SinkUnavailable, 7.0),
        (503, {"Retry-After": "Thu, 01 Jan 2099 00:00:00 GMT"}, b'{"error":"engine: overloaded"}',
         SinkUnavailable, "far"),
        (500, {}, b'{"error":"timeout"}', SinkUnavailable, None),
        # credentials or permissions refused: retried by the spool (someone can fix them)
        (401, {}, b'{"code":"unauthorized","message":"unauthorized access"}', SinkUnauthorized, None),
        (403, {}, b'{"error":"user is not authorized to write to database"}', SinkUnauthorized, None),
        (413, {}, b'{"error":"Request Entity Too Large"}', SinkRejected, None),
    ],
    ids=["429", "503-date", "500", "401", "403", "413"],
)
def test_status_mapping(
    answering: http.server.ThreadingHTTPServer, tmp_path: Path, api: str, status: int,
    headers: dict[str, str], body: bytes, error: type[Exception], retry_after: object,
) -> None:
    answering.answer = (status, {"Content-Type": "application/json", **headers}, body)  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{answering.server_address[1]}"
    extra: dict[str, Any] = {"api": api}
    if api == "v2":
        extra.update(token=TOKEN, org="plant", bucket="tierproof")
    with InfluxStore(settings(url, tmp_path, **extra)) as store:
        (tid,) = store.register_tags([tag(1)]).values()
        with pytest.raises(error) as info:
            store.write(Batch.of([tid], T0, 1.0))
    exc = info.value
    message = body.decode().split('"')[-2]  # the server's message
    assert message in str(exc)
    if isinstance(exc, SinkUnauthorized):
        assert exc.status == status and f"refuses our credentials ({status})" in str(exc)
        assert not exc.unreachable  # it answered: no probing, the backoff
    elif isinstance(exc, SinkUnavailable):
        assert not exc.unreachable
        if retry_after == "far":
            assert exc.retry_after_s is not None and exc.retry_after_s > 10**8
        else:
            assert exc.retry_after_s == retry_after
    else:
        assert isinstance(exc, SinkRejected) and exc.status == status and exc.reason == message


@pytest.mark.parametrize(
    ("api", "status", "body"),
    [("v2", 422, b'{"code":"unprocessable entity","message":"failure writing points to database: '
                 b'partial write: points beyond retention policy dropped=3"}'),
     ("v1", 400, b'{"error":"partial write: unable to parse \'x y=1 1\': bad\\nunable to parse '
                 b'\'x y=2 1\': bad dropped=0"}')],
    ids=["v2-422", "v1-unparsed-lines"],
)
def test_partial_write_answers_are_accepted_and_counted(
    answering: http.server.ThreadingHTTPServer, tmp_path: Path, api: str, status: int, body: bytes,
) -> None:
    """The stand-in server again: InfluxDB 2.x is not installed here, so its 422 for a partial
    write is reproduced from its documented answer (never run against a live 2.x); 1.6 reports
    unparsable lines with dropped=0, one "unable to parse" each (seen live with a time out of
    range next to a good line)."""
    answering.answer = (status, {"Content-Type": "application/json"}, body)  # type: ignore[attr-defined]
    extra: dict[str, Any] = {"api": api}
    if api == "v2":
        extra.update(token=TOKEN, org="plant", bucket="tierproof")
    with InfluxStore(settings(f"http://127.0.0.1:{answering.server_address[1]}", tmp_path, **extra)) as store:
        (tid,) = store.register_tags([tag(1)]).values()
        store.write(Batch.of([tid], T0, 1.0))
        store.write(Batch.of([tid], T0, 1.0))
        assert store.stats().extra["partial_write_dropped_points"] == 6 if api == "v2" else 4


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_silent_server_times_out_as_unavailable(tmp_path: Path, api: str) -> None:
    """A port that accepts connections but never answers (a hung server)."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        url = f"http://127.0.0.1:{hung.getsockname()[1]}"
        extra: dict[str, Any] = {"api": api, "timeout_s": 0.3}
        if api == "v2":
            extra.update(token=TOKEN, org="plant", bucket="tierproof")
        with InfluxStore(settings(url, tmp_path, **extra)) as store:
            (tid,) = store.register_tags([tag(1)]).values()
            with pytest.raises(SinkUnavailable, match=r"(?i)timeout|timed out"):
                store.write(Batch.of([tid], T0, 1.0))


def test_password_never_in_logs_reprs_or_errors(
    influxdb16: InfluxDB16, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx's and influxdb-client's included
    for name in ("httpx", "httpcore", "influxdb_client"):  # the CLI quiets them (api.cli.main)
        caplog.set_level(logging.DEBUG, logger=name)
    s = settings(influxdb16.url, tmp_path, username="gateway", password=PASSWORD)
    texts: list[str] = [repr(s), str(s)]
    with InfluxStore(s) as store:  # 1.6 runs without auth here: it ignores the credentials
        (tid,) = store.register_tags([tag(1)]).values()
        store.write(Batch.of([tid], T0, 1.0))
        assert len(store.read(tid, T0, T0 + 1)) == 1
        store.open_gap("plc 1", T0, "test")
        texts += [repr(store), str(store.stats())]
        influxdb16.stop()
        with pytest.raises(SinkUnavailable) as info:
            store.write(Batch.of([tid], T0, 1.0))
        with pytest.raises(StoreError) as info_read:
            store.read(tid, T0, T0 + 1)
    for exc in (info.value, info_read.value):
        texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    texts.append(caplog.text)
    assert caplog.records  # the logging that was checked did happen
    for text in texts:
        assert PASSWORD not in text


def test_token_never_in_errors_even_when_echoed(
    answering: http.server.ThreadingHTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A misbehaving proxy that quotes the credentials back in its error text."""
    caplog.set_level(logging.DEBUG)
    body = f'{{"message":"bad token Token {TOKEN} for user:{PASSWORD}"}}'.encode()
    answering.answer = (400, {"Content-Type": "application/json"}, body)  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{answering.server_address[1]}"
    s = settings(url, tmp_path, api="v2", token=TOKEN, org="plant", bucket="tierproof",
                 password=PASSWORD, username="u")
    with InfluxStore(s) as store:
        (tid,) = store.register_tags([tag(1)]).values()
        with pytest.raises(SinkRejected) as info:
            store.write(Batch.of([tid], T0, 1.0))
        text = repr(store)
    assert "bad token Token ***" in str(info.value)
    for t in (str(info.value), info.value.reason, repr(info.value), text, caplog.text):
        assert TOKEN not in t and PASSWORD not in t


@pytest.mark.parametrize("shape", ["distinct", "runs", "short", "unknown-some", "unknown-all", "extremes"])
def test_timestamp_columns_match_a_per_point_encoding(shape: str) -> None:
    """The columnar timestamp formatting (runs, numpy digits, repr fallback) against the
    obvious per-point f-string, for each path it can take."""
    from store.batch import TS_UNKNOWN
    from store.influx.lp import LineEncoder

    rng = np.random.default_rng(7)
    n = 3000
    ts = T0 + rng.integers(0, 10**12, n)
    if shape == "runs":
        ts = np.repeat(ts[: n // 100], 100)
    srv = ts - rng.integers(0, 10**9, n)
    gw = ts + rng.integers(0, 10**9, n)
    if shape == "short":  # fewer than 19 digits (1970s, negative): the repr fallback
        srv = rng.integers(-(10**12), 10**17, n)
        gw = rng.integers(0, 10**9, n)
    elif shape == "unknown-some":
        srv[::7] = TS_UNKNOWN
    elif shape == "unknown-all":
        gw[:] = TS_UNKNOWN
    elif shape == "extremes":
        srv[::2], srv[1::2] = 10**18, 2**63 - 1
    batch = Batch.of(np.arange(n) % 5, ts, 1.5, server_ts_ns=srv, gateway_ts_ns=gw)
    keys = {i: f"m,signal=s{i}" for i in range(5)}

    def field(name: str, t: int) -> str:
        return f",{name}={t}i" if t != TS_UNKNOWN else ""

    want = "".join(
        f"m,signal=s{t % 5} value=1.5,quality={q}i{field('server_ts', s)}{field('gateway_ts', g)} {x}\n"
        for t, x, s, g, q in zip(range(n), ts.tolist(), srv.tolist(), gw.tolist(), batch.quality.tolist(),
                                 strict=True)
    )
    assert b"".join(LineEncoder(keys).encode(batch, 1000)).decode() == want
