"""``SqliteStore.read_ranges`` (the KPI read-ahead's reads of many tags over their own windows):
each range gets exactly what ``read`` gives it -- chunks in time order (the copy of only the
samples the range needs), chunks that overlap (a late write), the same time written twice,
samples still in ingest rows, and a damaged chunk where the prior sample would be."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from store import Batch, SqliteStore, TagRecord
from store.sqlite.chunks import sound_window, sound_windows
from tests.helpers import flip_on_disk

SEC = 10**9
MS = 10**6
T0 = 1_700_000_000 * SEC


def assert_same(got: object, want: object, what: str) -> None:
    for f in ("ts_ns", "value", "quality"):
        np.testing.assert_array_equal(getattr(got, f), getattr(want, f), err_msg=f"{what} {f}")
        assert getattr(got, f).dtype == getattr(want, f).dtype, what


def test_each_range_reads_as_read(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    with SqliteStore(tmp_path / "r.db") as s:
        ids = list(s.register_tags([TagRecord(f"s/a/l/m/t{i}", "s/a/l/m", "analog", "d", "modbus")
                                    for i in range(4)]).values())
        a, b, c, never = ids
        # a: chunks in time order, one per batch; b: the same, then a late batch inside its
        # second chunk's span, rewriting some of its times (new values) and adding others;
        # c: samples every second, some times written twice in one batch
        for k in range(5):
            ts = T0 + (k * 100 + np.arange(0, 100, 4, dtype=np.int64)) * SEC
            s.write(Batch.of(np.r_[np.full(len(ts), a), np.full(len(ts), b)], np.r_[ts, ts + MS],
                             np.r_[np.arange(len(ts)) + 100.0 * k, -np.arange(len(ts)) - 100.0 * k],
                             np.r_[np.zeros(len(ts)), np.arange(len(ts)) % 3 * 96].astype(np.uint8)))
            s.compact()
        late = T0 + (100 + np.arange(2, 100, 8, dtype=np.int64)) * SEC
        late[::2] = late[::2] + 2 * SEC + MS  # on b's own times (t + 4 s + 1 ms): rewrites
        s.write(Batch.of(np.full(len(late), b), late, np.full(len(late), 7.5)))
        s.compact()
        dup = T0 + np.repeat(np.arange(0, 300, dtype=np.int64), 2) * SEC
        s.write(Batch.of(np.full(len(dup), c), dup, np.arange(len(dup), dtype=np.float64)))
        s.compact()
        # and some of a's samples still in ingest rows (written, not compacted)
        s.write(Batch.of(np.full(3, a), T0 + np.array([50, 250, 600]) * SEC + 1, np.array([1.0, 2, 3])))
        edges = T0 + np.arange(-20, 620, 7) * SEC + np.array([0, 1, MS, -1])[np.arange(92) % 4]
        wanted = []
        for _ in range(400):
            lo, hi = np.sort(rng.choice(edges, 2, replace=False))
            wanted.append((int(rng.choice(ids)), int(lo), int(hi)))
        wanted += [(a, T0, T0 + 1), (b, T0 - SEC, T0), (never, T0, T0 + SEC), wanted[0]]
        for prior in (True, False):
            got = s.read_ranges(wanted, prior)
            assert len(got) == len(wanted)
            for (t, lo, hi), g in zip(wanted, got, strict=True):
                assert_same(g, s.read(t, lo, hi, prior), f"{t} {lo - T0} {hi - T0} {prior}")
        assert s.damage() == []


def test_a_damaged_prior_chunk_is_looked_past_as_read_does(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    with SqliteStore(path) as s:
        (tag,) = s.register_tags([TagRecord("s/a/l/m/x", "s/a/l/m", "state", "plc", "modbus")]).values()
        for k in range(3):  # three chunks of 90 samples, one every 10 s
            ts = T0 + (k * 90 + np.arange(90, dtype=np.int64)) * 10 * SEC
            s.write(Batch.of(np.full(90, tag), ts, np.arange(90, dtype=np.float64) + 1000 * k))
            s.compact()
    # damage the second chunk (a sample in the middle of its ts blob)
    assert flip_on_disk(path, T0 + (90 + 5) * 10 * SEC) >= 1
    # a window starting between the damaged chunk's last sample and the third chunk's first:
    # its prior sample is the first chunk's last, past the damaged one
    start, end = T0 + 1795 * SEC, T0 + 2000 * SEC
    with SqliteStore(path) as s:
        got = s.read_ranges([(tag, start, end), (tag, T0, T0 + SEC)], True)
        assert got[0].ts_ns.tolist()[:2] == [T0 + 890 * SEC, T0 + 1800 * SEC]
        assert got[1].ts_ns.tolist() == [T0]
        [d] = s.damage()  # found by this read, recorded as read records it
        assert d.reason == "checksum mismatch" and d.start_ns == T0 + 900 * SEC
        assert_same(got[0], s.read(tag, start, end, True), "found damage")
    with SqliteStore(path) as s:  # the same in a store that knows the damage when it opens
        assert_same(s.read_ranges([(tag, start, end)], True)[0], s.read(tag, start, end, True),
                    "known damage")
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT count(*) FROM damage").fetchone() == (1,)
    c.close()


def test_sound_chunks_read_straight_from_their_rows_as_read(tmp_path: Path) -> None:
    """Every sample in chunks (no ingest row): ``read_ranges`` reads the ranges whose chunks
    are sound and in time order straight from the rows (``chunks.sound_window``) -- within
    a chunk, across chunks, before the first sample, past the last, between two chunks --
    and those whose chunks overlap (a late write) or repeat a time the general way, each
    exactly as ``read``."""
    rng = np.random.default_rng(28)
    with SqliteStore(tmp_path / "s.db") as s:
        ids = list(s.register_tags([TagRecord(f"s/a/l/m/t{i}", "s/a/l/m", "analog", "d", "modbus")
                                    for i in range(3)]).values())
        a, b, c = ids
        for k in range(5):  # a and b: a chunk per batch, 100 s apart, a sample every 4 s
            ts = T0 + (k * 100 + np.arange(0, 100, 4, dtype=np.int64)) * SEC
            s.write(Batch.of(np.r_[np.full(len(ts), a), np.full(len(ts), b)], np.r_[ts, ts + MS],
                             np.r_[np.arange(len(ts)) + 100.0 * k, -np.arange(len(ts)) - 100.0 * k],
                             np.r_[np.zeros(len(ts)), np.arange(len(ts)) % 3 * 96].astype(np.uint8)))
            s.compact()
        late = T0 + (100 + np.arange(2, 100, 8, dtype=np.int64)) * SEC  # b: inside its 2nd chunk
        s.write(Batch.of(np.full(len(late), b), late, np.full(len(late), 7.5)))
        s.compact()
        dup = T0 + np.repeat(np.arange(0, 300, dtype=np.int64), 2) * SEC
        s.write(Batch.of(np.full(len(dup), c), dup, np.arange(len(dup), dtype=np.float64)))
        s.compact()
        with sqlite3.connect(tmp_path / "s.db") as conn:
            assert conn.execute("SELECT count(*) FROM ingest WHERE level >= 0").fetchone() == (0,)
            # a's chunks follow one another: read from the rows; b's overlap: the general way
            assert sound_window(conn, a, T0 + 90 * SEC, T0 + 210 * SEC) is not None
            assert sound_window(conn, b, T0 + 90 * SEC, T0 + 210 * SEC) is None
        conn.close()
        edges = T0 + np.arange(-20, 620, 7) * SEC + np.array([0, 1, MS, -1])[np.arange(92) % 4]
        wanted = [(a, T0 + 96 * SEC, T0 + 96 * SEC + 1), (a, T0 + 97 * SEC, T0 + 100 * SEC),
                  (a, T0 + 700 * SEC, T0 + 800 * SEC), (a, T0 - SEC, T0)]
        for _ in range(400):
            lo, hi = np.sort(rng.choice(edges, 2, replace=False))
            wanted.append((int(rng.choice(ids)), int(lo), int(hi)))
        got = s.read_ranges(wanted, True)
        for (t, lo, hi), g in zip(wanted, got, strict=True):
            assert_same(g, s.read(t, lo, hi, True), f"{t} {lo - T0} {hi - T0}")
            # copies, never read-only views of the rows' blobs
            assert g.ts_ns.flags.writeable and g.value.flags.writeable and g.quality.flags.writeable
        assert s.damage() == []


def test_the_tags_of_one_window_are_read_together_as_read(tmp_path: Path) -> None:
    """Ranges of several tags over the same window (a KPI request's read-ahead at a window's
    edge) are read in one statement (``chunks.sound_windows``): each tag gets what
    ``sound_window`` alone gives it and ``read_ranges`` what ``read`` gives -- tags whose
    chunks follow one another, one whose chunks overlap, one without samples, one tag asked
    twice."""
    with SqliteStore(tmp_path / "w.db") as s:
        ids = list(s.register_tags([TagRecord(f"s/a/l/m/t{i}", "s/a/l/m", "analog", "d", "modbus")
                                    for i in range(5)]).values())
        a, b, c, d, never = ids
        for k in range(5):  # a, b, d: a chunk per batch, 100 s apart; d every 10 s, shifted
            ts = T0 + (k * 100 + np.arange(0, 100, 4, dtype=np.int64)) * SEC
            td = T0 + (k * 100 + np.arange(3, 100, 10, dtype=np.int64)) * SEC
            s.write(Batch.of(np.r_[np.full(len(ts), a), np.full(len(ts), b), np.full(len(td), d)],
                             np.r_[ts, ts + MS, td],
                             np.r_[np.arange(len(ts)) + 100.0 * k, -np.arange(len(ts)) - 100.0 * k,
                                   np.arange(len(td)) * 2.0],
                             np.r_[np.zeros(len(ts)), np.arange(len(ts)) % 3 * 96,
                                   np.zeros(len(td))].astype(np.uint8)))
            s.compact()
        late = T0 + (100 + np.arange(2, 100, 8, dtype=np.int64)) * SEC  # b: inside its 2nd chunk
        s.write(Batch.of(np.full(len(late), b), late, np.full(len(late), 7.5)))
        s.compact()
        ts = T0 + np.arange(0, 300, 7, dtype=np.int64) * SEC
        s.write(Batch.of(np.full(len(ts), c), ts, np.arange(len(ts), dtype=np.float64)))
        s.compact()
        windows = [(T0 + 90 * SEC, T0 + 210 * SEC), (T0 + 96 * SEC, T0 + 96 * SEC + 1),
                   (T0 - SEC, T0), (T0 + 450 * SEC, T0 + 900 * SEC), (T0 + 250 * SEC, T0 + 251 * SEC)]
        with sqlite3.connect(tmp_path / "w.db") as conn:
            for lo, hi in windows:
                tags = [a, b, c, d, never, a]
                each = [sound_window(conn, t, lo, hi) for t in tags]
                if lo == T0 + 90 * SEC:  # b's chunks overlap there, a's and d's follow one another
                    assert each[1] is None and each[0] is not None and each[3] is not None
                for t, one, many in zip(tags, each, sound_windows(conn, tags, lo, hi), strict=True):
                    assert (one is None) == (many is None), (t, lo - T0, hi - T0)
                    if one is not None and many is not None:
                        for x, y in zip(one, many, strict=True):
                            np.testing.assert_array_equal(x, y)
                            assert x.dtype == y.dtype
        conn.close()
        wanted = [(t, lo, hi) for lo, hi in windows for t in (a, b, c, d, never, a)]
        got = s.read_ranges(wanted, True)
        for (t, lo, hi), g in zip(wanted, got, strict=True):
            assert_same(g, s.read(t, lo, hi, True), f"{t} {lo - T0} {hi - T0}")
        assert s.damage() == []
