"""Spool damage is never silent loss (issue 13, item 4): damaged bytes anywhere in a segment
cost exactly the damaged records, counted (persistently), listed and logged with the segment
and offset; the reader resynchronises on the next intact record; a missing or truncated segment
is noticed by the gap in the sequence numbers. Segments an older gateway wrote (frame v1) stay
readable.

Damage is made by overwriting bytes of real segment files, the fault a disk or a careless
operator produces."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from store.batch import Batch
from store.spool import Spool
from store.spool.codec import FRAME, encode_batch, frame_v1

N = 30  # batches of 100 points
PER_SEG = 10  # records per segment (segment_bytes chosen below)


def make_batch(seq: int, n: int = 100) -> Batch:
    i = np.arange(n)
    return Batch.of(i % 5, 1_700_000_000_000_000_000 + seq * 1_000_000_000 + i, seq * 1e6 + i, 0)


def segments(path: Path) -> list[Path]:
    return sorted(path.glob("*.seg"))


def record_offsets(seg: Path) -> list[int]:
    """Offsets of the records in an intact v2 segment (every record has the same size here)."""
    size = seg.stat().st_size
    rec = size // PER_SEG
    assert rec * PER_SEG == size
    return [k * rec for k in range(PER_SEG)]


def filled(path: Path) -> None:
    rec = len(encode_batch(make_batch(0), 0, 0)) + FRAME.size
    with Spool(path, 1 << 24, segment_bytes=rec * PER_SEG) as sp:
        for s in range(N):
            assert sp.append(make_batch(s)).accepted
    assert len(segments(path)) == N // PER_SEG


def damage(seg: Path, at: int, n: int = 8) -> None:
    data = bytearray(seg.read_bytes())
    data[at : at + n] = bytes(b ^ 0xA5 for b in data[at : at + n])
    seg.write_bytes(bytes(data))


def live_seqs(path: Path) -> list[int]:
    with Spool(path, 1 << 24, readonly=True) as sp:
        return [e.seq for e in sp.entries()]


def drained_values(sp: Spool) -> list[int]:
    """Drain everything through peek/pop, as the drain thread does: the batch numbers read."""
    got = []
    while not sp.empty:
        items = sp.peek(4)
        for _, b in items:
            got.append(int(b.value[0] // 1e6))
        if items:
            sp.pop(items[-1][0].seq)
    return got


@pytest.mark.parametrize(
    ("where", "lost", "points", "reported_at"),
    [
        ("head", [10], 0, 0),  # the frame of the segment's first record: its points are unknown
        ("middle", [15], 100, 5),  # inside the payload of a record in the middle
        ("across", [14, 15], 100, 4),  # the end of one record's payload and the frame of the next
        ("tail", [19], 100, 9),  # the segment's last record
    ],
)
def test_damage_costs_exactly_the_damaged_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str, lost: list[int],
    points: int, reported_at: int,
) -> None:
    filled(tmp_path)
    seg = segments(tmp_path)[1]  # batches 10..19
    offs = record_offsets(seg)
    at = {"head": 2, "middle": offs[5] + 300, "across": offs[5] - 4, "tail": offs[9] + 500}[where]
    damage(seg, at)
    with caplog.at_level(logging.ERROR, "tierproof.store.spool"), Spool(tmp_path, 1 << 24) as sp:
        st = sp.stats()
        assert (st.lost_batches, st.lost_points, st.lost_since_open) == (len(lost), points, len(lost))
        assert [e.seq for e in sp.entries()] == [s for s in range(N) if s not in lost]
        assert f"damaged record in segment {seg.name} at byte {offs[reported_at]}:" in caplog.text
        assert any(seg.name in d for d in st.damage)
        assert drained_values(sp) == [s for s in range(N) if s not in lost]  # the rest, in order
        assert sp.stats().lost_batches == len(lost)
    # counted once: a restart does not count the same damage again
    with Spool(tmp_path, 1 << 24) as sp:
        assert (sp.stats().lost_batches, sp.stats().lost_since_open) == (len(lost), 0)


def test_damaged_payload_knows_its_points_damaged_frame_does_not(tmp_path: Path) -> None:
    filled(tmp_path)
    seg = segments(tmp_path)[1]
    offs = record_offsets(seg)
    damage(seg, offs[2] + 200)  # payload of batch 12: the frame says 100 points
    damage(seg, offs[6] + 4)  # the length field of batch 16: only its number is known (the gap)
    with Spool(tmp_path, 1 << 24) as sp:
        assert (sp.stats().lost_batches, sp.stats().lost_points) == (2, 100)


def test_damage_in_the_head_of_the_first_segment(tmp_path: Path) -> None:
    filled(tmp_path)
    damage(segments(tmp_path)[0], 0, 64)  # the first record's frame and the start of its payload
    assert live_seqs(tmp_path)[:2] == [1, 2]
    with Spool(tmp_path, 1 << 24) as sp:
        assert sp.stats().lost_batches == 1
        assert len(drained_values(sp)) == N - 1


def test_a_deleted_segment_is_reported_not_zero_batches(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    filled(tmp_path)
    segments(tmp_path)[1].unlink()
    with caplog.at_level(logging.ERROR, "tierproof.store.spool"), Spool(tmp_path, 1 << 24) as sp:
        assert sp.stats().lost_batches == PER_SEG
        assert "batches 10..19 lost (10 batches)" in caplog.text
        assert len(sp) == N - PER_SEG


def test_a_deleted_first_or_last_segment_is_reported(tmp_path: Path) -> None:
    filled(tmp_path)
    segs = segments(tmp_path)
    segs[0].unlink()
    segs[-1].unlink()  # the last one: noticed by next_seq, saved when the spool was closed
    with Spool(tmp_path, 1 << 24) as sp:
        assert sp.stats().lost_batches == 2 * PER_SEG
        assert [e.seq for e in sp.entries()] == list(range(10, 20))
        assert sp.append(make_batch(99)).seq == N  # no sequence number is reused


def test_every_segment_deleted_is_not_an_empty_spool(tmp_path: Path) -> None:
    filled(tmp_path)
    for s in segments(tmp_path):
        s.unlink()
    with Spool(tmp_path, 1 << 24) as sp:
        assert (len(sp), sp.stats().lost_batches) == (0, N)


@pytest.mark.parametrize("seg_index", [1, 2])
def test_a_truncated_segment_is_reported(tmp_path: Path, seg_index: int) -> None:
    filled(tmp_path)
    seg = segments(tmp_path)[seg_index]
    offs = record_offsets(seg)
    with open(seg, "r+b") as f:
        f.truncate(offs[4])  # at a record boundary: batches 4..9 of this segment are gone
    first = seg_index * PER_SEG
    with Spool(tmp_path, 1 << 24) as sp:
        assert sp.stats().lost_batches == 6
        assert [e.seq for e in sp.entries()] == [s for s in range(N) if not first + 4 <= s < first + 10]


def test_damage_found_while_draining_is_counted_and_the_drain_goes_on(tmp_path: Path) -> None:
    filled(tmp_path)
    with Spool(tmp_path, 1 << 24) as sp:
        seg = segments(tmp_path)[1]
        damage(seg, record_offsets(seg)[3] + 300)  # under the open spool: batch 13
        segments(tmp_path)[2].unlink()  # and batches 20..29 with their segment
        assert drained_values(sp) == list(range(13)) + list(range(14, 20))
        st = sp.stats()
        assert (st.lost_batches, st.lost_points, st.lost_since_open) == (11, 1100, 11)
        assert any("batch 13 (100 points)" in d and seg.name in d for d in st.damage)
    with Spool(tmp_path, 1 << 24) as sp:  # persisted, and not counted again
        assert (len(sp), sp.stats().lost_batches) == (0, 11)


def test_old_v1_segments_stay_readable_and_resync(tmp_path: Path) -> None:
    """A segment an older gateway wrote (v1 frames: no frame checksum, no number in the frame)."""
    recs = [frame_v1(encode_batch(make_batch(s), s, 0)) for s in range(5)]
    (tmp_path / "000000000001.seg").write_bytes(b"".join(recs))
    (tmp_path / "state.json").write_text(  # the older state file: no next_seq nor loss counters
        '{"head_seq": 0, "dropped_batches": 0, "dropped_points": 0, "refused_batches": 0, '
        '"refused_points": 0}')
    with Spool(tmp_path, 1 << 24) as sp:
        assert [e.seq for e in sp.entries()] == [0, 1, 2, 3, 4]
        assert sp.append(make_batch(5)).seq == 5  # new appends go to a new segment, in v2
    assert [s.name for s in segments(tmp_path)] == ["000000000001.seg", "000000000002.seg"]
    assert (tmp_path / "000000000002.seg").read_bytes()[:4] == b"TPS2"
    damage(tmp_path / "000000000001.seg", len(recs[0]) + 2)  # batch 1's v1 frame
    with Spool(tmp_path, 1 << 24) as sp:
        assert sp.stats().lost_batches == 1
        assert drained_values(sp) == [0, 2, 3, 4, 5]


def test_spool_list_shows_lost_batches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from api.cli import main as cli

    sp_dir = tmp_path / "sp"
    filled(sp_dir)
    seg = segments(sp_dir)[0]
    damage(seg, record_offsets(seg)[5] + 300)
    conf = tmp_path / "plant.yaml"
    conf.write_text(f"store: {{type: influx, api: v1, database: db, spool: {{path: {sp_dir}}}}}\n")
    assert cli(["spool", "list", "--config", str(conf)]) == 0  # read-only: counts what it finds
    out = capsys.readouterr().out
    assert "lost 1 batches (100 points known) to damage" in out
    assert f"damage: damaged record in segment {seg.name} at byte" in out


def test_listing_beside_a_running_owner_and_without_one(tmp_path: Path) -> None:
    """spool list (read-only) beside the owner counts nothing the owner drained as lost, and does
    not take the owner's next_seq for records of its own (they may be appended after the listing
    read the segments); without an owner it sees a deleted last segment as the owner would."""
    filled(tmp_path)
    with Spool(tmp_path, 1 << 24) as owner:
        owner.pop(PER_SEG - 1)  # drained: the first segment is deleted
        segments(tmp_path)[-1].unlink()
        with Spool(tmp_path, 1 << 24, readonly=True) as ro:
            assert (len(ro), ro.stats().lost_batches) == (PER_SEG, 0)
    with Spool(tmp_path, 1 << 24, readonly=True) as ro:  # no owner now: next_seq is trusted
        assert (len(ro), ro.stats().lost_batches) == (PER_SEG, PER_SEG)


@pytest.mark.parametrize("acknowledged", [False, True])
def test_a_crash_that_left_the_last_record_half_zeros_is_a_torn_tail(
    tmp_path: Path, acknowledged: bool
) -> None:
    """The file grew but a page of the last append never reached the disk (zeros from a page
    boundary on): an interrupted append, not damage, and cut. Lost only if state.json says the
    append had returned (here: the clean close saved next_seq 3; a crash would have left 2)."""
    rec = len(encode_batch(make_batch(0, n=400), 0, 0)) + FRAME.size
    with Spool(tmp_path, 1 << 24, segment_bytes=1 << 20) as sp:
        for s in range(3):
            sp.append(make_batch(s, n=400))
    (seg,) = segments(tmp_path)
    data = bytearray(seg.read_bytes())
    start = 2 * rec  # the last record; zeros from the first page boundary inside it
    page = (start // 4096 + 1) * 4096
    assert start < page < len(data)
    data[page:] = bytes(len(data) - page)
    seg.write_bytes(bytes(data))
    state = tmp_path / "state.json"
    if not acknowledged:  # as a crash during the third append leaves it
        state.write_text(state.read_text().replace('"next_seq": 3', '"next_seq": 2'))
    with Spool(tmp_path, 1 << 24) as sp:
        assert [e.seq for e in sp.entries()] == [0, 1]
        assert seg.stat().st_size == start  # cut
        assert (sp.stats().lost_batches, sp.stats().lost_points) == ((1, 400) if acknowledged else (0, 0))
