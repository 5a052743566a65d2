"""The spool file format and its policies: round trip, torn tails, restarts, full spools."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.errors import NotFoundError, StoreError
from store.batch import TS_UNKNOWN, Batch
from store.spool import Spool
from store.spool.codec import FRAME, Damaged, Frame, decode_batch, encode_batch, frame, read_frame
from store.spool.quarantine import Quarantine

ROOT = Path(__file__).resolve().parents[3]


def make_batch(seq: int, n: int = 100, tags: int = 5) -> Batch:
    """Batch number ``seq``: ``n`` points over ``tags`` tags, values encode (seq, index)."""
    i = np.arange(n)
    return Batch.of(i % tags, 1_700_000_000_000_000_000 + seq * 1_000_000_000 + i, seq * 1e6 + i, 0)


def assert_same(a: Batch, b: Batch) -> None:
    np.testing.assert_array_equal(a.tag_id, b.tag_id)
    np.testing.assert_array_equal(a.ts_ns, b.ts_ns)
    np.testing.assert_array_equal(a.value, b.value)
    np.testing.assert_array_equal(a.quality, b.quality)
    assert (a.text is None) == (b.text is None)
    if a.text is not None and b.text is not None:
        assert a.text.tolist() == b.text.tolist()
    for x, y in ((a.server_ts_ns, b.server_ts_ns), (a.gateway_ts_ns, b.gateway_ts_ns)):
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)


def segments(path: Path) -> list[Path]:
    return sorted(path.glob("*.seg"))


# ----------------------------------------------------------------------------- codec


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 50),
    texts=st.one_of(
        st.none(), st.lists(st.one_of(st.none(), st.text(max_size=12)), min_size=50, max_size=50)
    ),
    with_server=st.booleans(),
    with_gateway=st.booleans(),
    values=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=50, max_size=50),
)
def test_codec_round_trips_every_column(
    n: int, texts: list[str | None] | None, with_server: bool, with_gateway: bool, values: list[float]
) -> None:
    rng = np.random.default_rng(n)
    text = None if texts is None else np.array(texts[:n] + [None] * 0, dtype=object)
    batch = Batch(
        rng.integers(-2**31, 2**31 - 1, n).astype(np.int32),
        rng.integers(-2**62, 2**62, n).astype(np.int64),
        np.array(values[:n], dtype=np.float64),
        rng.integers(0, 256, n).astype(np.uint8),
        text,
        np.full(n, TS_UNKNOWN, np.int64) if with_server else None,
        rng.integers(0, 2**62, n).astype(np.int64) if with_gateway else None,
    )
    rec = frame(encode_batch(batch, 7, 123))
    got = read_frame(rec, 0)
    assert isinstance(got, Frame), got
    assert (got.end, got.seq, got.points) == (len(rec), 7, n)
    head, back = decode_batch(got.payload)
    assert (head.seq, head.points, head.spooled_ns) == (7, n, 123)
    assert_same(batch, back)


def test_read_frame_names_what_is_wrong() -> None:
    rec = frame(encode_batch(make_batch(1), 1, 0))
    def why(data: bytes) -> Damaged:
        got = read_frame(data, 0)
        assert isinstance(got, Damaged)
        return got

    assert why(rec[:5]).short and "shorter than a record frame" in why(rec[:5]).why
    assert why(rec[:-1]).short and "cut short" in why(rec[:-1]).why
    damaged = bytearray(rec)
    damaged[-1] ^= 0xFF  # the payload: the frame still says which batch and how many points
    assert why(bytes(damaged)) == Damaged("record checksum mismatch", seq=1, points=100, end=len(rec))
    damaged = bytearray(rec)
    damaged[6] ^= 0xFF  # the length: caught by the frame's own checksum, never followed
    assert why(bytes(damaged)) == Damaged("record frame checksum mismatch")
    assert why(b"\0" * len(rec)) == Damaged("zeros instead of a record", short=True)
    assert why(b"x" * len(rec)) == Damaged("no record marker")


# ----------------------------------------------------------------------------- spool


def test_fifo_order_survives_restart(tmp_path: Path) -> None:
    with Spool(tmp_path, 1 << 20) as sp:
        for s in range(5):
            assert sp.append(make_batch(s)).accepted
        (e0, b0), = sp.peek()
        assert_same(b0, make_batch(0))
        assert sp.pop(e0.seq) == 1
        assert (len(sp), sp.points) == (4, 400)
    with Spool(tmp_path, 1 << 20) as sp:
        got = sp.peek(max_batches=10)
        assert [e.seq for e, _ in got] == [1, 2, 3, 4]
        for s, (_, b) in zip(range(1, 5), got, strict=True):
            assert_same(b, make_batch(s))
        st_ = sp.stats()
        assert (st_.batches, st_.points) == (4, 400)
        assert st_.oldest_ns == int(make_batch(1).ts_ns.min())
        assert sp.append(make_batch(5)).seq == 5  # sequence numbers continue after a restart


def test_peek_respects_point_limit_but_returns_one(tmp_path: Path) -> None:
    with Spool(tmp_path, 1 << 20) as sp:
        for s in range(4):
            sp.append(make_batch(s, n=100))
        assert len(sp.peek(10, max_points=250)) == 2
        assert len(sp.peek(10, max_points=10)) == 1  # a big batch still goes, alone


def test_torn_tail_is_cut_and_spool_stays_usable(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Spool(tmp_path, 1 << 20) as sp:
        for s in range(3):
            sp.append(make_batch(s))
    seg = segments(tmp_path)[-1]
    good_size = seg.stat().st_size
    torn = frame(encode_batch(make_batch(3), 3, 0))[: FRAME.size + 40]  # a crash mid-write
    with open(seg, "ab") as f:
        f.write(torn)
    with caplog.at_level(logging.WARNING, "tierproof.store.spool"), Spool(tmp_path, 1 << 20) as sp:
        assert [e.seq for e in sp.entries()] == [0, 1, 2]
        assert seg.stat().st_size == good_size
        assert "cutting" in caplog.text and seg.name in caplog.text
        assert sp.stats().lost_batches == 0  # an interrupted append was never acknowledged
        sp.append(make_batch(3))
    with Spool(tmp_path, 1 << 20) as sp:
        got = sp.peek(10)
        assert [e.seq for e, _ in got] == [0, 1, 2, 3]
        assert_same(got[-1][1], make_batch(3))


def test_corrupt_last_record_is_counted_lost(tmp_path: Path) -> None:
    with Spool(tmp_path, 1 << 20) as sp:
        for s in range(3):
            sp.append(make_batch(s))
    seg = segments(tmp_path)[-1]
    data = bytearray(seg.read_bytes())
    data[-3] ^= 0x55  # complete but damaged: damage, not a crash in the middle of an append
    seg.write_bytes(bytes(data))
    with Spool(tmp_path, 1 << 20) as sp:
        assert [e.seq for e in sp.entries()] == [0, 1]
        assert (sp.stats().lost_batches, sp.stats().lost_points) == (1, 100)


CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    from store.batch import Batch
    from store.spool import Spool

    sp = Spool(sys.argv[1], 1 << 30)
    seq = 0
    while True:
        i = np.arange(2000)
        got = sp.append(Batch.of(i % 7, seq * 10_000 + i, seq))
        print(got.seq, flush=True)   # acknowledged: the append returned
        seq += 1
""")


def test_kill_9_during_appends_loses_no_acknowledged_batch(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    with subprocess.Popen([sys.executable, "-c", CHILD, str(spool_dir)], cwd=ROOT,
                          stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        acked = [int(proc.stdout.readline()) for _ in range(200)]
        os.kill(proc.pid, signal.SIGKILL)  # lands at an arbitrary point, often mid-append
        rest = proc.stdout.read()
    acked += [int(x) for x in rest.split()]
    with Spool(spool_dir, 1 << 30) as sp:
        got = sp.peek(len(sp) + 1)
        seqs = [e.seq for e, _ in got]
        # every acknowledged batch is there, intact, in order; at most one more (appended
        # but killed before it said so)
        assert seqs[: len(acked)] == acked
        assert len(seqs) - len(acked) in (0, 1)
        for e, b in got:
            assert len(b) == 2000 and np.all(b.value == e.seq)


def test_drop_oldest_drops_whole_batches_and_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rec = len(frame(encode_batch(make_batch(0), 0, 0)))
    with Spool(tmp_path, rec * 3, "drop_oldest") as sp:
        for s in range(3):
            assert sp.append(make_batch(s)).accepted
        with caplog.at_level(logging.ERROR, "tierproof.store.spool"):
            got = sp.append(make_batch(3))
            got2 = sp.append(make_batch(4))
        assert got.accepted and (got.dropped_batches, got.dropped_points) == (1, 100)
        assert got2.dropped_points == 100
        assert [e.seq for e in sp.entries()] == [2, 3, 4]
        assert "dropped the 1 oldest batches, 100 points; 200 points dropped in all" in caplog.text
    with Spool(tmp_path, rec * 3, "drop_oldest") as sp:  # counters persist
        s = sp.stats()
        assert (s.dropped_batches, s.dropped_points, s.batches) == (2, 200, 3)
        assert_same(sp.peek()[0][1], make_batch(2))


def test_refuse_newest_keeps_the_old_and_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rec = len(frame(encode_batch(make_batch(0), 0, 0)))
    with Spool(tmp_path, rec * 2 + 10, "refuse_newest") as sp:
        assert sp.append(make_batch(0)).accepted
        assert sp.append(make_batch(1)).accepted
        with caplog.at_level(logging.ERROR, "tierproof.store.spool"):
            assert not sp.append(make_batch(2)).accepted
        assert [e.seq for e in sp.entries()] == [0, 1]
        assert "refused a batch of 100 points" in caplog.text and "100 points refused in all" in caplog.text
    with Spool(tmp_path, rec * 2 + 10, "refuse_newest") as sp:
        s = sp.stats()
        assert (s.refused_batches, s.refused_points, s.dropped_points) == (1, 100, 0)


def test_a_batch_larger_than_the_spool_is_refused_under_either_policy(tmp_path: Path) -> None:
    with Spool(tmp_path, 1000, "drop_oldest") as sp:
        assert sp.append(make_batch(0, n=10)).accepted
        assert not sp.append(make_batch(1, n=1000)).accepted
        assert [e.seq for e in sp.entries()] == [0]  # nothing dropped for a hopeless batch
        assert sp.stats().refused_points == 1000


def test_segments_are_deleted_once_popped(tmp_path: Path) -> None:
    with Spool(tmp_path, 1 << 20, segment_bytes=5000) as sp:
        for s in range(20):
            sp.append(make_batch(s))
        assert len(segments(tmp_path)) > 3
        last = sp.entries()[-1].seq
        sp.pop(last - 1)
        assert len(segments(tmp_path)) == 1
        sp.pop(last)
        assert segments(tmp_path) == [] and sp.empty and sp.bytes == 0
        sp.append(make_batch(99))
    with Spool(tmp_path, 1 << 20, segment_bytes=5000) as sp:
        assert [e.seq for e in sp.entries()] == [20]


def test_one_owner_at_a_time_and_readonly_listing(tmp_path: Path) -> None:
    with Spool(tmp_path, 1 << 20) as sp:
        sp.append(make_batch(0))
        with pytest.raises(StoreError, match="in use by another process"):
            Spool(tmp_path, 1 << 20)
        ro = Spool(tmp_path, 1 << 20, readonly=True)
        assert [e.points for e in ro.entries()] == [100]
        with pytest.raises(StoreError, match="read-only"):
            ro.append(make_batch(1))
        ro.close()


def test_missing_spool_directory_is_named_when_listing(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=str(tmp_path / "nope")):
        Spool(tmp_path / "nope", 1 << 20, readonly=True)


# ----------------------------------------------------------------------------- quarantine


def test_quarantine_keeps_reason_replays_and_drops_counted(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q", 1 << 20)
    text = np.array(["alarm", None, "ok"], dtype=object)
    b = Batch(np.array([1, 2, 3], np.int32), np.array([5, 6, 7], np.int64), np.array([np.nan, 1, np.nan]),
              np.zeros(3, np.uint8), text)
    qid = q.add(b, 404, 'database not found: "plant"')
    qid2 = q.add(make_batch(1), 400, "partial write: field type conflict")
    assert (qid, qid2) == (1, 2)
    (e1, _) = Quarantine(tmp_path / "q", 1 << 20).entries()  # another process sees the same
    assert (e1.status, e1.reason, e1.points, e1.ts_min, e1.ts_max, e1.attempts) == (
        404, 'database not found: "plant"', 3, 5, 7, 1)
    _, back = q.load(1)
    assert_same(back, b)
    q.refused_again(1, 403, "forbidden")
    e1 = q.entries()[0]
    assert (e1.status, e1.reason, e1.attempts) == (403, "forbidden", 2)
    q.replayed(1)
    dropped = q.drop(2)
    assert dropped.points == 100
    s = q.stats()
    assert (s.batches, s.replayed_batches, s.replayed_points, s.dropped_batches, s.dropped_points) == (
        0, 1, 3, 1, 100)
    with pytest.raises(NotFoundError, match="no quarantined batch 2"):
        q.drop(2)
    assert q.add(make_batch(3), 400, "x") == 3  # ids are never reused


def test_full_quarantine_drops_the_refused_batch_and_counts(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q", 3000)
    assert q.add(make_batch(0), 400, "bad") is not None
    assert q.add(make_batch(1), 400, "bad") is None
    s = q.stats()
    assert (s.batches, s.dropped_batches, s.dropped_points) == (1, 1, 100)


# ----------------------------------------------------------------------------- CLI errors


def test_spool_commands_need_an_influx_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from api.cli import main as cli

    conf = tmp_path / "plant.yaml"
    conf.write_text(f"store: {{type: sqlite, path: {tmp_path / 'x.db'}}}\n")
    assert cli(["spool", "list", "--config", str(conf)]) == 2
    err = capsys.readouterr().err
    assert f"{conf}: store.type is 'sqlite'" in err and "store.type: influx" in err


def test_spool_list_before_anything_was_spooled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from api.cli import main as cli

    conf = tmp_path / "plant.yaml"
    conf.write_text(f"store: {{type: influx, api: v1, database: db, spool: {{path: {tmp_path / 'sp'}}}}}\n")
    assert cli(["spool", "list", "--config", str(conf)]) == 0
    assert "does not exist yet" in capsys.readouterr().out


def test_spool_replay_and_drop_need_a_target(capsys: pytest.CaptureFixture[str]) -> None:
    from api.cli import main as cli

    for action in ("replay", "drop"):
        with pytest.raises(SystemExit) as ex:
            cli(["spool", action, "--config", "x.yaml"])
        assert ex.value.code == 2
        assert "one of the arguments --quarantine --all is required" in capsys.readouterr().err
