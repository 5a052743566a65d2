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


class _Counting:
    """A store whose ``gaps`` reads are counted (by device; None: every device's)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.asked: list[str | None] = []

    def gaps(self, device: str | None, start_ns: int, end_ns: int) -> list:
        self.asked.append(device)
        return self.store.gaps(device, start_ns, end_ns)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


def test_gaps_of_a_span_without_any_are_answered_without_a_read_each(tmp_path: Path) -> None:
    """``fetch_gaps``: one read of every device's gaps; where there are none, a device's gaps
    inside the span are [] with no read of their own. Where some device has one, each
    device's are the store's; a span outside is the store's too."""
    path = tmp_path / "g.db"
    with SqliteStore(path) as store:
        (tag,) = store.register_tags([TagRecord(path="p/a/l/m/s", asset="p/a/l/m", role="analog",
                                                device="d1", protocol="modbus")]).values()
        ts = np.arange(0, 100, dtype=np.int64) * SEC
        store.write(Batch.of(np.full(len(ts), tag), ts, np.arange(len(ts), dtype=np.float64)))
        store.compact()
        gap = store.open_gap("d2", 200 * SEC, "unreachable")
        store.close_gap(gap, 260 * SEC)
        counted = _Counting(store)
        view = ReadAhead(counted)  # type: ignore[arg-type]
        assert view.fetch_gaps(0, 150 * SEC) is True
        assert counted.asked == [None]
        for d in ("d1", "d2", "d3"):
            assert view.gaps(d, 10 * SEC, 140 * SEC) == [] == store.gaps(d, 10 * SEC, 140 * SEC)
        assert counted.asked == [None]  # answered from the one read
        for s, e in ((100 * SEC, 300 * SEC), (250 * SEC, 251 * SEC), (0, 150 * SEC + 1)):
            for d in ("d1", "d2", "d3"):
                assert view.gaps(d, s, e) == store.gaps(d, s, e)
        assert [g.device for g in view.gaps("d2", 100 * SEC, 300 * SEC)] == ["d2"]
        assert None in counted.asked[1:] and "d2" in counted.asked
        assert view.fetch_gaps(150 * SEC, 300 * SEC) is False


def test_damage_a_read_finds_after_the_gaps_were_read_is_a_gap(tmp_path: Path) -> None:
    """A read through the view that finds damaged data makes it a gap from then on: the
    gap-free span ``fetch_gaps`` read before it no longer answers."""
    path = tmp_path / "d.db"
    with SqliteStore(path) as store:
        (tag,) = store.register_tags([TagRecord(path="p/a/l/m/s", asset="p/a/l/m", role="analog",
                                                device="d1", protocol="modbus")]).values()
        ts = 1_700_000_000 * SEC + np.arange(0, 100, dtype=np.int64) * SEC
        store.write(Batch.of(np.full(len(ts), tag), ts, np.arange(len(ts), dtype=np.float64)))
        store.compact()
    from tests.helpers import flip_on_disk
    assert flip_on_disk(path, int(ts[50])) >= 1
    with SqliteStore(path) as store:
        view = ReadAhead(store)
        lo, hi = int(ts[0]), int(ts[-1]) + SEC
        assert view.fetch_gaps(lo, hi) is True  # nothing known damaged yet
        assert view.gaps("d1", lo, hi) == []
        view.read(tag, lo, hi)  # finds the damaged chunk
        found = view.gaps("d1", lo, hi)
        assert found == store.gaps("d1", lo, hi) and len(found) == 1
