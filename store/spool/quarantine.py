"""The quarantine: batches a sink refused for good (a 4xx other than 429), kept with the reason.

One file per batch, ``q-<id>.rec``: a framed record (store.spool.codec) whose payload is a
JSON description (status, reason, when, time range) followed by the batch. Files are written
to a temporary name, fsynced and renamed, so a crash never leaves half a quarantined batch.
Replay (``tierproof spool replay``) sends a batch again: success removes it, another refusal
keeps it with the new reason. Nothing leaves the quarantine except by a successful replay or
an explicit, counted drop (``tierproof spool drop``).

The gateway and the CLI may work on one quarantine at once; changes take ``.lock`` (flock)
for their duration. The quarantine is bounded by its own ``max_bytes``; a refused batch that
does not fit is dropped, counted and logged.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from config.errors import NotFoundError, StoreError
from config.store import SpoolSettings

from ..batch import Batch
from .codec import FRAME_V1, Damaged, decode_batch, encode_batch, frame_v1, read_frame
from .queue import fsync_dir, write_atomic

__all__ = ["Quarantine", "QuarantineEntry", "QuarantineStats", "open_quarantine"]

log = logging.getLogger("tierproof.store.quarantine")

_META_LEN = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    id: int
    points: int
    bytes: int
    ts_min: int
    ts_max: int
    status: int | None
    reason: str
    quarantined_ns: int
    attempts: int  # sends refused so far (1 = the original write)


@dataclass(slots=True)
class QuarantineStats:
    batches: int
    points: int
    bytes: int
    dropped_batches: int  # by `spool drop`, or refused batches that did not fit
    dropped_points: int
    replayed_batches: int  # sent successfully by a replay
    replayed_points: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(slots=True)
class _Counters:
    next_id: int = 1  # ids are never reused, so a logged id always means the same batch
    dropped_batches: int = 0
    dropped_points: int = 0
    replayed_batches: int = 0
    replayed_points: int = 0


class Quarantine:
    """Refused batches in directory ``path``, each kept with its status and reason."""

    def __init__(self, path: str | Path, max_bytes: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"quarantine {self.path}: cannot create: {exc.strerror}") from exc

    def _file(self, qid: int) -> Path:
        return self.path / f"q-{qid:09d}.rec"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _ids(self) -> list[int]:
        out = []
        for p in self.path.glob("q-*.rec"):
            stem = p.name[2:-4]
            if stem.isdigit():
                out.append(int(stem))
        return sorted(out)

    def _counters(self) -> _Counters:
        try:
            raw = json.loads((self.path / "state.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return _Counters()
        except (OSError, ValueError) as exc:
            raise StoreError(f"quarantine {self.path}/state.json unreadable: {exc}") from exc
        return _Counters(**{k: int(raw.get(k, 0)) for k in asdict(_Counters())})

    def _save_counters(self, c: _Counters) -> None:
        write_atomic(self.path / "state.json", json.dumps(asdict(c)).encode())

    # ------------------------------------------------------------------ reading

    def _read(self, qid: int) -> tuple[QuarantineEntry, Batch]:
        p = self._file(qid)
        try:
            data = p.read_bytes()
        except FileNotFoundError as exc:
            raise NotFoundError(f"no quarantined batch {qid} in {self.path}") from exc
        got = read_frame(data, 0)
        if isinstance(got, Damaged):
            raise StoreError(f"quarantine {p}: unreadable: {got.why}")
        payload = got.payload
        (mlen,) = _META_LEN.unpack_from(payload, 0)
        meta = json.loads(bytes(payload[_META_LEN.size : _META_LEN.size + mlen]))
        _, batch = decode_batch(payload[_META_LEN.size + mlen :])
        return self._entry(qid, len(data), meta), batch

    def _read_meta(self, qid: int) -> QuarantineEntry | None:
        # the description only (listing and stats need no batch); the checksum is checked on load
        p = self._file(qid)
        try:
            with open(p, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                head = f.read(FRAME_V1.size + _META_LEN.size)
                (mlen,) = _META_LEN.unpack_from(head, FRAME_V1.size)
                meta = json.loads(f.read(mlen))
        except FileNotFoundError:
            return None  # replayed or dropped by another process meanwhile
        except (OSError, ValueError, struct.error) as exc:
            raise StoreError(f"quarantine {p}: unreadable: {exc}") from exc
        return self._entry(qid, size, meta)

    @staticmethod
    def _entry(qid: int, size: int, meta: dict[str, Any]) -> QuarantineEntry:
        return QuarantineEntry(
            id=qid, points=meta["points"], bytes=size, ts_min=meta["ts_min"], ts_max=meta["ts_max"],
            status=meta["status"], reason=meta["reason"], quarantined_ns=meta["quarantined_ns"],
            attempts=meta["attempts"],
        )

    def entries(self) -> list[QuarantineEntry]:
        """Every quarantined batch's description, oldest first."""
        return [e for e in map(self._read_meta, self._ids()) if e is not None]

    def load(self, qid: int) -> tuple[QuarantineEntry, Batch]:
        return self._read(qid)

    def stats(self) -> QuarantineStats:
        ents = self.entries()
        c = self._counters()
        return QuarantineStats(
            batches=len(ents), points=sum(e.points for e in ents), bytes=sum(e.bytes for e in ents),
            dropped_batches=c.dropped_batches, dropped_points=c.dropped_points,
            replayed_batches=c.replayed_batches, replayed_points=c.replayed_points,
        )

    # ------------------------------------------------------------------ changes

    def _encode(self, qid: int, batch: Batch, status: int | None, reason: str, when_ns: int,
                attempts: int) -> bytes:
        n = len(batch)
        reason = reason if len(reason) <= 2000 else reason[:2000] + "..."
        meta = json.dumps({
            "points": n, "status": status, "reason": reason, "quarantined_ns": when_ns, "attempts": attempts,
            "ts_min": int(batch.ts_ns.min()) if n else 0, "ts_max": int(batch.ts_ns.max()) if n else 0,
        }).encode()
        # the v1 frame: one file per batch, whose payload starts with the description
        return frame_v1(_META_LEN.pack(len(meta)) + meta + encode_batch(batch, qid, when_ns))

    def add(self, batch: Batch, status: int | None, reason: str) -> int | None:
        """Keep ``batch`` with the sink's answer; return its id, or None when it did not fit
        (then it is dropped, counted and logged)."""
        with self._locked():
            ids = self._ids()
            c = self._counters()
            qid = max(c.next_id, ids[-1] + 1 if ids else 1)
            now = time.time_ns()
            rec = self._encode(qid, batch, status, reason, now, 1)
            used = sum(self._file(i).stat().st_size for i in ids)
            if used + len(rec) > self.max_bytes:
                c.dropped_batches += 1
                c.dropped_points += len(batch)
                self._save_counters(c)
                log.error("quarantine %s full (%d of %d bytes): dropped a refused batch of %d points "
                          "(status %s: %s); %d points dropped in all", self.path, used, self.max_bytes,
                          len(batch), status, reason, c.dropped_points)
                return None
            write_atomic(self._file(qid), rec)
            c.next_id = qid + 1
            self._save_counters(c)
        log.error("sink refused a batch of %d points (status %s: %s); quarantined as %d in %s",
                  len(batch), status, reason, qid, self.path)
        return qid

    def refused_again(self, qid: int, status: int | None, reason: str) -> None:
        """A replay was refused too: keep the batch, with the new answer."""
        with self._locked():
            entry, batch = self._read(qid)
            rec = self._encode(qid, batch, status, reason, entry.quarantined_ns, entry.attempts + 1)
            write_atomic(self._file(qid), rec)

    def replayed(self, qid: int) -> None:
        """The batch reached the sink: remove it."""
        with self._locked():
            entry, _ = self._read(qid)
            self._file(qid).unlink()
            fsync_dir(self.path)
            c = self._counters()
            c.replayed_batches += 1
            c.replayed_points += entry.points
            self._save_counters(c)
        log.info("quarantined batch %d (%d points) replayed to the sink and removed", qid, entry.points)

    def drop(self, qid: int) -> QuarantineEntry:
        """Delete a quarantined batch on purpose; counted and logged."""
        with self._locked():
            entry, _ = self._read(qid)
            self._file(qid).unlink()
            fsync_dir(self.path)
            c = self._counters()
            c.dropped_batches += 1
            c.dropped_points += entry.points
            self._save_counters(c)
        log.warning("dropped quarantined batch %d: %d points (status %s: %s)", qid, entry.points,
                    entry.status, entry.reason)
        return entry


def open_quarantine(settings: SpoolSettings) -> Quarantine:
    """The quarantine of a spool: ``<spool path>/quarantine``, bounded like the spool."""
    return Quarantine(Path(settings.path) / "quarantine", settings.max_bytes)
