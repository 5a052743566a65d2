"""Reads of sorted ingest rows open blobs, and CPython's ``sqlite3`` keeps a weak reference to
every blob a connection ever opened until the connection closes (python/cpython#144424): the
store retires a reader connection after ``BLOBS_PER_CONNECTION`` blobs, so that those dead
references stay bounded however long the gateway serves reads (issue 13's memory growth).
Real database file; the limit is lowered so that the test opens thousands of blobs, not
millions."""

from __future__ import annotations

import gc
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
