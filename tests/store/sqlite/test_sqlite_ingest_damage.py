"""Damaged ingest rows in the embedded store (issue 13 item 5): the recent data not yet compacted
into chunks carries checksums too. A read, a merge, a flush or ``verify`` that finds a row
whose bytes changed leaves it out (never read as 0 samples or garbage, never folded into a run
or a chunk), records it per tag with the row's time range in ``damage`` and as a gap of the
tag's asset, and returns everything else. The damage is real: bytes of the database file
flipped while no store has it open (``flip_on_disk``), or one byte of a row's blob flipped
with plain SQL (the tag ids: their bytes are not unique in the file)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np

from store import Batch, SqliteStore, TagRecord
from tests.helpers import flip_on_disk

SEC = 10**9
MS = 10**6
T0 = 1_700_000_000 * SEC
ASSET = "s/a/l/m1"
A, B = f"{ASSET}/state", f"{ASSET}/count"
PER = 30  # samples per tag per batch, one every second


def times(k: int) -> np.ndarray:
    return T0 + (k * PER + np.arange(PER, dtype=np.int64)) * SEC


def pending_file(tmp_path: Path, compact_every: int = 1000) -> tuple[Path, dict[str, int]]:
    """Three batches left in ingest (not compacted), as a gateway that died leaves them:
    batch k holds A at times(k) + 1 ms (A's ts bytes unique in the file) and B at times(k).
    The copy is taken after a checkpoint, while the store is still open (its close would
    flush ingest into chunks)."""
    src, path = tmp_path / "live.db", tmp_path / "d.db"
    s = SqliteStore(src, compact_every=compact_every)
    ids = s.register_tags([TagRecord(A, ASSET, "state", "plc", "modbus"),
                           TagRecord(B, ASSET, "good_count", "plc", "modbus")])
    for k in range(3):
        s.write(Batch.of([ids[A]] * PER + [ids[B]] * PER, np.concatenate([times(k) + MS, times(k)]),
                         np.arange(2 * PER, dtype=np.float64) + 100 * k))
    c = sqlite3.connect(src)
    assert c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0  # not busy
    c.close()
    shutil.copyfile(src, path)
    s.close()
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT count(*), min(level), max(level) FROM ingest").fetchone() == (3, 0, 0)
        assert c.execute("SELECT count(*) FROM ingest WHERE crc IS NULL").fetchone() == (0,)
    c.close()
    return path, ids


def damaged_file(tmp_path: Path, compact_every: int = 1000) -> tuple[Path, dict[str, int]]:
    """The second batch's row damaged: one of A's times (sample 5) flipped."""
    path, ids = pending_file(tmp_path, compact_every)
    assert flip_on_disk(path, int(times(1)[5]) + MS) == 1
    return path, ids


END = T0 + 3 * PER * SEC + SEC
#: the damaged row's range (any tag): its first and last time
R0, R1 = int(times(1)[0]), int(times(1)[-1]) + MS


def test_a_read_leaves_the_damaged_row_out_and_records_each_of_its_tags(tmp_path: Path) -> None:
    path, ids = damaged_file(tmp_path)
    with SqliteStore(path) as s:
        got = s.read(ids[A], T0, END, prior=False)
        # rows 1 and 3: not 0 samples, not an error, nothing of the damaged row
        assert got.ts_ns.tolist() == (np.concatenate([times(0), times(2)]) + MS).tolist()
        # the row held B's samples too: unknown as well (the row's checksum covers all)
        assert s.read(ids[B], T0, END, prior=False).ts_ns.tolist() == np.concatenate(
            [times(0), times(2)]).tolist()
        damage = s.damage()
        assert [(d.path, d.tag_id, d.start_ns, d.end_ns, d.samples, d.device, d.asset)
                for d in sorted(damage, key=lambda d: d.tag_id)] == [
            (A, ids[A], R0, R1 + 1, PER, "plc", ASSET), (B, ids[B], R0, R1 + 1, PER, "plc", ASSET)]
        seq = damage[0].seq
        assert seq is not None and all(d.reason == f"ingest row {seq}: checksum mismatch" for d in damage)
        # gaps of the asset over exactly that range, naming each tag
        gaps = s.gaps("plc", T0, END)
        assert sorted((g.start_ns, g.end_ns, g.asset, g.tag) for g in gaps) == [
            (R0, R1 + 1, ASSET, B), (R0, R1 + 1, ASSET, A)]
        # the other read paths leave it out too
        assert s.read_page(ids[A], T0, END, 1000).ts_ns.tolist() == got.ts_ns.tolist()
        assert s.read_timestamps(ids[A], T0, END)[0].tolist() == got.ts_ns.tolist()
        assert s.read_text(ids[A], T0, END) == []
        assert s.latest([ids[A]])[ids[A]].ts_ns == int(times(2)[-1]) + MS
        assert s.stats().extra["damaged_ingest_rows"] == 1
        assert s.stats().extra["damaged_chunks"] == 0
    with sqlite3.connect(path) as c:
        # persisted, one damage row per tag naming the ingest row; the row kept (level -1),
        # not flushed into a chunk by the close; the sound rows were
        assert c.execute("SELECT tag_id, t_min, t_max, n, seq FROM damage ORDER BY tag_id").fetchall() == [
            (ids[A], R0, R1, PER, seq), (ids[B], R0, R1, PER, seq)]
        assert c.execute("SELECT seq, level FROM ingest").fetchall() == [(seq, -1)]
        assert c.execute("SELECT min(t_min), max(t_max), sum(n) FROM chunks WHERE tag_id = ?",
                         (ids[A],)).fetchone() == (T0 + MS, int(times(2)[-1]) + MS, 2 * PER)
        # no chunk holds a sample of the damaged row
        ts_a = np.frombuffer(b"".join(b for (b,) in c.execute(
            "SELECT ts FROM chunks WHERE tag_id = ? ORDER BY chunk_id", (ids[A],))), "<i8")
        assert len(ts_a) == 2 * PER and not ((ts_a >= R0) & (ts_a <= R1)).any()
    c.close()
    with SqliteStore(path) as again:  # known at once after a restart, before any read
        assert sorted(d.tag_id for d in again.damage()) == [ids[A], ids[B]]
        assert len(again.read(ids[A], T0, END, prior=False)) == 2 * PER


def test_compaction_leaves_the_damaged_row_out_of_the_chunks(tmp_path: Path) -> None:
    """No read first: the flush itself finds the row, keeps it out and records it."""
    path, ids = damaged_file(tmp_path)
    with SqliteStore(path) as s:
        assert s.compact() == 2  # the two sound rows moved; the damaged one stays
        assert {d.tag_id for d in s.damage()} == {ids[A], ids[B]}
        assert s.read(ids[A], T0, END, prior=False).ts_ns.tolist() == (
            np.concatenate([times(0), times(2)]) + MS).tolist()
        assert s.compact() == 0  # and is never taken up later
        assert len(s.read(ids[B], T0, END, prior=False)) == 2 * PER


def test_a_merge_leaves_the_damaged_row_out_of_the_run(tmp_path: Path) -> None:
    """compact_every 4: the fourth write merges the level-0 rows into one run (a merge, not a
    flush: its 100 more tags make ingest too sparse for chunks)."""
    path, ids = damaged_file(tmp_path, compact_every=4)
    with SqliteStore(path, compact_every=4) as s:
        s.write(Batch.of([ids[B], *range(10, 110)], [int(times(3)[0])] * 101, [7.0] * 101))
        with sqlite3.connect(path) as c:
            levels = sorted(lv for (lv,) in c.execute("SELECT level FROM ingest"))
        c.close()
        assert levels == [-1, 1]  # the run, and the damaged row beside it
        assert {d.tag_id for d in s.damage()} == {ids[A], ids[B]}
        assert s.read(ids[B], T0, END + 100 * SEC, prior=False).ts_ns.tolist() == [
            *times(0).tolist(), *times(2).tolist(), int(times(3)[0])]


def test_verify_finds_it_without_a_read_and_names_unknown_tags(tmp_path: Path) -> None:
    path, ids = pending_file(tmp_path)
    with SqliteStore(path) as s:
        v = s.verify()
        assert (v.ingest_rows, v.ingest_unverified, v.damage) == (3, 0, [])
    path, ids = pending_file(tmp_path / "again")
    with sqlite3.connect(path) as c:  # one byte of the last row's tag ids: its tags unknown
        seq, tags = c.execute("SELECT seq, tag_ids FROM ingest ORDER BY seq DESC").fetchone()
        c.execute("UPDATE ingest SET tag_ids = ? WHERE seq = ?",
                  (bytes([tags[0] ^ 0x40]) + tags[1:], seq))
    c.close()
    with SqliteStore(path) as s:
        v = s.verify()
        assert v.ingest_rows == 3
        (d,) = v.damage
        assert (d.tag_id, d.seq, d.reason) == (-1, seq, f"ingest row {seq}: checksum mismatch")
        assert (d.start_ns, d.end_ns, d.samples) == (int(times(2)[0]), int(times(2)[-1]) + MS + 1, 2 * PER)
        # unknown tags: a gap of every device (its data may be any asset's), asset None
        (gap,) = s.gaps("plc", T0, END)
        assert (gap.asset, gap.tag, gap.start_ns) == (None, None, int(times(2)[0]))
        # the two sound rows read as written
        assert len(s.read(ids[A], T0, END, prior=False)) == 2 * PER


def test_a_reader_that_skips_a_row_another_thread_is_recording_finds_its_gap(tmp_path: Path) -> None:
    """A read in one thread finds the damaged row and records it; a read in another thread at
    that moment either reads the row itself (and finds the damage) or skips it, and then
    finds its gap: never the row's samples missing with no gap (a /kpis computed so while
    the roll-up maintainer recorded the damage counted the quarter hour as known: coverage
    1.0 instead of ~0.75). The first thread is held inside the recording, just after the
    row is marked for readers to skip."""
    import threading

    path, ids = damaged_file(tmp_path)
    with SqliteStore(path) as s:
        held, go = threading.Event(), threading.Event()
        forget = s._forget

        def hold(seqs: list[int]) -> None:
            if seqs and not held.is_set():
                held.set()
                assert go.wait(10)
            forget(seqs)

        s._forget = hold  # type: ignore[method-assign]
        finder = threading.Thread(target=s.read, args=(ids[A], T0, END), kwargs={"prior": False})
        finder.start()
        try:
            assert held.wait(10)
            got = s.read(ids[B], T0, END, prior=False)
            assert got.ts_ns.tolist() == np.concatenate([times(0), times(2)]).tolist()  # skipped
            gaps = [(g.start_ns, g.end_ns) for g in s.gaps("plc", T0, END)]
            assert (R0, R1 + 1) in gaps, gaps
        finally:
            go.set()
            finder.join(10)
        assert not finder.is_alive()
