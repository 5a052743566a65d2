"""A bounded, durable, on-disk FIFO of batches: where batches wait while a sink cannot take them.

Layout of the spool directory::

    000000000001.seg   segments: records appended in order (see store.spool.codec)
    000000000002.seg
    state.json         first live sequence number and the drop counters (atomically replaced)
    .lock              held (flock) by the one process that owns the spool
    quarantine/        batches a sink refused for good (store.spool.quarantine)

An append is one ``write`` of a framed record plus one ``fdatasync``: when :meth:`Spool.append`
returns, the batch survives a crash. A crash in the middle of an append leaves a torn record
at the end of the last segment; opening the spool finds it by its length and checksum and cuts
the file there, so the spool stays readable and nothing that was acknowledged is lost.

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
import itertools
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
from .codec import decode_batch, decode_header, encode_batch, frame, read_frame

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

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(slots=True)
class _Counters:
    head_seq: int = 0  # every record with a smaller seq is popped or dropped
    dropped_batches: int = 0
    dropped_points: int = 0
    refused_batches: int = 0
    refused_points: int = 0


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

    def _load_state(self) -> _Counters:
        p = self.path / "state.json"
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return _Counters()
        except (OSError, ValueError) as exc:
            raise StoreError(f"spool {p}: unreadable state file: {exc}") from exc
        try:
            return _Counters(**{k: int(raw[k]) for k in asdict(_Counters())})
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"spool {p}: state file lacks {exc}") from exc

    def _save_state(self) -> None:
        write_atomic(self.path / "state.json", json.dumps(asdict(self._c)).encode())

    def _scan(self) -> None:
        """Index every live record; cut a torn or corrupt tail off its segment."""
        nos = sorted(int(p.name[: -len(_SEG_SUFFIX)]) for p in self.path.glob(f"*{_SEG_SUFFIX}")
                     if p.name[: -len(_SEG_SUFFIX)].isdigit())
        max_seq = -1
        for no in nos:
            seg = _Segment(no, self.path / f"{no:012d}{_SEG_SUFFIX}", 0)
            data = seg.path.read_bytes()
            pos = 0
            while pos < len(data):
                got = read_frame(data, pos)
                if isinstance(got, str):
                    self._cut(seg, pos, len(data), got, last=no == nos[-1])
                    break
                payload, end = got
                head = decode_header(payload)
                if head.seq <= max_seq:  # cannot happen unless the file was tampered with
                    self._cut(seg, pos, len(data), f"sequence {head.seq} after {max_seq}", last=False)
                    break
                max_seq = head.seq
                seg.last_seq = head.seq
                if head.seq >= self._c.head_seq:
                    self._add_entry(SpoolEntry(head.seq, head.points, end - pos, head.ts_min,
                                               head.ts_max, head.spooled_ns, no, pos))
                pos = end
            seg.size = pos
            self._segments[no] = seg
        self._next_seq = max(max_seq + 1, self._c.head_seq)
        if not self.readonly:
            self._remove_consumed_segments()
        if self._entries:
            log.info("spool %s: %d batches, %d points waiting from a previous run",
                     self.path, len(self._entries), self._points)

    def _cut(self, seg: _Segment, pos: int, size: int, why: str, last: bool) -> None:
        if self.readonly:
            return
        # a torn tail of the last segment is a crash during an append; anywhere else it is damage
        log.log(logging.WARNING if last else logging.ERROR,
                "spool %s: %s at byte %d; cutting %d bytes (%s)", seg.path, why, pos, size - pos,
                "an append a crash interrupted" if last else "damaged segment, records after it lost")
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
            )

    def peek(self, max_batches: int = 1, max_points: int | None = None) -> list[tuple[SpoolEntry, Batch]]:
        """The oldest batches in order, without removing them: at most ``max_batches``, and
        no more than ``max_points`` points (but always at least one batch if any)."""
        out: list[tuple[SpoolEntry, Batch]] = []
        with self._lock:
            total = 0
            for e in itertools.islice(self._entries, max_batches):
                if out and max_points is not None and total + e.points > max_points:
                    break
                out.append((e, self._read(e)))
                total += e.points
        return out

    def _read(self, e: SpoolEntry) -> Batch:
        fd = self._read_fds.get(e.segment)
        if fd is None:
            fd = self._read_fds[e.segment] = os.open(self._segments[e.segment].path, os.O_RDONLY)
        data = os.pread(fd, e.bytes, e.offset)
        got = read_frame(data, 0)
        if isinstance(got, str):
            raise StoreError(f"spool {self.path}: record {e.seq} unreadable: {got}")
        return decode_batch(got[0])[1]

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
            for fd in [*self._read_fds.values(), self._tail_fd, self._lock_fd]:
                if fd is not None:
                    os.close(fd)
            self._read_fds.clear()
            self._tail_fd = self._lock_fd = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
