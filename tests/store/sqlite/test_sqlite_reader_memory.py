"""What readers keep in memory stays bounded however long the gateway serves reads while data
arrive (issue 13's memory growth).

Reads of sorted ingest rows open blobs, and CPython's ``sqlite3`` keeps a weak reference to
every blob a connection ever opened until the connection closes (python/cpython#144424): the
store retires a reader connection after ``BLOBS_PER_CONNECTION`` blobs, so that those dead
references stay bounded. Real database file; the limit is lowered so that the test opens
thousands of blobs, not millions.

The decoded-run cache keeps only runs of ingest rows that still exist: a reader whose snapshot
predates a merge still loads the merged rows, and cached they stayed until evicted by weight
(1M points: ~100k small runs, hundreds of MB)."""

from __future__ import annotations

import gc
import sqlite3
import weakref
from pathlib import Path

import numpy as np
import pytest

import store.sqlite.store as sqlite_store
from store import Batch, SqliteStore, TagRecord

SEC = 10**9
T0 = 1_700_000_000 * SEC
TAGS = 50


def _dead_refs() -> int:
    return sum(1 for o in gc.get_objects() if type(o) is weakref.ref and o() is None)


def test_blob_references_stay_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "BLOBS_PER_CONNECTION", 300)
    s = SqliteStore(tmp_path / "blobs.db", compact_every=2)
    try:
        ids = list(s.register_tags([
            TagRecord(path=f"s/a/l/m/sig{i}", asset="s/a/l/m", role="analog", device="plc",
                      protocol="modbus")
            for i in range(TAGS)
        ]).values())
        # live data: a few samples per tag, merged into a sorted (level 1) ingest row, too few
        # per tag to be flushed into chunks -- the rows readers read through blobs
        for k in range(4):
            s.write(Batch.of(np.asarray(ids), T0 + k * SEC, float(k)))
        assert s.stats().extra["chunks"] == 0
        assert s.stats().extra["ingest_rows"] >= 1
        before = _dead_refs()
        reads = 2_000  # 3 blobs each (ts, value, quality): 6,000 blobs
        for i in range(reads):
            got = s.read(ids[i % TAGS], T0, T0 + 10 * SEC, prior=False)
            assert got.value.tolist() == [0.0, 1.0, 2.0, 3.0]
        grown = _dead_refs() - before
        # without retiring connections: one dead reference per blob (>= 6,000)
        assert grown < 1_000, f"{grown} dead weak references after {reads} reads"
    finally:
        s.close()


def test_runs_of_merged_rows_are_not_cached(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    s = SqliteStore(path, compact_every=2)
    try:
        ids = list(s.register_tags([
            TagRecord(path=f"s/a/l/m/sig{i}", asset="s/a/l/m", role="analog", device="plc",
                      protocol="modbus")
            for i in range(TAGS)
        ]).values())
        s.write(Batch.of(np.asarray(ids), T0, 0.0))
        with s.snapshot():
            assert s.read(ids[0], T0, T0 + 10 * SEC, prior=False).value.tolist() == [0.0]
            # the writer merges the row this snapshot sees into a new one (and forgets it)
            for k in range(1, 5):
                s.write(Batch.of(np.asarray(ids), T0 + k * SEC, float(k)))
            for t in ids:  # the snapshot still reads the merged row, and must not cache it
                assert s.read(t, T0, T0 + 10 * SEC, prior=False).value.tolist() == [0.0]
        with sqlite3.connect(path) as c:
            live = {int(q) for (q,) in c.execute("SELECT seq FROM ingest")}
        # the cache is private; what it holds is the memory in question
        assert set(s._cache) <= live, f"cached runs of rows gone: {set(s._cache) - live}"
        assert s.read(ids[0], T0, T0 + 10 * SEC, prior=False).value.tolist() == [0, 1, 2, 3, 4]
    finally:
        s.close()
