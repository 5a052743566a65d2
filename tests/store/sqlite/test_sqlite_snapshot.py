"""``SqliteStore.snapshot()``: every read of one thread inside the block sees one state of the
store while another thread keeps writing (real database file, real threads; the threads are
interleaved by events, so the test asserts on data and never on timing)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from store import Batch, SqliteStore, TagRecord

SEC = 10**9
T0 = 1_700_000_000 * SEC
WAIT_S = 60  # only a guard against a deadlock (a writer blocked by the snapshot)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[SqliteStore, list[int]]]:
    s = SqliteStore(tmp_path / "snap.db", compact_every=2)
    ids = list(s.register_tags([
        TagRecord(path=f"s/a/l/m/sig{i}", asset="s/a/l/m", role="analog", device="plc",
                  protocol="modbus")
        for i in range(3)
    ]).values())
    # some history in chunks (flushed) and some still in ingest
    s.write(Batch.of(np.repeat(ids, 100), np.tile(T0 + np.arange(100) * SEC, 3), 1.0))
    s.compact()
    s.write(Batch.of(np.repeat(ids, 10), np.tile(T0 + (100 + np.arange(10)) * SEC, 3), 2.0))
    yield s, ids
    s.close()


def _view(s: SqliteStore, ids: list[int]) -> dict[str, object]:
    """Everything a KPI request reads: samples (with and without prior), timestamps, latest,
    gaps and tags, as plain values."""
    got = s.read_many(ids, T0 + 50 * SEC, T0 + 1000 * SEC, prior=True)
    return {
        "series": {t: (got[t].ts_ns.tolist(), got[t].value.tolist()) for t in ids},
        "read": s.read(ids[0], T0, T0 + 1000 * SEC, prior=False).value.tolist(),
        "times": s.read_timestamps(ids[1], T0, T0 + 1000 * SEC)[0].tolist(),
        "latest": {t: (v.ts_ns, v.value) for t, v in s.latest(ids).items()},
        "gaps": s.gaps(None, 0, T0 + 10_000 * SEC),
        "tags": s.tags(),
    }


def _write_more(s: SqliteStore, ids: list[int]) -> None:
    """What a collector does meanwhile: new samples, late samples for earlier times inside
    the window, overwrites of existing times, a new tag, a gap, merges and a flush."""
    for k in range(5):
        s.write(Batch.of(np.repeat(ids, 20), np.tile(T0 + (200 + k * 20 + np.arange(20)) * SEC, 3), 3.0))
    s.write(Batch.of(np.repeat(ids, 5), np.tile(T0 + (60 + np.arange(5)) * SEC, 3), 9.0))  # overwrites
    s.write(Batch.of(ids, T0 + 55 * SEC + 1, 7.0))  # late, between existing samples
    s.register_tags([TagRecord(path="s/a/l/m/new", asset="s/a/l/m", role="analog",
                               device="plc", protocol="modbus")])
    s.open_gap("plc", T0 + 500 * SEC, "unreachable")
    s.compact()  # everything moves from ingest into chunks


def test_a_snapshot_does_not_see_what_a_writer_thread_writes_meanwhile(
    db: tuple[SqliteStore, list[int]],
) -> None:
    s, ids = db
    first_read_done, written = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            assert first_read_done.wait(WAIT_S)
            _write_more(s, ids)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            written.set()

    t = threading.Thread(target=writer)
    t.start()
    with s.snapshot():
        before = _view(s, ids)
        first_read_done.set()
        assert written.wait(WAIT_S), "the writer was blocked by the snapshot"
        assert not errors, errors
        inside = _view(s, ids)
        # another thread's reads are not pinned: it sees the writes at once
        other: list[dict[str, object]] = []
        reader = threading.Thread(target=lambda: other.append(_view(s, ids)))
        reader.start()
        reader.join(WAIT_S)
        with s.snapshot():  # nested: the same snapshot
            nested = _view(s, ids)
    t.join(WAIT_S)
    after = _view(s, ids)

    assert inside == before and nested == before
    assert other[0] == after
    assert after != before
    # the writes are really there afterwards
    got = s.read(ids[0], T0, T0 + 1000 * SEC, prior=False)
    assert len(got.ts_ns) == 100 + 10 + 100 + 1
    assert len(after["gaps"]) == 1 and len(after["tags"]) == 4  # type: ignore[arg-type]
    assert before["gaps"] == [] and len(before["tags"]) == 3  # type: ignore[arg-type]


def test_the_snapshot_connection_goes_back_to_the_pool_and_close_works(
    db: tuple[SqliteStore, list[int]],
) -> None:
    s, ids = db
    with s.snapshot():
        s.read(ids[0], T0, T0 + SEC)
    s.write(Batch.of(ids, T0 + 5000 * SEC, 1.0))
    assert s.latest(ids)[ids[0]].ts_ns == T0 + 5000 * SEC  # a new read, not the old snapshot
    with pytest.raises(RuntimeError), s.snapshot():
        raise RuntimeError("the block's own errors pass through")
    assert s.read(ids[0], T0 + 5000 * SEC, T0 + 5001 * SEC, prior=False).value.tolist() == [1.0]
