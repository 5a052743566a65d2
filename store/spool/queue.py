"""A bounded, durable, on-disk FIFO of batches: where batches wait while a sink cannot take them.

Layout of the spool directory::

    000000000001.seg   segments: records appended in order (see store.spool.codec)
    000000000002.seg
    state.json         first live sequence number, the next one, the drop and loss counters
                       (atomically replaced)
    .lock              held (flock) by the one process that owns the spool
    quarantine/        batches a sink refused for good (store.spool.quarantine)

An append is one ``write`` of a framed record plus one ``fdatasync``: when :meth:`Spool.append`
returns, the batch survives a crash. A crash in the middle of an append leaves a torn record
at the end of the last segment; opening the spool finds it by its length and checksum and cuts
the file there, so the spool stays readable and nothing that was acknowledged is lost.

**Damage is not a torn tail.** Every record has a sequence number, and (format v2, see
store.spool.codec) a frame with its own checksum besides the payload's. Opening the spool reads
every segment; at a record that is not intact it resynchronises on the next intact record and
goes on, so damage costs the damaged records only. Which batches were lost is exact: every
sequence number from the first live one to the last one appended (the highest intact record,
or the ``next_seq`` saved in ``state.json``, whichever is higher, so a truncated or deleted last
segment is noticed too) that no intact record holds. A missing or truncated segment anywhere
is therefore a gap in the numbers. Lost batches are counted in ``state.json`` (``lost_batches``,
``lost_points``: the points of the lost batches whose frame survived), each range once (the
ranges already counted are kept there while they are live), and logged with the segment and
byte offset. A record that becomes unreadable while the spool is open (damaged or deleted
under it) is counted the same way when the drain reaches it, and the drain goes on.
Only bytes that end early at the very end of the last segment (or zeros there) are taken for an
append a crash interrupted (never acknowledged, so nothing lost): they are cut off.

Popping advances the first live sequence number in ``state.json``; a segment is deleted once
every record in it is popped. A crash after a batch was sent but before its pop was saved sends
that batch again after the restart: delivery is at least once, and exactly once in InfluxDB,
which keeps one value per series and timestamp (a point written twice is stored once).

The bound is on live records (``max_bytes``); disk use can exceed it by at most one segment
(``max_bytes / 16``, between 64 KiB and 64 MiB) of already-popped records. When an append
would pass the bound, ``when_full`` decides: ``drop_oldest`` drops whole oldest batches,
``refuse_newest`` refuses the new one. Either way every dropped point is counted in
``state.json`` (the counters survive restarts) and logged with the count.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from config.errors import StoreError

from ..batch import Batch
from .codec import Damaged, Frame, decode_batch, decode_header, encode_batch, frame, read_frame, resync

__all__ = ["AppendResult", "Spool", "SpoolEntry", "SpoolStats", "WhenFull", "fsync_dir", "write_atomic"]

log = logging.getLogger("tierproof.store.spool")

WhenFull = Literal["drop_oldest", "refuse_newest"]
_SEG_SUFFIX = ".seg"


def fsync_dir(path: Path) -> None:
    """Make a file creation, rename or deletion in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, never half."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


#: the unit in which a crash may leave a file extended but its data unwritten (zeros)
_PAGE = 4096


def _unwritten_page(data: bytes, pos: int) -> bool:
    """Whether everything from the first page boundary after ``pos`` to the end is zeros: the
    mark of an append a crash interrupted after the file grew but before all its pages reached
    the disk (the record's start may be intact, its rest is not)."""
    page = (pos // _PAGE + 1) * _PAGE
    return page < len(data) and data.count(0, page) == len(data) - page


def _ranges(seqs: list[int]) -> list[tuple[int, int]]:
    """Sorted ``seqs`` as inclusive runs."""
    out: list[tuple[int, int]] = []
    for q in seqs:
        if out and out[-1][1] == q - 1:
            out[-1] = (out[-1][0], q)
        else:
            out.append((q, q))
    return out


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """What the spool knows about one batch without reading it."""

    seq: int
    points: int
    bytes: int  # frame + payload
    ts_min: int
    ts_max: int
    spooled_ns: int
    segment: int
    offset: int


@dataclass(frozen=True, slots=True)
class AppendResult:
    accepted: bool
    seq: int | None = None
    dropped_batches: int = 0  # oldest batches dropped to make room (drop_oldest)
    dropped_points: int = 0


@dataclass(slots=True)
class SpoolStats:
    batches: int
    points: int
    bytes: int
    max_bytes: int
    when_full: str
    oldest_ns: int | None  # earliest sample time in the spool
    oldest_spooled_ns: int | None  # when the oldest waiting batch was spooled
    dropped_batches: int  # dropped by drop_oldest (since the spool was created)
    dropped_points: int
    refused_batches: int  # refused by refuse_newest, or larger than the whole spool
    refused_points: int
    lost_batches: int = 0  # damaged, truncated or deleted records (since the spool was created)
    lost_points: int = 0  # of those, the points of the batches whose record frame survived
    lost_since_open: int = 0  # lost batches found since this process opened the spool
    damage: tuple[str, ...] = ()  # the last damage reports (segment, offset, what, how many lost)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(slots=True)
class _Counters:
    head_seq: int = 0  # every record with a smaller seq is popped or dropped
    dropped_batches: int = 0
    dropped_points: int = 0
    refused_batches: int = 0
    refused_points: int = 0
    next_seq: int = 0  # every seq below was appended (a lower bound: saved with each state change)
    lost_batches: int = 0
    lost_points: int = 0


#: damage reports kept for status (the log has them all)
MAX_DAMAGE_REPORTS = 20


@dataclass(slots=True)
class _Segment:
    no: int
    path: Path
    size: int
    last_seq: int = -1  # -1: no record yet


class Spool:
    """A bounded durable FIFO of batches in directory ``path``. Thread-safe.

    ``readonly=True`` opens a spool another process owns, for listing: no lock, no repair,
    no writes (a record being appended at that moment is simply not listed).
    """

    def __init__(
        self,
        path: str | Path,
        max_bytes: int,
        when_full: WhenFull = "drop_oldest",
        *,
        segment_bytes: int | None = None,
        readonly: bool = False,
    ) -> None:
        if when_full not in ("drop_oldest", "refuse_newest"):
            raise ValueError(f"when_full must be drop_oldest or refuse_newest, not {when_full!r}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.when_full: WhenFull = when_full
        self.segment_bytes = segment_bytes or min(max(max_bytes // 16, 1 << 16), 1 << 26)
        self.readonly = readonly
        self._lock = threading.RLock()
        self._entries: deque[SpoolEntry] = deque()
        self._segments: dict[int, _Segment] = {}  # in order (dicts keep insertion order)
        self._read_fds: dict[int, int] = {}
        self._tail_fd: int | None = None
        self._tail: _Segment | None = None
        self._bytes = 0
        self._points = 0
        self._next_seq = 0
        self._lock_fd: int | None = None
        self._closed = False
        self._lost_ranges: list[list[int]] = []  # inclusive seq ranges already counted as lost
        self._lost_since_open = 0
        self._damage: deque[str] = deque(maxlen=MAX_DAMAGE_REPORTS)
        if readonly:
            if not self.path.is_dir():
                raise StoreError(f"spool {self.path}: no such directory")
        else:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"spool {self.path}: cannot create: {exc.strerror}") from exc
            self._take_lock()
        self._c = self._load_state()
        self._scan()

    # ------------------------------------------------------------------ opening

    def _take_lock(self) -> None:
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise StoreError(
                f"spool {self.path} is in use by another process (a running gateway?); "
                "stop it first, or only list the spool"
            ) from exc
        self._lock_fd = fd

    def _owned_by_another(self) -> bool:
        """Whether a process holds the spool's lock now (a read-only listing beside a gateway)."""
        try:
            fd = os.open(self.path / ".lock", os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # releases the shared lock if taken
        return False

    def _load_state(self) -> _Counters:
        p = self.path / "state.json"
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return _Counters()
        except (OSError, ValueError) as exc:
            raise StoreError(f"spool {p}: unreadable state file: {exc}") from exc
        try:
            c = _Counters(**{k: int(raw[k]) for k in ("head_seq", "dropped_batches", "dropped_points",
                                                       "refused_batches", "refused_points")})
            # written since format v2 (absent in an older gateway's state file)
            for k in ("next_seq", "lost_batches", "lost_points"):
                setattr(c, k, int(raw.get(k, 0)))
            self._lost_ranges = [[int(a), int(b)] for a, b in raw.get("lost_ranges", [])]
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"spool {p}: state file lacks or garbles {exc}") from exc
        return c

    def _save_state(self) -> None:
        self._c.next_seq = max(self._c.next_seq, self._next_seq)
        self._lost_ranges = [r for r in self._lost_ranges if r[1] >= self._c.head_seq]
        doc: dict[str, object] = {**asdict(self._c), "lost_ranges": self._lost_ranges}
        write_atomic(self.path / "state.json", json.dumps(doc).encode())

    def _counted(self, seq: int) -> bool:
        return any(a <= seq <= b for a, b in self._lost_ranges)

    def _report(self, level: int, msg: str) -> None:
        log.log(level, "spool %s: %s", self.path, msg)
        self._damage.append(msg)

    def _scan(self) -> None:
        """Index every intact live record, resynchronising after damage; count what is lost;
        cut a torn tail (an interrupted append) off the last segment."""
        nos = sorted(int(p.name[: -len(_SEG_SUFFIX)]) for p in self.path.glob(f"*{_SEG_SUFFIX}")
                     if p.name[: -len(_SEG_SUFFIX)].isdigit())
        max_seq = -1
        known_points: dict[int, int] = {}  # seq -> points of damaged records whose frame survived
        tail_unknown = False  # the last segment ends in damage that hides its sequence number
        damaged_at: list[tuple[str, int, str]] = []  # (segment, offset, why)
        for no in nos:
            seg = _Segment(no, self.path / f"{no:012d}{_SEG_SUFFIX}", 0)
            try:
                data = seg.path.read_bytes()
            except FileNotFoundError:
                if self.readonly:
                    continue  # drained and deleted by the owner since the listing began
                raise
            except OSError as exc:
                raise StoreError(f"spool {seg.path}: cannot read: {exc.strerror}") from exc
            last = no == nos[-1]
            pos = 0
            good_end = 0
            while pos < len(data):
                got = read_frame(data, pos)
                if isinstance(got, Frame) and got.seq <= max_seq:
                    # out of order: cannot happen unless the file was tampered with
                    got = Damaged(f"sequence number {got.seq} after {max_seq}")
                if isinstance(got, Frame):
                    max_seq = seg.last_seq = got.seq
                    if got.seq >= self._c.head_seq:
                        head = decode_header(got.payload)
                        self._add_entry(SpoolEntry(got.seq, got.points, got.end - pos, head.ts_min,
                                                   head.ts_max, head.spooled_ns, no, pos))
                    pos = good_end = got.end
                    continue
                nxt = resync(data, pos)
                torn = nxt is None and last and (got.short or _unwritten_page(data, pos))
                if got.seq is not None and got.points is not None:
                    known_points[got.seq] = got.points
                    if not torn:  # a torn append is lost only if state.json says it was acknowledged
                        max_seq = max(max_seq, got.seq)
                if nxt is None:
                    if torn:
                        self._cut(seg, pos, len(data), got.why)
                    else:
                        damaged_at.append((seg.path.name, pos, f"{got.why}, then {len(data) - pos} "
                                           "bytes without an intact record"))
                        if last and (got.seq is None or got.short):
                            tail_unknown = True
                    break
                if got.seq is None or got.seq >= self._c.head_seq:  # else sent already: harmless
                    damaged_at.append((seg.path.name, pos, f"{got.why}; {nxt[0] - pos} bytes skipped"))
                pos = nxt[0]
            seg.size = good_end if last else len(data)
            self._segments[no] = seg
        if self.readonly and self._owned_by_another():
            # the owner may have popped (and deleted segments) meanwhile: its newer state says
            # which records are gone on purpose. Its next_seq is not used: records appended
            # after this listing began are not lost. The owner's own opening counts for good.
            fresh = self._load_state()
            if fresh.head_seq > self._c.head_seq:
                self._c = fresh
                for e in [e for e in self._entries if e.seq < fresh.head_seq]:
                    self._bytes -= e.bytes
                    self._points -= e.points
                self._entries = deque(e for e in self._entries if e.seq >= fresh.head_seq)
            top = max_seq + (1 if tail_unknown else 0)
        else:
            top = max(max_seq + (1 if tail_unknown else 0), self._c.next_seq - 1)
        self._next_seq = max(top + 1, self._c.head_seq)
        have = {e.seq for e in self._entries}
        lost = [q for q in range(self._c.head_seq, top + 1) if q not in have]
        for name, pos, why in damaged_at:
            self._report(logging.ERROR, f"damaged record in segment {name} at byte {pos}: {why}")
        new = [q for q in lost if not self._counted(q)]
        if new:
            points = sum(known_points.get(q, 0) for q in new)
            self._lost_since_open += len(new)
            self._c.lost_batches += len(new)
            self._c.lost_points += points
            for a, b in _ranges(new):
                self._lost_ranges.append([a, b])
                self._report(logging.ERROR, f"batches {a}..{b} lost ({b - a + 1} batches) to damaged, "
                             "truncated or missing segments")
            self._report(logging.ERROR, f"{len(new)} batches lost in all at this opening ({points} "
                         "points known: a batch whose record frame is gone has no count); "
                         f"{self._c.lost_batches} batches lost since the spool was created")
        elif lost:
            log.info("spool %s: %d lost batches were counted before", self.path, len(lost))
        if not self.readonly:
            if new or self._next_seq > self._c.next_seq:
                self._save_state()
            self._remove_consumed_segments()
        if self._entries:
            log.info("spool %s: %d batches, %d points waiting from a previous run",
                     self.path, len(self._entries), self._points)

    def _cut(self, seg: _Segment, pos: int, size: int, why: str) -> None:
        if self.readonly:
            return
        log.warning("spool %s: %s at byte %d; cutting %d bytes (an append a crash interrupted)",
                    seg.path.name, why, pos, size - pos)
        with open(seg.path, "r+b") as f:
            f.truncate(pos)
            f.flush()
            os.fsync(f.fileno())

    def _add_entry(self, e: SpoolEntry) -> None:
        self._entries.append(e)
        self._bytes += e.bytes
        self._points += e.points

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def empty(self) -> bool:
        return not self._entries

    @property
    def points(self) -> int:
        return self._points

    @property
    def bytes(self) -> int:
        return self._bytes

    def entries(self) -> list[SpoolEntry]:
        with self._lock:
            return list(self._entries)

    def stats(self) -> SpoolStats:
        with self._lock:
            live = [e for e in self._entries if e.points]
            c = self._c
            return SpoolStats(
                batches=len(self._entries), points=self._points, bytes=self._bytes,
                max_bytes=self.max_bytes, when_full=self.when_full,
                oldest_ns=min((e.ts_min for e in live), default=None),
                oldest_spooled_ns=self._entries[0].spooled_ns if self._entries else None,
                dropped_batches=c.dropped_batches, dropped_points=c.dropped_points,
                refused_batches=c.refused_batches, refused_points=c.refused_points,
                lost_batches=c.lost_batches, lost_points=c.lost_points,
                lost_since_open=self._lost_since_open, damage=tuple(self._damage),
            )

    def peek(self, max_batches: int = 1, max_points: int | None = None) -> list[tuple[SpoolEntry, Batch]]:
        """The oldest batches in order, without removing them: at most ``max_batches``, and
        no more than ``max_points`` points (but always at least one batch if any).
        A record that became unreadable since the spool was opened (damaged, or its segment
        deleted) is counted as lost, logged and removed when it is the oldest, so the drain
        goes on with the next."""
        out: list[tuple[SpoolEntry, Batch]] = []
        with self._lock:
            total = 0
            while len(out) < max_batches and len(self._entries) > len(out):
                e = self._entries[len(out)]
                if out and max_points is not None and total + e.points > max_points:
                    break
                got = self._read(e)
                if isinstance(got, str):
                    if out:
                        break  # the batches before it go first; it is the oldest next time
                    self._lose_head(e, got)
                    continue
                out.append((e, got))
                total += e.points
        return out

    def _read(self, e: SpoolEntry) -> Batch | str:
        """The batch of ``e``, or why it cannot be read."""
        try:
            fd = self._read_fds.get(e.segment)
            if fd is None:
                fd = self._read_fds[e.segment] = os.open(self._segments[e.segment].path, os.O_RDONLY)
            data = os.pread(fd, e.bytes, e.offset)
        except OSError as exc:
            return f"cannot read: {exc.strerror}"
        got = read_frame(data, 0)
        if isinstance(got, Damaged):
            return got.why if len(data) == e.bytes else f"segment truncated ({got.why})"
        if got.seq != e.seq:
            return f"holds batch {got.seq} instead"
        try:
            return decode_batch(got.payload)[1]
        except ValueError as exc:
            return f"undecodable: {exc}"

    def _lose_head(self, e: SpoolEntry, why: str) -> None:
        """The oldest record ``e`` cannot be read: count it as lost and go past it."""
        self._entries.popleft()
        self._bytes -= e.bytes
        self._points -= e.points
        self._c.head_seq = e.seq + 1
        self._c.lost_batches += 1
        self._c.lost_points += e.points
        self._lost_since_open += 1
        self._report(logging.ERROR, f"batch {e.seq} ({e.points} points) in segment "
                     f"{e.segment:012d}{_SEG_SUFFIX} at byte {e.offset} lost: {why}; "
                     f"{self._c.lost_batches} batches lost since the spool was created")
        if not self.readonly:
            self._save_state()
            self._remove_consumed_segments()

    # ------------------------------------------------------------------ changes

    def _writable(self) -> None:
        if self.readonly:
            raise StoreError(f"spool {self.path} is open read-only")
        if self._closed:
            raise StoreError(f"spool {self.path} is closed")

    def append(self, batch: Batch) -> AppendResult:
        """Add ``batch`` at the tail, durably; apply ``when_full`` when it does not fit."""
        with self._lock:
            self._writable()
            rec = frame(encode_batch(batch, self._next_seq, time.time_ns()))
            if len(rec) > self.max_bytes or (
                self.when_full == "refuse_newest" and self._bytes + len(rec) > self.max_bytes
            ):
                self._c.refused_batches += 1
                self._c.refused_points += len(batch)
                self._save_state()
                log.error("spool %s full (%d of %d bytes, policy %s): refused a batch of %d points "
                          "(%d bytes); %d points refused in all", self.path, self._bytes,
                          self.max_bytes, self.when_full, len(batch), len(rec), self._c.refused_points)
                return AppendResult(False)
            dropped_b = dropped_p = 0
            while self._bytes + len(rec) > self.max_bytes:
                e = self._entries.popleft()
                self._bytes -= e.bytes
                self._points -= e.points
                self._c.head_seq = e.seq + 1
                dropped_b += 1
                dropped_p += e.points
            if dropped_b:
                self._c.dropped_batches += dropped_b
                self._c.dropped_points += dropped_p
                self._save_state()
                log.error("spool %s full (max %d bytes, policy drop_oldest): dropped the %d oldest "
                          "batches, %d points; %d points dropped in all", self.path, self.max_bytes,
                          dropped_b, dropped_p, self._c.dropped_points)
                self._remove_consumed_segments()
            seg, fd = self._tail_for_append()
            try:
                _write_all(fd, rec)
                os.fdatasync(fd)
            except OSError as exc:
                with contextlib.suppress(OSError):  # leave no torn record behind a failed write
                    os.ftruncate(fd, seg.size)
                raise StoreError(f"spool {seg.path}: cannot write: {exc.strerror}") from exc
            seq = self._next_seq
            self._add_entry(SpoolEntry(seq, len(batch), len(rec),
                                       int(batch.ts_ns.min()) if len(batch) else 0,
                                       int(batch.ts_ns.max()) if len(batch) else 0,
                                       time.time_ns(), seg.no, seg.size))
            seg.size += len(rec)
            seg.last_seq = seq
            self._next_seq += 1
            return AppendResult(True, seq, dropped_b, dropped_p)

    def _tail_for_append(self) -> tuple[_Segment, int]:
        if self._tail is not None and self._tail_fd is not None and self._tail.size < self.segment_bytes:
            return self._tail, self._tail_fd
        if self._tail_fd is not None:
            os.close(self._tail_fd)
        no = max(self._segments, default=0) + 1
        seg = _Segment(no, self.path / f"{no:012d}{_SEG_SUFFIX}", 0)
        self._tail_fd = os.open(seg.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        fsync_dir(self.path)
        self._segments[no] = seg
        self._tail = seg
        return seg, self._tail_fd

    def pop(self, through_seq: int) -> int:
        """Remove every batch up to and including ``through_seq`` (they reached the sink);
        return how many were removed."""
        with self._lock:
            self._writable()
            n = 0
            while self._entries and self._entries[0].seq <= through_seq:
                e = self._entries.popleft()
                self._bytes -= e.bytes
                self._points -= e.points
                n += 1
            if n:
                self._c.head_seq = max(self._c.head_seq, through_seq + 1)
                self._save_state()
                self._remove_consumed_segments()
            return n

    def _remove_consumed_segments(self) -> None:
        removed = False
        for no in list(self._segments):
            seg = self._segments[no]
            if seg.last_seq >= self._c.head_seq:
                break
            if seg is self._tail and seg.last_seq == -1:
                break  # just created, nothing written yet
            if seg is self._tail:
                assert self._tail_fd is not None
                os.close(self._tail_fd)
                self._tail, self._tail_fd = None, None
            fd = self._read_fds.pop(no, None)
            if fd is not None:
                os.close(fd)
            seg.path.unlink(missing_ok=True)
            del self._segments[no]
            removed = True
        if removed:
            fsync_dir(self.path)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if not self.readonly and self._next_seq > self._c.next_seq:
                # so that the next opening notices a truncated or deleted last segment
                with contextlib.suppress(OSError):
                    self._save_state()
            for fd in [*self._read_fds.values(), self._tail_fd, self._lock_fd]:
                if fd is not None:
                    os.close(fd)
            self._read_fds.clear()
            self._tail_fd = self._lock_fd = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
