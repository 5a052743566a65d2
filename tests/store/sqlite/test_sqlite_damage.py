"""Damaged stored data in the embedded store (issue 13 item 5): every chunk carries checksums; a
read skips a chunk whose bytes changed on disk, returns the others and records the damage (tag,
time range, reason) in the ``damage`` table and as a gap of the tag's asset; ``verify`` finds it
without a read. The damage is real: bytes of the database file flipped while it is closed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from store import Batch, SqliteStore, TagRecord
from tests.helpers import flip_on_disk

SEC = 10**9
MS = 10**6
T0 = 1_700_000_000 * SEC
A, B = "s/a/l/m1/state", "s/a/l/m1/count"
PER, CHUNKS = 90, 4  # samples per chunk (one every 10 s: 15 min), chunks per tag


def filled(path: Path) -> dict[str, int]:
    """Two tags of one asset, each in CHUNKS chunks of PER samples; A's times are 1 ms after
    B's so that A's ts blob is unique in the file."""
    with SqliteStore(path) as s:
        ids = s.register_tags([TagRecord(A, "s/a/l/m1", "state", "plc", "modbus"),
                               TagRecord(B, "s/a/l/m1", "good_count", "plc", "modbus")])
        for k in range(CHUNKS):
            ts = T0 + (k * PER + np.arange(PER, dtype=np.int64)) * 10 * SEC
            s.write(Batch.of([ids[A]] * PER + [ids[B]] * PER, np.concatenate([ts + MS, ts]),
                             np.arange(2 * PER, dtype=np.float64)))
            s.compact()
    return ids



def damaged_file(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    path = tmp_path / "d.db"
    ids = filled(path)
    # sample 5 of A's second chunk, in the middle of its ts blob
    assert flip_on_disk(path, T0 + (PER + 5) * 10 * SEC + MS) >= 1
    return path, ids


def test_a_read_skips_the_damaged_chunk_returns_the_rest_and_records_it(tmp_path: Path) -> None:
    path, ids = damaged_file(tmp_path)
    end = T0 + CHUNKS * PER * 10 * SEC
    with SqliteStore(path) as s:
        assert s.damage() == []  # nothing read yet
        got = s.read(ids[A], T0, end, prior=False)
        # the three intact chunks, not 0 samples and not an error
        assert len(got) == (CHUNKS - 1) * PER
        first, last = T0 + PER * 10 * SEC + MS, T0 + (2 * PER - 1) * 10 * SEC + MS
        assert not ((got.ts_ns >= first) & (got.ts_ns <= last)).any()
        assert len(s.read(ids[B], T0, end, prior=False)) == CHUNKS * PER  # B untouched
        (d,) = s.damage()
        assert (d.path, d.tag_id, d.start_ns, d.end_ns, d.samples) == (A, ids[A], first, last + 1, PER)
        assert d.reason == "checksum mismatch" and d.device == "plc" and d.asset == "s/a/l/m1"
        # a gap of the asset over exactly that range, naming the tag
        (gap,) = s.gaps("plc", T0, end)
        assert (gap.start_ns, gap.end_ns, gap.asset, gap.tag) == (first, last + 1, "s/a/l/m1", A)
        assert gap.reason == f"stored data damaged: {A} (checksum mismatch)"
        assert s.gaps("plc", T0, first) == [] and s.gaps("other", T0, end) == []
        # the other read paths skip it too
        page = s.read_page(ids[A], T0, end, 1000)
        assert page.ts_ns.tolist() == got.ts_ns.tolist()
        assert s.read_timestamps(ids[A], T0, end)[0].tolist() == got.ts_ns.tolist()
        # with prior: the last sample before a window starting after the damage is the last
        # intact one (of chunk 1), not a damaged one
        after = T0 + (2 * PER) * 10 * SEC
        assert s.read(ids[A], after, after + SEC, prior=True).ts_ns.tolist() == [
            T0 + (PER - 1) * 10 * SEC + MS, after + MS]
        assert s.stats().extra["damaged_chunks"] == 1
    with sqlite3.connect(path) as c:  # persisted: one row per damaged chunk
        assert c.execute("SELECT chunk_id, tag_id, t_min, t_max, n, reason FROM damage").fetchall() == [
            (d.chunk_id, ids[A], first, last, PER, "checksum mismatch")]
    c.close()
    with SqliteStore(path) as again:  # known at once after a restart, before any read
        assert [x.chunk_id for x in again.damage()] == [d.chunk_id]
        assert again.damage()[0].path == A


def test_verify_finds_damage_without_a_read(tmp_path: Path) -> None:
    path, _ = damaged_file(tmp_path)
    with SqliteStore(path) as s:
        got = s.verify(batch=3)  # several rounds
        assert (got.chunks, got.unverified) == (2 * CHUNKS, 0)
        (d,) = got.damage
        assert d.path == A and d.samples == PER
        assert s.verify().damage == got.damage  # found once, recorded once


def test_intact_store_verifies_clean_and_damage_in_other_columns_is_found(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    ids = filled(path)
    with SqliteStore(path) as s:
        assert s.verify().damage == []
    with sqlite3.connect(path) as c:  # via SQL: each kind of damage on its own chunk of B
        rows = [r[0] for r in c.execute(
            "SELECT chunk_id FROM chunks WHERE tag_id = ? ORDER BY chunk_id", (ids[B],))]
        c.execute("UPDATE chunks SET value = zeroblob(length(value)) WHERE chunk_id = ?", (rows[0],))
        c.execute("UPDATE chunks SET t_max = t_max + 1 WHERE chunk_id = ?", (rows[1],))
        c.execute("UPDATE chunks SET gateway_ts = zeroblob(8 * n) WHERE chunk_id = ?", (rows[2],))
        # a chunk without checksums (as written before schema 5) whose blob lost a byte
        c.execute("UPDATE chunks SET crc = NULL, crc_extra = NULL,"
                  " ts = substr(ts, 1, length(ts) - 1) WHERE chunk_id = ?", (rows[3],))
    c.close()
    with SqliteStore(path) as s:
        # a plain read loads no gateway_ts: it finds three damaged chunks and returns the
        # fourth, whose damaged gateway_ts it does not use
        assert len(s.read(ids[B], T0, T0 + 10**6 * SEC, prior=False)) == PER
        assert sorted(d.chunk_id for d in s.damage()) == [rows[0], rows[1], rows[3]]
        reasons = {d.chunk_id: d.reason for d in s.verify().damage}
    assert reasons == {
        rows[0]: "checksum mismatch",
        rows[1]: "checksum mismatch",
        rows[2]: "checksum mismatch (texts or server/gateway timestamps)",
        rows[3]: f"ts blob of {PER * 8 - 1} bytes, not {PER * 8}",
    }


def test_retention_deletes_damage_with_its_chunk(tmp_path: Path) -> None:
    path, ids = damaged_file(tmp_path)
    with SqliteStore(path, retention_days=1) as s:
        assert len(s.verify().damage) == 1
        s.apply_retention(T0 + (2 * PER) * 10 * SEC + 86_400 * SEC)  # chunks 0 and 1 gone
        assert s.damage() == [] and s.verify().damage == []
        assert len(s.read(ids[A], T0, T0 + 10**6 * SEC, prior=False)) == (CHUNKS - 2) * PER


def test_no_false_alarm_after_retention_trims_a_chunk(tmp_path: Path) -> None:
    """Retention trims a straddling chunk in place with new checksums: still intact."""
    path = tmp_path / "t.db"
    ids = filled(path)
    with SqliteStore(path, retention_days=1) as s:
        s.apply_retention(T0 + (PER // 2) * 10 * SEC + 86_400 * SEC)  # cuts into chunk 0
        assert s.verify().damage == []
        assert len(s.read(ids[A], T0, T0 + 10**6 * SEC, prior=False)) == CHUNKS * PER - PER // 2


def test_a_column_of_the_wrong_type_is_damage_not_an_error(tmp_path: Path) -> None:
    """SQLite does not enforce column types: text where a blob belongs is damage too."""
    path = tmp_path / "d.db"
    ids = filled(path)
    with sqlite3.connect(path) as c:
        c.execute("UPDATE chunks SET value = 'x' WHERE chunk_id = (SELECT min(chunk_id) FROM chunks"
                  " WHERE tag_id = ?)", (ids[A],))
    c.close()
    with SqliteStore(path) as s:
        assert len(s.read(ids[A], T0, T0 + 10**6 * SEC, prior=False)) == (CHUNKS - 1) * PER
        assert [d.reason for d in s.damage()] == ["a column of the wrong type"]
