"""SqliteStore.read_page: the first samples of a window, read in memory that depends on the
page, not on the window (issue 13: a limit of 1 over 20 M samples read all of them, twice)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from store import Batch, SqliteStore, TagRecord
from store.batch import TS_UNKNOWN

SEC = 10**9
T0 = 1_700_000_000 * SEC


def _tag(store: SqliteStore, name: str = "v") -> int:
    (tid,) = store.register_tags([TagRecord(path=f"s/a/l/m/{name}", asset="s/a/l/m",
                                            role="analog", device="d", protocol="modbus")]).values()
    return tid


def _expected(store: SqliteStore, tid: int, lo: int, hi: int, limit: int) -> tuple[Any, ...]:
    s = store.read(tid, lo, hi, prior=False)
    _, srv, gw = store.read_timestamps(tid, lo, hi)
    return s.ts_ns[:limit], s.value[:limit], s.quality[:limit], srv[:limit], gw[:limit], len(s) > limit


def _check(store: SqliteStore, tid: int, lo: int, hi: int, limit: int) -> None:
    page = store.read_page(tid, lo, hi, limit)
    want = _expected(store, tid, lo, hi, limit)
    for got, exp in zip(page[:5], want[:5], strict=True):
        np.testing.assert_array_equal(got, exp)
    assert page.more == want[5]
    assert (page.ts_ns.dtype, page.value.dtype, page.quality.dtype) == (np.int64, np.float64, np.uint8)


def test_pages_equal_the_full_read_over_overlapping_chunks_and_ingest(tmp_path: Path) -> None:
    """Chunks that overlap in time (late and re-sent data: the last write wins), chunks of
    other tags, and rows still in ingest: every page is the head of the full read."""
    rng = np.random.default_rng(7)
    with SqliteStore(tmp_path / "t.db", compact_every=1000) as store:
        tid, other = _tag(store), _tag(store, "w")
        for k in range(12):  # 12 flushes: 12 chunks per tag, later ones overlapping earlier ones
            n = int(rng.integers(50, 400))
            ts = T0 + np.sort(rng.integers(0, 2000, n)) * SEC + k  # overlapping ranges
            server = np.where(rng.random(n) < 0.3, TS_UNKNOWN, ts + 5)
            store.write(Batch(np.full(n, tid, np.int32), ts.astype(np.int64), rng.normal(size=n),
                              rng.integers(0, 3, n).astype(np.uint8), None,
                              server.astype(np.int64) if k % 2 else None, None))
            store.write(Batch.of([other] * 3, T0 + np.arange(3) * SEC, [1.0, 2.0, 3.0]))
            if k < 9:
                store.compact()  # the last three stay in ingest
        resent = T0 + np.arange(0, 2000, 7) * SEC + 3  # re-sent values at times chunks hold
        store.write(Batch.of([tid] * len(resent), resent, np.full(len(resent), 99.0)))
        for lo, hi in [(T0, T0 + 2001 * SEC), (T0 + 500 * SEC, T0 + 900 * SEC),
                       (T0 - SEC, T0), (T0 + 1999 * SEC, T0 + 3000 * SEC)]:
            for limit in (1, 2, 17, 300, 1000, 100_000):
                _check(store, tid, lo, hi, limit)


def test_memory_of_a_page_does_not_grow_with_the_window(tmp_path: Path) -> None:
    """3 M samples of one tag in 15 chunks: the first sample of the whole window allocates a
    few chunks' worth at most, the full read (what the route did) over 30 times that."""
    per, chunks = 200_000, 15
    with SqliteStore(tmp_path / "big.db") as store:
        tid = _tag(store)
        for k in range(chunks):
            ts = T0 + (k * per + np.arange(per, dtype=np.int64)) * SEC // 100
            store.write(Batch(np.full(per, tid, np.int32), ts, np.arange(per, dtype=np.float64),
                              np.zeros(per, np.uint8)))
            store.compact()
        end = T0 + chunks * per * SEC // 100
        tracemalloc.start()
        try:
            page = store.read_page(tid, T0, end, 1)
            _, page_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            full = store.read(tid, T0, end, prior=False)
            _, full_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert page.ts_ns.tolist() == [T0] and page.more
        assert len(full) == per * chunks
        # one chunk of 200 k samples is 3.4 MB of blobs; the full read holds 51 MB of arrays
        print(f"peak: page {page_peak} B, full read {full_peak} B")
        assert page_peak < 6 * 2**20, page_peak
        assert full_peak > 30 * page_peak, (full_peak, page_peak)
        last = store.read_page(tid, end - 10 * SEC // 100, end, 1000)
        assert len(last.ts_ns) == 10 and not last.more


def test_limit_must_be_positive(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "t.db") as store, pytest.raises(ValueError, match="limit"):
        store.read_page(_tag(store), T0, T0 + SEC, 0)
