"""``api.readahead.ReadAhead`` answers each read exactly as the store does: inside a range read
ahead from the samples held (with and without ``prior``, at and between sample times), outside
it from the store. Against a real embedded store."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from api.readahead import ReadAhead
from store import Batch, SqliteStore, TagRecord

SEC = 10**9


def test_reads_from_the_range_read_ahead_equal_the_store(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "s.db") as store:
        ids = store.register_tags([TagRecord(path=f"p/a/l/m/s{i}", asset="p/a/l/m", role="analog",
                                             device="d", protocol="modbus") for i in range(3)])
        a, b, empty = ids.values()
        ts = np.arange(0, 100, 3, dtype=np.int64) * SEC  # every 3 s
        store.write(Batch.of(np.r_[np.full(len(ts), a), np.full(len(ts), b)], np.r_[ts, ts + SEC],
                             np.r_[np.arange(len(ts)), -np.arange(len(ts))], 0))
        view = ReadAhead(store)
        lo, hi = 30 * SEC, 70 * SEC
        view.fetch([a, b, empty], lo, hi)
        served = 0
        for s in range(lo, hi + 1, SEC // 2):
            for e in (s, s + 1, s + 3 * SEC, hi):
                for prior in (True, False):
                    if e < s:
                        continue
                    for t in (a, b, empty):
                        got, want = view.read(t, s, e, prior), store.read(t, s, e, prior)
                        np.testing.assert_array_equal(got.ts_ns, want.ts_ns, err_msg=f"{t} {s} {e} {prior}")
                        np.testing.assert_array_equal(got.value, want.value)
                        np.testing.assert_array_equal(got.quality, want.quality)
                    many = view.read_many([b, a], s, e, prior)
                    assert list(many) == [b, a]
                    np.testing.assert_array_equal(many[a].ts_ns, store.read(a, s, e, prior).ts_ns)
                    served += 1
        assert view.served > served  # all of those were answered from the samples held
        before = view.served
        outside = view.read(a, lo - 10 * SEC, hi, True)  # starts before the range: the store's
        assert view.served == before
        np.testing.assert_array_equal(outside.ts_ns, store.read(a, lo - 10 * SEC, hi, True).ts_ns)
        view.forget(lo, hi)
        view.read(a, lo, hi, True)
        assert view.served == before
