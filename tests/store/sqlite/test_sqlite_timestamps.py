"""Server and gateway timestamps: the Batch columns, and the SQLite store keeping them
through ingest, merges, flushes, retention and a migration of a version 1 file."""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

import numpy as np
import pytest

import store.sqlite.store as sq
from store import SCHEMA_VERSION, TS_UNKNOWN, Batch, SqliteStore, Store, TagRecord

SEC = 10**9
DAY = 86_400 * SEC
T0 = 1_700_000_000 * SEC
END = 2**62
U = TS_UNKNOWN

Ref = dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]


@pytest.fixture(params=["natural", "deep-levels"])
def levels(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Also with tiny fan-out and a high chunk target: data in raw ingest rows, runs of
    several levels and chunks at once."""
    if request.param == "deep-levels":
        monkeypatch.setattr(sq, "_FANOUT", 2)
        monkeypatch.setattr(sq, "_CHUNK_TARGET", 10**6)
    return str(request.param)


def reference(written: list[Batch]) -> Ref:
    """Per tag: (ts, server_ts, gateway_ts) by the store's one rule (stable sort by ts, of
    equal ts the last written), computed from what was written."""
    a = Batch.concat(written)
    n = len(a)
    srv = a.server_ts_ns if a.server_ts_ns is not None else np.full(n, U, np.int64)
    gw = a.gateway_ts_ns if a.gateway_ts_ns is not None else np.full(n, U, np.int64)
    out: Ref = {}
    for tid in np.unique(a.tag_id).tolist():
        m = a.tag_id == tid
        t, s, g = a.ts_ns[m], srv[m], gw[m]
        order = np.argsort(t, kind="stable")
        t, s, g = t[order], s[order], g[order]
        keep = np.append(t[1:] != t[:-1], True)
        out[tid] = (t[keep], s[keep], g[keep])
    return out


def assert_times(store: Store, ref: Ref, start: int = 0, end: int = END) -> None:
    for tid, (t, s, g) in ref.items():
        inside = (t >= start) & (t < end)
        got = store.read_timestamps(tid, start, end)
        np.testing.assert_array_equal(got[0], t[inside], err_msg=f"tag {tid} ts")
        np.testing.assert_array_equal(got[1], s[inside], err_msg=f"tag {tid} server_ts")
        np.testing.assert_array_equal(got[2], g[inside], err_msg=f"tag {tid} gateway_ts")
        assert all(x.dtype == np.int64 and x.flags.writeable for x in got)
        # the same samples as read()
        np.testing.assert_array_equal(store.read(tid, start, end, prior=False).ts_ns, got[0])


def null_counts(path: Path, table: str) -> tuple[int, int, int]:
    """(rows, rows with server_ts NULL, rows with gateway_ts NULL)"""
    with sqlite3.connect(path) as c:
        row = c.execute(
            f"SELECT count(*), sum(server_ts IS NULL), sum(gateway_ts IS NULL) FROM {table}"
        ).fetchone()
    c.close()
    return int(row[0]), int(row[1] or 0), int(row[2] or 0)


# --------------------------------------------------------------------------- Batch


def test_batch_columns_are_validated() -> None:
    ids, ts = np.array([1, 2], np.int32), np.array([T0, T0], np.int64)
    v, q = np.zeros(2), np.zeros(2, np.uint8)
    with pytest.raises(TypeError, match="server_ts_ns must be int64"):
        Batch(ids, ts, v, q, None, np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"gateway_ts_ns must be 1-D of length 2"):
        Batch(ids, ts, v, q, None, None, np.array([T0], np.int64))
    b = Batch.of([1, 2], T0, 1.0, server_ts_ns=T0 + 1, gateway_ts_ns=[T0 + 2, T0 + 3])
    assert b.server_ts_ns is not None and b.server_ts_ns.tolist() == [T0 + 1, T0 + 1]
    assert b.gateway_ts_ns is not None and b.gateway_ts_ns.tolist() == [T0 + 2, T0 + 3]
    assert Batch.of([1], T0, 1.0).server_ts_ns is None


def test_concat_fills_unknown_for_batches_without_the_columns() -> None:
    plain = Batch.of([1, 2], T0, 1.0)
    srv_only = Batch.of([3], T0, 1.0, server_ts_ns=T0 - 5)
    gw_only = Batch.of([4], T0, 1.0, gateway_ts_ns=T0 + 5)
    c = Batch.concat([plain, srv_only, gw_only])
    assert c.server_ts_ns is not None and c.server_ts_ns.tolist() == [U, U, T0 - 5, U]
    assert c.gateway_ts_ns is not None and c.gateway_ts_ns.tolist() == [U, U, U, T0 + 5]
    neither = Batch.concat([plain, Batch.of([5], T0, 2.0)])
    assert neither.server_ts_ns is None and neither.gateway_ts_ns is None


# --------------------------------------------------------------------------- store


def random_batch(rng: np.random.Generator, b: int, kind: str) -> Batch:
    n = int(rng.integers(1, 60))
    tag = rng.integers(1, 13, n).astype(np.int32)
    # out of order, overlapping earlier batches, repeated ts: re-sent samples
    ts = T0 + rng.integers(0, 300, n).astype(np.int64) * SEC + b * SEC
    srv = gw = None
    if kind in ("server", "both", "partial"):
        srv = ts + rng.integers(1, 1000, n).astype(np.int64)  # distinct per write
    if kind in ("gateway", "both", "partial"):
        gw = ts + 10**6 + rng.integers(1, 1000, n).astype(np.int64)
    if kind == "partial":  # some samples without a server or gateway time
        assert srv is not None and gw is not None
        srv[rng.random(n) < 0.3] = U
        gw[rng.random(n) < 0.3] = U
    return Batch(tag, ts, rng.normal(0, 1, n), np.zeros(n, np.uint8), None, srv, gw)


def test_round_trip_through_merges_flushes_and_reopen(tmp_path: Path, levels: str) -> None:
    rng = np.random.default_rng(11)
    kinds = ["none", "server", "gateway", "both", "partial"]
    path = tmp_path / "ts.db"
    store = SqliteStore(path, compact_every=3)
    written: list[Batch] = []
    for b in range(120):
        batch = random_batch(rng, b, kinds[int(rng.integers(0, len(kinds)))])
        store.write(batch)
        written.append(batch)
        if b % 29 == 0:
            ref = reference(written)
            assert_times(store, ref)
            start = T0 + int(rng.integers(0, 200)) * SEC
            assert_times(store, ref, start, start + int(rng.integers(1, 200)) * SEC)
        if b == 60:
            store.compact()  # some history in chunks, the rest in ingest
    if levels == "deep-levels":  # runs of several levels really held the columns
        with sqlite3.connect(path) as c:
            lv = {r[0] for r in c.execute("SELECT level FROM ingest WHERE server_ts NOT NULL")}
        c.close()
        assert len(lv - {0}) >= 1
    ref = reference(written)
    assert_times(store, ref)
    store.close()
    with SqliteStore(path) as again:  # every row in chunks now, and a cold cache
        assert again.stats().extra["ingest_rows"] == 0
        assert_times(again, ref)


def test_cold_cache_reads_runs_with_and_without_the_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs (level >= 1) are read from their blobs by a reader that never saw them written:
    one run with both columns, one with neither, one with the server column only."""
    monkeypatch.setattr(sq, "_CHUNK_TARGET", 10**6)
    path = tmp_path / "runs.db"
    written = [
        Batch.of([1, 2], [T0, T0 + SEC], 1.0, server_ts_ns=T0 - 1, gateway_ts_ns=T0 + 1),
        Batch.of([1, 2], [T0 + 2 * SEC, T0 + 3 * SEC], 2.0),
        Batch.of([1, 2], [T0 + 4 * SEC, T0 + SEC], 3.0, server_ts_ns=[T0 - 2, T0 - 3]),
    ]
    with SqliteStore(path, compact_every=1) as writer:
        for b in written:
            writer.write(b)  # each batch becomes its own level 1 run
        with sqlite3.connect(path) as c:
            runs = c.execute(
                "SELECT level, server_ts IS NULL, gateway_ts IS NULL FROM ingest ORDER BY seq"
            ).fetchall()
        c.close()
        assert runs == [(1, 0, 0), (1, 1, 1), (1, 0, 1)]
        assert_times(writer, reference(written))  # the runs as the writer cached them
        with SqliteStore(path) as reader:  # its own, empty cache of runs
            assert_times(reader, reference(written))
            # tag 2 at T0 + 1 s: re-sent in the last batch, which wins with its own times
            ts, srv, gw = reader.read_timestamps(2, T0 + SEC, T0 + 2 * SEC)
            assert (ts.tolist(), srv.tolist(), gw.tolist()) == ([T0 + SEC], [T0 - 3], [U])
            reader.compact()  # moved into chunks; the writer's snapshot-free reads agree
        assert_times(writer, reference(written))


def test_batches_without_the_columns_store_nulls(tmp_path: Path) -> None:
    """Modbus-like batches (and tags) cost nothing: NULL in ingest and in their chunks, even
    when a flush mixes them with OPC UA samples that have the columns."""
    path = tmp_path / "n.db"
    with SqliteStore(path, compact_every=1000) as s:
        s.write(Batch.of([1, 2, 3], T0, 1.0))
        s.write(Batch.of([4], T0, 1.0, server_ts_ns=U, gateway_ts_ns=U))  # all unknown
        s.write(Batch.of([5, 6], T0, 1.0, server_ts_ns=[T0 - 1, U], gateway_ts_ns=T0 + 1))
        assert null_counts(path, "ingest") == (3, 2, 2)
        s.compact()
        assert null_counts(path, "chunks") == (6, 5, 4)  # tag 6 has a gateway time only
        with sqlite3.connect(path) as c:
            (blob,) = c.execute("SELECT server_ts FROM chunks WHERE tag_id = 5").fetchone()
        c.close()
        assert struct.unpack("<q", blob) == (T0 - 1,)  # the documented encoding
        assert s.read_timestamps(1, 0, END)[1].tolist() == [U]
        _, srv6, gw6 = s.read_timestamps(6, 0, END)
        assert (srv6.tolist(), gw6.tolist()) == ([U], [T0 + 1])
        assert [len(x) for x in s.read_timestamps(99, 0, END)] == [0, 0, 0]


def test_retention_trims_the_columns_with_the_samples(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "r.db", retention_days=1, compact_every=1000)
    ts = T0 + np.arange(48, dtype=np.int64) * 3600 * SEC  # two days, hourly
    srv = ts - 7
    srv[30:] = U  # only samples before the horizon have server times
    s.write(Batch(np.full(48, 1, np.int32), ts, np.ones(48), np.zeros(48, np.uint8), None,
                  srv, ts + 9))
    s.compact()
    now = int(ts[30]) + DAY  # horizon = ts[30]
    assert s.apply_retention(now) == 30
    got = s.read_timestamps(1, 0, END)
    assert got[0].tolist() == ts[30:].tolist()
    assert got[1].tolist() == [U] * 18
    assert got[2].tolist() == (ts[30:] + 9).tolist()
    s.close()
    # the trimmed chunk holds no server time any more: NULL, as if never given one
    assert null_counts(tmp_path / "r.db", "chunks") == (1, 1, 0)


# --------------------------------------------------------------------------- migration

V1_INGEST = ["seq", "level", "n", "t_min", "t_max", "tag_ids", "ts", "value", "quality", "texts"]
V1_CHUNKS = ["chunk_id", "tag_id", "t_min", "t_max", "n", "ts", "value", "quality", "texts"]


def make_v1_file(path: Path) -> None:
    """A schema version 1 file with data in chunks and in ingest: written by this store,
    then the two columns dropped and the version set back, which gives exactly the v1
    layout (the columns were appended last), checked column by column."""
    with SqliteStore(path) as s:
        s.register_tags([TagRecord("s/a/l/m/x", "s/a/l/m", "analog", "plc", "modbus")])
        s.write(Batch.of([1, 1], [T0, T0 + SEC], [1.0, 2.0]))
    with sqlite3.connect(path) as c:
        for col in ("crc_extra", "crc", "crc_tags"):  # version 6's
            c.execute(f"ALTER TABLE ingest DROP COLUMN {col}")
        c.execute("ALTER TABLE damage DROP COLUMN seq")
        c.execute("ALTER TABLE chunks DROP COLUMN crc_extra")  # version 5's
        c.execute("ALTER TABLE chunks DROP COLUMN crc")
        c.execute("DROP TABLE damage")
        for table in ("ingest", "chunks"):
            for col in ("server_ts", "gateway_ts"):
                c.execute(f"ALTER TABLE {table} DROP COLUMN {col}")
        c.execute("ALTER TABLE gaps DROP COLUMN asset")  # version 3's
        c.execute("DROP TABLE rollups")  # version 4's
        c.execute("INSERT INTO gaps (device, start_ns, end_ns, reason) VALUES ('plc', 1, 2, 'old')")
        c.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        # a pending batch, as v1 wrote it
        c.execute(
            "INSERT INTO ingest (level, n, t_min, t_max, tag_ids, ts, value, quality, texts)"
            " VALUES (0, 1, ?, ?, ?, ?, ?, ?, NULL)",
            (T0 + 2 * SEC, T0 + 2 * SEC, struct.pack("<i", 1), struct.pack("<q", T0 + 2 * SEC),
             struct.pack("<d", 3.0), struct.pack("<B", 0)),
        )
        assert [r[1] for r in c.execute("PRAGMA table_info(ingest)")] == V1_INGEST
        assert [r[1] for r in c.execute("PRAGMA table_info(chunks)")] == V1_CHUNKS
    c.close()


def test_version_1_file_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    make_v1_file(path)
    assert SCHEMA_VERSION == 6
    with SqliteStore(path, compact_every=1) as s:
        with sqlite3.connect(path) as c:
            assert c.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("6",)
            # and the gaps table gained its asset column (version 2 -> 3)
            assert [r[1] for r in c.execute("PRAGMA table_info(gaps)")][-1] == "asset"
            # and the rollups table (3 -> 4), empty
            assert c.execute("SELECT count(*) FROM rollups").fetchone() == (0,)
            assert [r[1] for r in c.execute("PRAGMA table_info(ingest)")] == [
                *V1_INGEST, "server_ts", "gateway_ts", "crc_tags", "crc", "crc_extra"]
            # migrated ingest rows unverified (5 -> 6): crc NULL, still read (below)
            assert c.execute("SELECT count(*) FROM ingest WHERE crc IS NULL").fetchone() == (1,)
            assert [r[1] for r in c.execute("PRAGMA table_info(damage)")][-1] == "seq"
            assert [r[1] for r in c.execute("PRAGMA table_info(chunks)")] == [
                *V1_CHUNKS, "server_ts", "gateway_ts", "crc", "crc_extra"]
            # and the damage table (4 -> 5), empty; migrated chunks unverified (crc NULL)
            assert c.execute("SELECT count(*) FROM damage").fetchone() == (0,)
            assert c.execute("SELECT count(*) FROM chunks WHERE crc IS NULL").fetchone()[0] > 0
        c.close()
        assert [t.path for t in s.tags()] == ["s/a/l/m/x"]
        (gap,) = s.gaps("plc", 0, END)  # an old gap covers its whole device
        assert (gap.start_ns, gap.end_ns, gap.reason, gap.asset) == (1, 2, "old", None)
        old = s.read(1, 0, END, prior=False)
        assert old.ts_ns.tolist() == [T0, T0 + SEC, T0 + 2 * SEC]
        assert old.value.tolist() == [1.0, 2.0, 3.0]
        assert s.read_timestamps(1, 0, END)[1].tolist() == [U, U, U]
        # new samples with their times, merged with the migrated pending row
        s.write(Batch.of([1], T0 + 3 * SEC, 4.0, server_ts_ns=T0, gateway_ts_ns=T0 + 5 * SEC))
        got = s.read_timestamps(1, 0, END)
        assert got[1].tolist() == [U, U, U, T0] and got[2].tolist() == [U, U, U, T0 + 5 * SEC]
        checked = s.verify()  # unverified chunks that decode are not damage
        assert checked.damage == [] and checked.unverified == checked.chunks >= 1
    with SqliteStore(path) as again:  # opened again: already version 6, nothing to do
        assert again.read_timestamps(1, 0, END)[2].tolist() == [U, U, U, T0 + 5 * SEC]
        assert again.latest([1])[1].value == 4.0


def test_failed_migration_leaves_the_version_1_file(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    make_v1_file(path)
    with sqlite3.connect(path) as c:
        # a column of that name already there makes the migration's ALTER fail half-way
        c.execute("ALTER TABLE chunks ADD COLUMN gateway_ts BLOB")
    c.close()
    with pytest.raises(sq.StoreError, match=r"v1\.db: open failed.*gateway_ts"):
        SqliteStore(path)
    with sqlite3.connect(path) as c:
        assert c.execute(
            "SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)
        assert [r[1] for r in c.execute("PRAGMA table_info(ingest)")] == V1_INGEST
    c.close()
