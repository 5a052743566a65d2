"""The SQLite store against real database files: round trips, edges, crash and threads."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import store.sqlite.store as sq
from config.errors import StoreError
from config.store import SqliteStoreSettings
from store import STORES, Batch, Series, SqliteStore, Store, TagRecord, open_store

ROOT = Path(__file__).resolve().parents[3]
SEC = 10**9
DAY = 86_400 * SEC
T0 = 1_700_000_000 * SEC


def tag(i: int, **kw: object) -> TagRecord:
    fields: dict[str, object] = {
        "path": f"site/area/line/m{i % 7}/sig{i}", "asset": f"site/area/line/m{i % 7}",
        "role": "analog", "device": f"plc{i % 3}", "protocol": "modbus",
    }
    fields.update(kw)
    return TagRecord(**fields)  # type: ignore[arg-type]


def expected(tags: np.ndarray, ts: np.ndarray, vals: np.ndarray, q: np.ndarray,
             tid: int) -> Series:
    """Reference semantics: one tag's samples sorted by ts, of equal ts the last written."""
    m = tags == tid
    t, v, qq = ts[m], vals[m], q[m]
    order = np.argsort(t, kind="stable")
    t, v, qq = t[order], v[order], qq[order]
    keep = np.append(t[1:] != t[:-1], True) if len(t) else np.zeros(0, bool)
    return Series(t[keep], v[keep], qq[keep])


def window(s: Series, start: int, end: int, prior: bool) -> Series:
    lo = int(np.searchsorted(s.ts_ns, start, "left"))
    hi = int(np.searchsorted(s.ts_ns, end, "left"))
    if prior and lo > 0:
        lo -= 1
    return Series(s.ts_ns[lo:hi], s.value[lo:hi], s.quality[lo:hi])


def assert_series(got: Series, want: Series) -> None:
    np.testing.assert_array_equal(got.ts_ns, want.ts_ns)
    np.testing.assert_array_equal(got.value, want.value)  # exact, NaN == NaN
    np.testing.assert_array_equal(got.quality, want.quality)
    assert got.ts_ns.dtype == np.int64 and got.value.dtype == np.float64
    assert got.quality.dtype == np.uint8


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "t.db", compact_every=4)
    yield s
    s.close()


@pytest.fixture(params=["natural", "deep-levels"])
def levels(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Also run with tiny fan-out and a high chunk target, so that data sits in runs of
    several levels, in raw ingest rows and in chunks all at once."""
    if request.param == "deep-levels":
        monkeypatch.setattr(sq, "_FANOUT", 2)
        monkeypatch.setattr(sq, "_CHUNK_TARGET", 10**6)
    return str(request.param)


# --------------------------------------------------------------------------- round trips


def test_round_trip_across_compactions(tmp_path: Path, levels: str) -> None:
    rng = np.random.default_rng(1)
    n_tags = 40
    store = SqliteStore(tmp_path / "rt.db", compact_every=3)
    ids = list(store.register_tags([tag(i) for i in range(n_tags)]).values())
    written: list[Batch] = []
    for b in range(150):
        n = int(rng.integers(1, 120))
        batch = Batch(
            rng.choice(ids, n).astype(np.int32),
            # out of order, overlapping earlier batches, and some repeated ts
            T0 + rng.integers(0, 400, n).astype(np.int64) * SEC + b * 2 * SEC,
            rng.normal(0, 1, n),
            rng.integers(0, 4, n).astype(np.uint8),
        )
        store.write(batch)
        written.append(batch)
        if b % 37 == 0 or b == 149:
            a = Batch.concat(written)
            for tid in ids[:: 7]:
                want = expected(a.tag_id, a.ts_ns, a.value, a.quality, tid)
                start = T0 + int(rng.integers(0, 600)) * SEC
                end = start + int(rng.integers(1, 400)) * SEC
                for prior in (True, False):
                    assert_series(store.read(tid, start, end, prior=prior),
                                  window(want, start, end, prior))
    stats = store.stats()
    assert stats.batches_written == 150
    assert stats.points_written == sum(len(b) for b in written)
    if levels == "deep-levels":  # the case we meant to build: runs of several levels
        with sqlite3.connect(tmp_path / "rt.db") as c:
            lv = {r[0] for r in c.execute("SELECT level FROM ingest")}
        assert len(lv - {0}) >= 2
    a = Batch.concat(written)
    everything = store.read_many(ids, 0, 2**62, prior=False)
    for tid in ids:
        assert_series(everything[tid], expected(a.tag_id, a.ts_ns, a.value, a.quality, tid))
    store.close()
    # and the same after close (all flushed into chunks) and reopen
    with SqliteStore(tmp_path / "rt.db") as again:
        assert again.stats().extra["ingest_rows"] == 0
        for tid in ids:
            assert_series(again.read(tid, 0, 2**62, prior=False),
                          expected(a.tag_id, a.ts_ns, a.value, a.quality, tid))


def audit(path: Path, tid: int) -> list[tuple[int, float, int, str | None]]:
    """store/sqlite/SCHEMA.md's rule, from the raw file with sqlite3 + struct only."""
    import json
    import struct

    def texts(js: str | None) -> dict[int, str]:
        return {int(i): s for i, s in json.loads(js)} if js else {}

    out: list[tuple[int, float, int, str | None]] = []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as c:
        for n, ts, v, q, tx in c.execute(
            "SELECT n, ts, value, quality, texts FROM chunks WHERE tag_id = ? ORDER BY chunk_id",
            (tid,),
        ):
            t = texts(tx)
            out += [(a, b, d, t.get(i)) for i, (a, b, d) in enumerate(zip(
                struct.unpack(f"<{n}q", ts), struct.unpack(f"<{n}d", v),
                struct.unpack(f"<{n}B", q), strict=True))]
        for n, tags, ts, v, q, tx in c.execute(
            "SELECT n, tag_ids, ts, value, quality, texts FROM ingest ORDER BY seq"
        ):
            t = texts(tx)
            out += [(a, b, d, t.get(i)) for i, (g, a, b, d) in enumerate(zip(
                struct.unpack(f"<{n}i", tags), struct.unpack(f"<{n}q", ts),
                struct.unpack(f"<{n}d", v), struct.unpack(f"<{n}B", q), strict=True))
                if g == tid]
    c.close()
    out.sort(key=lambda s: s[0])  # stable
    return [s for k, s in enumerate(out) if k + 1 == len(out) or out[k + 1][0] != s[0]]


def test_schema_doc_rule_matches_reads(tmp_path: Path, levels: str) -> None:
    rng = np.random.default_rng(3)
    store = SqliteStore(tmp_path / "a.db", compact_every=2)
    for b in range(40):
        n = int(rng.integers(1, 30))
        text = np.array([f"s{b}" if r < 0.2 else None for r in rng.random(n)], dtype=object)
        store.write(Batch(rng.integers(1, 6, n).astype(np.int32),
                          T0 + rng.integers(0, 50, n).astype(np.int64), rng.normal(0, 1, n),
                          rng.integers(0, 3, n).astype(np.uint8), text))
        if b == 20:
            store.compact()
    for tid in range(1, 6):
        want = audit(tmp_path / "a.db", tid)
        got = store.read(tid, 0, 2**62, prior=False)
        assert got.ts_ns.tolist() == [s[0] for s in want]
        assert got.value.tolist() == [s[1] for s in want]
        assert got.quality.tolist() == [s[2] for s in want]
        assert store.read_text(tid, 0, 2**62) == [(s[0], s[3], s[2]) for s in want if s[3]]
    store.close()


def test_merge_also_by_volume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A few huge batches (a backfill) are merged before compact_every of them pile up."""
    monkeypatch.setattr(sq, "_MERGE_POINTS", 100)
    monkeypatch.setattr(sq, "_CHUNK_TARGET", 10**6)
    with SqliteStore(tmp_path / "v.db", compact_every=1000) as s:
        s.write(Batch.of(np.arange(60), T0, 1.0))
        assert counts(tmp_path / "v.db")[:2] == (1, 0)
        s.write(Batch.of(np.arange(60), T0 + SEC, 1.0))  # 120 points >= 100: merged
        with sqlite3.connect(tmp_path / "v.db") as c:
            assert c.execute("SELECT level, n FROM ingest").fetchall() == [(1, 120)]
        c.close()
        assert len(s.read(5, 0, 2**62)) == 2


def test_returned_arrays_are_new_and_writable(db: SqliteStore) -> None:
    db.write(Batch.of([1, 1], [T0, T0 + SEC], [1.0, 2.0]))
    db.compact()
    s = db.read(1, T0, T0 + 10 * SEC)
    assert all(a.flags.writeable and a.flags.owndata for a in s)
    s.value[:] = 99.0
    assert db.read(1, T0, T0 + 10 * SEC).value.tolist() == [1.0, 2.0]


def test_window_edges_are_half_open(db: SqliteStore) -> None:
    db.write(Batch.of([1, 1, 1, 1], [T0, T0 + 10, T0 + 20, T0 + 30], [0.0, 1.0, 2.0, 3.0]))
    assert db.read(1, T0 + 10, T0 + 30, prior=False).ts_ns.tolist() == [T0 + 10, T0 + 20]
    assert db.read(1, T0 + 10, T0 + 30).ts_ns.tolist() == [T0, T0 + 10, T0 + 20]
    assert db.read(1, T0 + 11, T0 + 30).ts_ns.tolist() == [T0 + 10, T0 + 20]
    assert db.read(1, T0 + 31, T0 + 40).ts_ns.tolist() == [T0 + 30]  # prior only
    assert len(db.read(1, T0 + 31, T0 + 40, prior=False)) == 0
    assert len(db.read(1, T0 - 100, T0)) == 0  # nothing before, nothing inside
    assert len(db.read(2, 0, 2**62)) == 0  # unknown tag: empty, not an error


def test_prior_sample_in_old_chunk_run_or_ingest(tmp_path: Path, levels: str) -> None:
    store = SqliteStore(tmp_path / "p.db", compact_every=2)
    # tag 1: one old sample, then a long silence while tag 2 fills many chunks
    store.write(Batch.of([1], [T0], [42.0], 1))
    store.compact()
    for k in range(30):
        store.write(Batch.of([2] * 10, T0 + (k * 10 + np.arange(10)) * SEC, 1.0))
        if k % 5 == 0:
            store.compact()
    store.compact()
    start = T0 + 100 * DAY
    got = store.read(1, start, start + SEC)
    assert got.ts_ns.tolist() == [T0] and got.value.tolist() == [42.0]
    assert got.quality.tolist() == [1]
    # a newer prior sits in ingest (not compacted): it wins over the chunk
    store.write(Batch.of([1], [T0 + 50 * DAY], [7.0]))
    assert store.read(1, start, start + SEC).value.tolist() == [7.0]
    # an older sample written later does not become the prior
    store.write(Batch.of([1], [T0 + 10 * DAY], [8.0]))
    store.write(Batch.of([2], [start + 5 * SEC], [0.0]))  # push raw rows into a run
    assert store.read(1, start, start + SEC).value.tolist() == [7.0]
    # prior from a chunk that overlaps start (samples on both sides of it)
    store.compact()
    store.write(Batch.of([3, 3], [start - SEC, start + SEC], [1.0, 2.0]))
    store.compact()
    assert store.read(3, start, start + 2 * SEC).value.tolist() == [1.0, 2.0]
    store.close()


def test_duplicate_ts_keep_last_written(tmp_path: Path, levels: str) -> None:
    store = SqliteStore(tmp_path / "d.db", compact_every=2)
    ts = T0 + np.arange(5) * SEC
    store.write(Batch.of([1] * 5, ts, [1.0] * 5))
    store.compact()  # first copy in a chunk
    store.write(Batch.of([1] * 5, ts, [2.0] * 5, 2))  # re-sent: in ingest
    assert store.read(1, T0, T0 + 10 * SEC).value.tolist() == [2.0] * 5
    assert store.read(1, T0, T0 + 10 * SEC).quality.tolist() == [2] * 5
    # within one batch, the later position wins
    store.write(Batch.of([1, 1], [ts[2], ts[2]], [3.0, 4.0]))
    store.write(Batch.of([9], [T0], [0.0]))  # triggers a merge (compact_every=2)
    assert store.read(1, T0, T0 + 10 * SEC).value.tolist() == [2.0, 2.0, 4.0, 2.0, 2.0]
    store.compact()
    store.write(Batch.of([1], [ts[0]], [5.0]))
    store.compact()  # now duplicates across two chunks
    assert store.read(1, T0, T0 + 10 * SEC).value.tolist() == [5.0, 2.0, 4.0, 2.0, 2.0]
    assert store.latest([1])[1].value == 2.0  # ts[4]
    store.close()


# --------------------------------------------------------------------------- texts, latest


def test_texts(tmp_path: Path, levels: str) -> None:
    store = SqliteStore(tmp_path / "x.db", compact_every=2)
    text = np.array(["idle", None, "running ✓"], dtype=object)
    store.write(Batch(np.array([5, 6, 5], np.int32), np.array([T0, T0, T0 + SEC], np.int64),
                      np.array([np.nan, 3.0, np.nan]), np.array([0, 0, 1], np.uint8), text))
    assert store.read_text(5, T0, T0 + 10 * SEC) == [(T0, "idle", 0), (T0 + SEC, "running ✓", 1)]
    assert store.read_text(6, T0, T0 + 10 * SEC) == []
    assert np.isnan(store.read(5, T0, T0 + 10 * SEC).value).all()
    assert store.latest([5])[5].text == "running ✓"
    store.write(Batch.of([7], [T0], [1.0]))  # merge into a run
    store.write(Batch.of([7], [T0 + SEC], [1.0]))
    assert store.read_text(5, T0 + SEC, T0 + 10 * SEC) == [(T0 + SEC, "running ✓", 1)]
    store.compact()
    assert store.read_text(5, T0, T0 + 10 * SEC) == [(T0, "idle", 0), (T0 + SEC, "running ✓", 1)]
    lt = store.latest([5, 6])
    assert lt[5].text == "running ✓" and np.isnan(lt[5].value) and lt[5].quality == 1
    assert lt[6].text is None and lt[6].value == 3.0
    # a numeric re-send at the same ts replaces the text
    store.write(Batch.of([5], [T0], [1.5]))
    assert store.read_text(5, T0, T0 + 10 * SEC) == [(T0 + SEC, "running ✓", 1)]
    store.compact()
    assert store.read_text(5, T0, T0 + 10 * SEC) == [(T0 + SEC, "running ✓", 1)]
    assert store.read(5, T0, T0 + SEC).value.tolist() == [1.5]
    store.close()


def test_latest_and_last_ts(tmp_path: Path, levels: str) -> None:
    store = SqliteStore(tmp_path / "l.db", compact_every=3)
    assert store.latest([1, 2]) == {} and store.last_ts([1]) is None
    store.write(Batch.of([1, 2, 1], [T0 + 5, T0 + 1, T0 + 3], [1.0, 2.0, 3.0], [0, 1, 0]))
    got = store.latest([1, 2, 3])
    assert set(got) == {1, 2}
    assert (got[1].ts_ns, got[1].value) == (T0 + 5, 1.0)
    assert (got[2].ts_ns, got[2].value, got[2].quality) == (T0 + 1, 2.0, 1)
    store.compact()  # now from the latest table
    assert store.latest([1])[1].value == 1.0
    store.write(Batch.of([1], [T0 + 2], [9.0]))  # backfill of older data: not the latest
    assert store.latest([1])[1].value == 1.0
    store.write(Batch.of([1], [T0 + 5], [6.0]))  # same ts re-sent: the last written wins
    assert store.latest([1])[1].value == 6.0
    store.write(Batch.of([2], [T0 + 9], [np.nan], 2))  # NaN survives (SQLite would say NULL)
    assert store.last_ts([1, 2]) == T0 + 9 and store.last_ts([1]) == T0 + 5
    store.compact()
    assert store.latest([1])[1].value == 6.0
    got2 = store.latest([2])[2]
    assert np.isnan(got2.value) and got2.quality == 2
    assert store.last_ts([1, 2]) == T0 + 9
    many = store.latest(list(range(1, 2000)))  # more ids than one IN (...) list takes
    assert set(many) == {1, 2}
    store.close()


# --------------------------------------------------------------------------- tags, gaps


def test_tag_ids_stable_across_reopen_and_updates(tmp_path: Path) -> None:
    path = tmp_path / "tags.db"
    with SqliteStore(path) as s:
        first = s.register_tags([tag(i) for i in range(5)])
        assert sorted(first.values()) == [1, 2, 3, 4, 5]
    with SqliteStore(path) as s:
        # reordered, one new, one changed: ids by path stay
        changed = tag(0, role="state", unit="", enum={3: "Executing", 0: "NotAvailable"})
        recs = [tag(4), tag(9), changed]
        again = s.register_tags(recs)
        assert again[tag(4).path] == first[tag(4).path]
        assert again[tag(0).path] == first[tag(0).path]
        assert again[tag(9).path] == 6
        by_path = {t.path: t for t in s.tags()}
    t0 = by_path[tag(0).path]
    assert t0.role == "state" and t0.tag_id == first[tag(0).path]
    assert t0.enum == {0: "NotAvailable", 3: "Executing"}  # int keys back from JSON
    assert by_path[tag(1).path].enum is None and len(by_path) == 6
    with SqliteStore(path) as s:
        assert [t.tag_id for t in s.tags()] == [1, 2, 3, 4, 5, 6]


def test_gaps(db: SqliteStore) -> None:
    a = db.open_gap("plc1", T0, "connection refused")
    b = db.open_gap("plc2", T0 + 10 * SEC, "timeout")
    db.close_gap(a, T0 + 5 * SEC)
    assert [g.gap_id for g in db.gaps(None, T0, T0 + DAY)] == [a, b]
    assert [g.gap_id for g in db.gaps("plc2", T0, T0 + DAY)] == [b]
    assert db.gaps("plc1", T0 + 5 * SEC, T0 + DAY) == []  # [start, end) touches, no overlap
    assert db.gaps(None, T0 - 10, T0) == []
    got = db.gaps("plc1", T0 + 4 * SEC, T0 + DAY)[0]
    assert (got.device, got.start_ns, got.end_ns, got.reason) == (
        "plc1", T0, T0 + 5 * SEC, "connection refused")
    # an open gap overlaps everything after its start
    assert db.gaps("plc2", T0 + 1000 * DAY, T0 + 1001 * DAY)[0].end_ns is None
    assert db.gaps("plc2", T0, T0 + 10 * SEC) == []
    with pytest.raises(StoreError, match="no gap 999"):
        db.close_gap(999, T0)
    with pytest.raises(StoreError, match="before its start"):
        db.close_gap(b, T0)


# --------------------------------------------------------------------------- retention, stats


def test_retention(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "r.db", retention_days=1, compact_every=1000)
    ts = T0 + np.arange(0, 48) * 3600 * SEC  # two days, hourly
    for k in range(0, 48, 12):  # 4 chunks per tag, 12 samples each
        store.write(Batch.of(np.repeat([1, 2], 12), np.tile(ts[k:k + 12], 2), 1.0))
        store.compact()
    text = np.full(4, None, dtype=object)
    text[1] = "kept"
    text[0] = "dropped"
    store.write(Batch(np.full(4, 3, np.int32), ts[[20, 30, 31, 32]], np.full(4, np.nan),
                      np.zeros(4, np.uint8), text))
    store.write(Batch.of([1], [ts[47] + SEC], 2.0))  # still in ingest when retention runs
    g_old = store.open_gap("plc1", T0, "x")
    store.close_gap(g_old, T0 + SEC)
    g_open = store.open_gap("plc2", T0, "y")
    now = ts[30] + DAY  # horizon = ts[30]: samples 0..29 go
    deleted = store.apply_retention(now)
    assert deleted == 30 + 30 + 1  # tags 1, 2 and the first text sample of tag 3
    assert store.read(1, 0, 2**62, prior=False).ts_ns.tolist() == [*ts[30:].tolist(), ts[47] + SEC]
    assert store.read(2, 0, ts[30], prior=True).ts_ns.tolist() == []  # nothing before horizon
    assert store.read_text(3, 0, 2**62) == [(int(ts[30]), "kept", 0)]
    assert [g.gap_id for g in store.gaps(None, 0, 2**62)] == [g_open]
    assert store.apply_retention(now) == 0  # idempotent
    store.close()
    with SqliteStore(tmp_path / "k.db") as forever:
        forever.write(Batch.of([1], [T0], 1.0))
        assert forever.apply_retention(T0 + 10**6 * DAY) == 0
        assert len(forever.read(1, 0, 2**62)) == 1


def test_stats_and_registry(tmp_path: Path) -> None:
    s = open_store(SqliteStoreSettings(path=str(tmp_path / "sub" / "s.db"), compact_every=2))
    assert isinstance(s, SqliteStore) and isinstance(s, Store)
    assert set(STORES) == {"sqlite", "influx"} and s.compact_every == 2
    s.write(Batch.of([1, 2, 3], T0, 1.0))
    s.write(Batch.empty())  # nothing to store: not a batch
    st = s.stats()
    assert (st.batches_written, st.points_written) == (1, 3)
    assert st.extra["ingest_rows"] == 1 and st.extra["chunks"] == 0
    assert isinstance(st.extra["db_bytes"], int) and st.extra["db_bytes"] > 0
    s.compact()
    assert s.stats().extra["chunks"] == 3 and s.stats().extra["ingest_rows"] == 0
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.read(1, 0, 1)


# --------------------------------------------------------------------------- refusals, errors


def test_newer_schema_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    SqliteStore(path).close()
    with sqlite3.connect(path) as c:
        c.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    c.close()
    with pytest.raises(StoreError, match=r"future\.db.*version 99 is newer"):
        SqliteStore(path)


def test_foreign_and_corrupt_files_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE points (x)")
    c.close()
    with pytest.raises(StoreError, match=r"other\.db: not a tierproof store"):
        SqliteStore(other)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"junk\.db: open failed") as info:
        SqliteStore(junk)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


def test_readonly_reader_beside_the_writer(tmp_path: Path) -> None:
    """``readonly=True`` (an assessment worker's store, api.assetsplit): reads what the writer
    committed, never writes (a write is a StoreError naming the file, close neither compacts
    nor checkpoints), and neither creates nor migrates a file."""
    path = tmp_path / "ro.db"
    with pytest.raises(StoreError, match=r"ro\.db: no such store to open read-only"):
        SqliteStore(path, readonly=True)
    assert not path.exists()
    writer = SqliteStore(path, compact_every=1000)
    (tid,) = writer.register_tags([tag(1)]).values()
    writer.write(Batch.of([tid], [T0], [1.5]))
    reader = SqliteStore(path, readonly=True)
    assert [t.path for t in reader.tags()] == [tag(1).path]
    assert_series(reader.read(tid, 0, 2**62, prior=False), Series(
        np.array([T0], np.int64), np.array([1.5]), np.array([0], np.uint8)))
    with pytest.raises(StoreError, match=r"ro\.db: write.*read-only"):
        reader.write(Batch.of([tid], [T0 + SEC], [2.0]))
    with pytest.raises(StoreError, match=r"read-only"):
        reader.register_tags([tag(2)])
    writer.write(Batch.of([tid], [T0 + SEC], [2.5]))  # seen by the reader's next read
    assert reader.read(tid, 0, 2**62, prior=False).value.tolist() == [1.5, 2.5]
    reader.close()
    assert writer.stats().extra["ingest_rows"] == 2  # the reader's close compacted nothing
    writer.close()
    with sqlite3.connect(path) as c:
        c.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    c.close()
    with pytest.raises(StoreError, match=r"schema version 5, this tierproof reads"):
        SqliteStore(path, readonly=True)


# --------------------------------------------------------------------------- crash safety


def counts(path: Path) -> tuple[int, int, int]:
    """(ingest rows, chunk rows, points in both) as another process would see them."""
    with sqlite3.connect(path) as c:
        (ingest, pi), (chunks, pc) = (
            c.execute(f"SELECT count(*), coalesce(sum(n), 0) FROM {t}").fetchone()
            for t in ("ingest", "chunks")
        )
    c.close()
    return ingest, chunks, pi + pc


@pytest.mark.parametrize("step", ["flush", "merge"])
def test_failed_compaction_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """A failure at the last statement of a merge or flush (the DELETE of its sources) must
    leave the file exactly as before: one transaction. A write that triggered it still
    succeeds (it was durable before), and the work is retried at the next write."""
    monkeypatch.setattr(sq, "_CHUNK_TARGET", 10**6 if step == "merge" else 1)
    path = tmp_path / "f.db"
    store = SqliteStore(path, compact_every=3)
    store.write(Batch.of([1, 2], T0, 1.0))
    store.write(Batch.of([1, 2], T0 + SEC, 2.0))
    before = counts(path)
    store._w.execute(
        "CREATE TEMP TRIGGER no_delete BEFORE DELETE ON main.ingest"
        " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
    )
    with caplog.at_level("ERROR", logger="store.sqlite"):
        store.write(Batch.of([1, 2], T0 + 2 * SEC, 3.0))  # durable, then compaction fails
    assert "compaction failed" in caplog.text
    assert counts(path) == (before[0] + 1, 0, before[2] + 2)  # the write, nothing else
    with pytest.raises(StoreError, match=r"f\.db: compact failed: injected failure"):
        store.compact()
    assert counts(path) == (before[0] + 1, 0, before[2] + 2)
    assert store.read(1, T0, T0 + 10 * SEC).value.tolist() == [1.0, 2.0, 3.0]
    store._w.execute("DROP TRIGGER no_delete")
    store.write(Batch.of([1, 2], T0 + 3 * SEC, 4.0))  # retried now
    ingest, chunks, points = counts(path)
    assert points == 8 and (chunks == 2 if step == "flush" else ingest == 1)
    assert store.read(1, T0, T0 + 10 * SEC).value.tolist() == [1.0, 2.0, 3.0, 4.0]
    store.close()


CRASH_SCRIPT = """
import sys
import numpy as np
import store.sqlite.store as sq
from store import Batch, SqliteStore

sq._FANOUT = 2  # many merges and flushes in flight when the kill comes
sq._CHUNK_TARGET = int(sys.argv[2])
s = SqliteStore(sys.argv[1], compact_every=3)
start = int(sys.argv[3])
tags = np.arange(1, 21, dtype=np.int32)
for i in range(start, start + 100_000):
    s.write(Batch.of(tags, i, float(i)))
    print(i, flush=True)  # acknowledged: write() returned
"""


@pytest.mark.parametrize("kill_after", [7, 40, 150])
def test_crash_keeps_every_acknowledged_batch(tmp_path: Path, kill_after: int) -> None:
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(CRASH_SCRIPT))
    path = tmp_path / "crash.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    acked = -1
    for round_, target in enumerate((4, 10**6)):  # second round: reopen after a crash, crash again
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path), str(target), str(acked + 1)],
            stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
        )
        assert proc.stdout is not None
        for _ in range(kill_after + round_ * 13):
            line = proc.stdout.readline()
            assert line, "writer died before the kill"
            acked = int(line)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
        with SqliteStore(path) as s:
            got = s.read_many(list(range(1, 21)), 0, 2**62, prior=False)
        # Every acknowledged batch is there; the child may have written more before the
        # kill landed (it does not wait for us to read its acks). Each batch is whole (all
        # tags have it) and there exactly once.
        n = len(got[1])
        assert n >= acked + 1, (n, acked)
        for series in got.values():
            assert series.ts_ns.tolist() == list(range(n))
            assert series.value.tolist() == [float(i) for i in range(n)]
        acked = len(got[1]) - 1  # continue after what is stored
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    c.close()


# --------------------------------------------------------------------------- threads


def test_concurrent_writer_and_readers(tmp_path: Path, levels: str) -> None:
    store = SqliteStore(tmp_path / "c.db", compact_every=3)
    tags = list(range(1, 31))
    n_batches = 150
    errors: list[BaseException] = []
    done = threading.Event()
    first = threading.Event()  # readers start once there is something to read
    # the writer's second half waits for a read done: the writer could otherwise write all
    # its batches before any reader finished one (CI rehearsal /tmp/ci66: reads 0)
    some_read = threading.Event()
    reads = [0]

    def writer() -> None:
        try:
            for i in range(n_batches):
                store.write(Batch.of(tags, T0 + i * SEC, float(i)))
                first.set()
                if i == n_batches // 2:
                    some_read.wait(30)
                if i % 50 == 49:
                    store.compact()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            first.set()
            done.set()

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        first.wait(60)
        try:
            while not done.is_set():
                got = store.read_many(rng.choice(tags, 3, replace=False).tolist(),
                                      T0, T0 + n_batches * SEC, prior=False)
                lengths = {len(s) for s in got.values()}
                # one snapshot: every tag saw the same batches, each batch whole and once
                assert len(lengths) == 1, lengths
                for s in got.values():
                    assert s.ts_ns.tolist() == [T0 + i * SEC for i in range(len(s))]
                    assert s.value.tolist() == [float(i) for i in range(len(s))]
                lt = store.latest(tags[:5])
                assert len({v.ts_ns for v in lt.values()}) == 1  # one snapshot
                reads[0] += 1
                some_read.set()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader, args=(k,)) for k in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[0]
    assert reads[0] > 0
    final = store.read_many(tags, T0, T0 + n_batches * SEC, prior=False)
    assert all(len(s) == n_batches for s in final.values())
    store.close()
