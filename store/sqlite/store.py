"""The embedded store's :class:`SqliteStore` (the package docstring says how it works)."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NamedTuple

import numpy as np

from config.errors import StoreError
from config.times import iso

from ..base import Damage, Gap, Latest, RollupRow, SamplePage, StoreStats, TagRecord
from ..batch import I64, TS_UNKNOWN, Batch, Series, keep_last
from ..changes import EVERYTHING, Changes
from . import rollups as _rollups
from .checksum import chunk_fault
from .chunks import Fault, chunk_parts, chunk_parts_many, chunks_by_id, sound_windows, trim_chunks
from .runs import (
    IngestFault,
    Part,
    RowDamaged,
    Run,
    Sorted,
    batch_row,
    checked_row,
    merge_latest,
    merge_parts,
    merge_rows,
)
from .schema import (
    BLOBS_PER_CONNECTION,
    CHECK_COLS,
    INSERT_CHUNK,
    INSERT_INGEST,
    ROW_COLS,
    TAG,
    UPSERT_LATEST,
    BlobRow,
    Connection,
    check_schema,
    connect,
    enum_json,
    enum_load,
    init_schema,
)

__all__ = ["SqliteStore", "Verified"]

log = logging.getLogger("store.sqlite")

_NS_PER_DAY = 86_400 * 10**9
# SQLite allows 32766 bound parameters; stay far below for IN (...) lists.
_IN_CHUNK = 900
#: runs of one level merged into one run of the next level
_FANOUT = 8
#: average samples per tag that make flushing ingest into per-tag chunks worthwhile
_CHUNK_TARGET = 64
#: flush anyway beyond this many pending points (bounds the flush's memory and latency)
_MAX_PENDING_POINTS = 2_000_000
#: merge written batches anyway once they hold this many points
_MERGE_POINTS = _MAX_PENDING_POINTS // 2
#: decoded level-0 rows kept in memory, in points (~30 bytes each)
_CACHE_MAX_POINTS = 1_000_000


def _window_part(p: Part, start_ns: int, end_ns: int, most: int) -> Part:
    """The first ``most`` samples of ``p`` (sorted by ts, one per ts) with start_ns <= ts <
    end_ns, copied: a copy lets the blob the part viewed go. No later sample of ``p`` can be
    among the first ``most`` of a merge of ``p`` with other parts."""
    lo = int(np.searchsorted(p.ts, start_ns, "left"))
    hi = min(int(np.searchsorted(p.ts, end_ns, "left")), lo + most)

    def cut(a: Any) -> Any:
        return None if a is None else a[lo:hi].copy()

    return Part(cut(p.ts), cut(p.value), cut(p.quality), None, (), cut(p.server_ts),
                cut(p.gateway_ts))


class Verified(NamedTuple):
    """What ``SqliteStore.verify`` found: chunks checked, of which ``unverified`` have no
    checksums (written before schema version 5: only checked to decode), and every damaged
    chunk known."""

    chunks: int
    unverified: int
    damage: list[Damage]
    #: ingest rows (recent data not yet in chunks) checked, of which without checksums
    ingest_rows: int = 0
    ingest_unverified: int = 0


def _ordered_window(parts: Sequence[Part], start_ns: int, end_ns: int, prior: bool) -> Series | None:
    """What ``_series`` gives of ``parts`` (write order) when they follow one another in time
    (each one's last sample before the next one's first), else None: then their
    concatenation is already sorted, and only the samples in [start_ns, end_ns) (and the last
    before it) are copied out of them. Equal times inside a part keep the last written, as
    ``merge_parts`` keeps them."""
    cuts: list[tuple[int, int]] = []
    last = -1  # the part holding the last sample before start_ns
    prev_end = None
    for k, p in enumerate(parts):
        ts = p.ts
        if not len(ts):
            return None
        if prev_end is not None and prev_end >= ts[0]:
            return None
        prev_end = ts[-1]
        i, j = ts.searchsorted((start_ns, end_ns)).tolist()
        if i > 0:
            last = k
        cuts.append((i, j))
    if prior and last >= 0:
        i, j = cuts[last]
        cuts[last] = (i - 1, j)
    pick = [(p, i, j) for p, (i, j) in zip(parts, cuts, strict=True) if j > i]
    if not pick:
        return Series.empty()
    if len(pick) == 1:
        p, i, j = pick[0]
        t, v, q = p.ts[i:j].astype(np.int64), p.value[i:j].astype(np.float64), p.quality[i:j].astype(np.uint8)
    else:
        t = np.concatenate([p.ts[i:j] for p, i, j in pick]).astype(np.int64, copy=False)
        v = np.concatenate([p.value[i:j] for p, i, j in pick]).astype(np.float64, copy=False)
        q = np.concatenate([p.quality[i:j] for p, i, j in pick]).astype(np.uint8, copy=False)
    keep = keep_last(t)
    if keep is not None:
        t, v, q = t[keep], v[keep], q[keep]
    return Series(t, v, q)


def _ingest_key(seq: int, tag_id: int) -> int:
    """``damage.chunk_id`` of an ingest row's damage to one tag (-1: tags unknown): negative,
    so never a chunk's id, and unique per (row, tag)."""
    return -((seq << 32) | (tag_id + 1))


class SqliteStore:
    """The embedded, durable store (see the package docstring and ``store/sqlite/SCHEMA.md``).

    ``synchronous="normal"`` makes a returned ``write`` survive a process crash,
    ``"full"`` also a power loss (one fsync per write). ``retention_days`` None keeps
    everything. Every ``compact_every`` written batches are merged into one sorted run.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Literal["normal", "full"] = "normal",
        retention_days: float | None = None,
        compact_every: int = 64,
        readonly: bool = False,
    ) -> None:
        """``readonly``: a reader of a store another process (or object) writes, e.g. an
        assessment worker (``api.assetsplit``): every connection is ``query_only``, the file
        is neither created nor migrated (it must exist at this version's schema), ``close``
        neither compacts nor checkpoints, and a write is a StoreError."""
        if synchronous not in ("normal", "full"):
            raise ValueError(f"synchronous must be 'normal' or 'full', not {synchronous!r}")
        if compact_every < 1:
            raise ValueError(f"compact_every must be >= 1, not {compact_every}")
        if retention_days is not None and retention_days <= 0:
            raise ValueError(f"retention_days must be > 0 or None, not {retention_days}")
        self._path = Path(path)
        self._synchronous = synchronous
        self.retention_days = retention_days
        self.compact_every = compact_every
        self._wlock = threading.RLock()
        #: told after every commit that changes what a read returns (``store.changes``)
        self.changes = Changes()
        self._pool_lock = threading.Lock()
        self._pool: list[Connection] = []
        self._cache: OrderedDict[int, Run] = OrderedDict()
        self._cache_weight = 0
        self._cache_lock = threading.Lock()
        #: seqs of the ingest rows committed and not yet merged or flushed, as the writer
        #: knows them: only their runs are cached (a reader whose snapshot predates a merge
        #: still loads the merged rows; cached, they would stay until evicted by weight)
        self._live: set[int] = set()
        #: the reader connection of this thread's open ``snapshot()``, if any
        self._pinned = threading.local()
        #: the connection of ``data_version`` (opened on first use)
        self._probe: sqlite3.Cursor | None = None
        self._probe_lock = threading.Lock()
        self._closed = False
        self._batches = 0
        self._points = 0
        #: chunks known damaged, by chunk_id (the ``damage`` table, and what reads find)
        self._damage: dict[int, Damage] = {}
        #: seqs of the ingest rows known damaged (never read, merged or flushed)
        self._bad_seqs: set[int] = set()
        #: bumped after every commit that adds or changes a tag (``store.tag_index``): what
        #: this process registered; another process's registrations do not move it
        self.tags_version = 0
        #: nanoseconds spent in ``write`` (waiting for the writer lock and merging included):
        #: the roll-up maintainer rests longer while the writer is busy (``api.rollups``)
        self.write_ns = 0
        self.readonly = readonly
        with self._errors("open"):
            if readonly:
                if not self._path.is_file():
                    raise StoreError(f"{self._path}: no such store to open read-only")
                self._w = connect(self._path, self._synchronous, reader=True)
            else:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                self._w = connect(self._path, self._synchronous)
            try:
                if readonly:
                    check_schema(self._w, self._path)
                else:
                    init_schema(self._w, self._path)
                self._pending, self._pending_points = self._w.execute(
                    "SELECT count(*), coalesce(sum(n), 0) FROM ingest WHERE level = 0"
                ).fetchone()
                self._live = {int(q) for (q,) in self._w.execute("SELECT seq FROM ingest")}
                (last,) = self._w.execute("SELECT max(hour_ns) FROM rollups").fetchone()
                self._rollups = _rollups.RollupLog(
                    EVERYTHING if last is None else int(last) + _rollups.HOUR_NS)
                self._load_assets()
                self._load_damage()
            except BaseException:
                self._w.close()
                raise

    # ------------------------------------------------------------------ plumbing

    @property
    def path(self) -> Path:
        return self._path

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """The one place where sqlite3 (and file) errors become StoreError naming the file."""
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{self._path}: {action} failed: {exc}") from exc

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self._path}: store is closed")

    def _check_writable(self, action: str) -> None:
        self._check_open()
        if self.readonly:
            raise StoreError(f"{self._path}: {action}: the store is open read-only")

    @contextmanager
    def _write_txn(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction on the writer connection, under the writer lock."""
        with self._wlock, self._errors(action):
            self._check_writable(action)
            conn = self._w
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _snapshot(self, action: str) -> Iterator[sqlite3.Connection]:
        """A reader connection inside one read transaction (one consistent WAL snapshot):
        this thread's ``snapshot()`` when one is open, else a pooled connection for this read."""
        pinned: sqlite3.Connection | None = getattr(self._pinned, "conn", None)
        if pinned is not None:
            with self._errors(action):
                self._check_open()
                yield pinned
            return
        with self._reader(action) as conn:
            yield conn

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read of this thread inside the block sees the store as it was on entry.

        One read transaction on one reader connection, held until the block ends: WAL keeps
        that version of every page for it, so the writer (another connection) is never
        blocked, and what it commits meanwhile stays invisible here. Only the WAL checkpoint
        cannot move past the pinned version until the block ends (the WAL file grows by what
        is written meanwhile). Reads from other threads are not affected. Nested blocks share
        the outer one's snapshot."""
        if getattr(self._pinned, "conn", None) is not None:
            yield
            return
        with self._reader("snapshot") as conn:
            with self._errors("snapshot"):
                # BEGIN is deferred: the snapshot is taken at the first read, so read now
                conn.execute("SELECT count(*) FROM tags").fetchone()
            self._pinned.conn = conn
            try:
                yield
            finally:
                self._pinned.conn = None

    @contextmanager
    def _reader(self, action: str) -> Iterator[sqlite3.Connection]:
        """A pooled reader connection inside one read transaction."""
        with self._errors(action):
            with self._pool_lock:
                self._check_open()
                conn = self._pool.pop() if self._pool else None
            if conn is None:
                conn = connect(self._path, self._synchronous, reader=True)
            try:
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
            finally:
                with self._pool_lock:
                    # a connection that opened many blobs is retired (schema.Connection)
                    keep = not self._closed and conn.blobs_opened < BLOBS_PER_CONNECTION
                    if keep:
                        self._pool.append(conn)
                if not keep:
                    conn.close()

    def _run(self, conn: sqlite3.Connection, seq: int, level: int) -> Run | None:
        """The cached reader's view of ingest row ``seq`` (decoded and checked once per
        process); None when the row is damaged (then recorded, ``_found_rows``)."""
        with self._cache_lock:
            run = self._cache.get(seq)
            if run is not None:
                self._cache.move_to_end(seq)
                return run
        if seq in self._bad_seqs:
            return None
        try:
            run = Run.load(conn, seq, level)
        except RowDamaged as exc:
            self._found_rows([exc.fault], conn if conn is self._w else None)
            return None
        self._remember(run)
        return run

    def _remember(self, run: Run) -> None:
        with self._cache_lock:
            if run.seq in self._cache or run.seq not in self._live:
                return
            self._cache[run.seq] = run
            self._cache_weight += run.weight
            while self._cache_weight > _CACHE_MAX_POINTS and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._cache_weight -= old.weight

    def _forget(self, seqs: Sequence[int]) -> None:
        with self._cache_lock:
            self._live.difference_update(seqs)
            for seq in seqs:
                run = self._cache.pop(seq, None)
                if run is not None:
                    self._cache_weight -= run.weight

    # ------------------------------------------------------------------ tags

    def _load_assets(self) -> None:
        """tag_id -> asset and device -> assets, for dropping the roll-ups a change touches."""
        rows = self._w.execute("SELECT tag_id, asset, device FROM tags").fetchall()
        self._asset_of = {int(i): str(a) for i, a, _ in rows}
        self._device_assets: dict[str, set[str]] = {}
        for _, a, d in rows:
            self._device_assets.setdefault(str(d), set()).add(str(a))

    def _gap_since(self, device: str, asset: str | None, start_ns: int) -> dict[str | None, int]:
        assets = [asset] if asset is not None else sorted(self._device_assets.get(device, ()))
        return {a: int(start_ns) for a in assets}

    def register_tags(self, tags: Sequence[TagRecord]) -> dict[str, int]:
        """Insert or update tags by path; ``TagRecord.tag_id`` is ignored (the store assigns)."""
        rows = [
            (t.path, t.asset, t.role, t.device, t.protocol, t.unit, enum_json(t.enum))
            for t in tags
        ]
        with self._write_txn("register tags") as conn:
            changes_before = conn.total_changes
            # The WHERE skips rewriting unchanged rows (no needless WAL traffic at start-up).
            conn.executemany(
                "INSERT INTO tags (path, asset, role, device, protocol, unit, enum)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (path) DO UPDATE SET asset = excluded.asset, role = excluded.role,"
                " device = excluded.device, protocol = excluded.protocol, unit = excluded.unit,"
                " enum = excluded.enum"
                " WHERE (asset, role, device, protocol, unit, enum) IS NOT"
                " (excluded.asset, excluded.role, excluded.device, excluded.protocol,"
                " excluded.unit, excluded.enum)",
                rows,
            )
            ids = dict(conn.execute("SELECT path, tag_id FROM tags"))
            changed = conn.total_changes != changes_before
            if changed:
                self._rollups.drop(conn, {None: EVERYTHING})
                self._load_assets()
        if changed:  # a new tag, or a role or enum changed: any window's KPIs may differ
            with self._wlock:  # after the commit: a reader of the new number sees them
                self.tags_version += 1
            self.changes.note(EVERYTHING)
        return {t.path: int(ids[t.path]) for t in tags}

    def tags(self) -> list[TagRecord]:
        with self._snapshot("list tags") as conn:
            rows = conn.execute(
                "SELECT tag_id, path, asset, role, device, protocol, unit, enum FROM tags"
                " ORDER BY tag_id"
            ).fetchall()
        return [
            TagRecord(path=p, asset=a, role=r, device=d, protocol=pr, unit=u,
                      enum=enum_load(e), tag_id=int(i))
            for i, p, a, r, d, pr, u, e in rows
        ]

    # ------------------------------------------------------------------ writing

    def write(self, batch: Batch) -> None:
        """One INSERT + COMMIT; durable on return. Every ``compact_every`` writes it then
        merges (see the package docstring); that work never makes a durable write fail."""
        n = len(batch)
        if n == 0:
            return
        t0 = time.perf_counter_ns()
        try:
            self._write(batch, n)
        finally:
            self.write_ns += time.perf_counter_ns() - t0

    def _write(self, batch: Batch, n: int) -> None:
        row = batch_row(batch)
        with self._wlock:
            with self._errors("write batch"):
                self._check_writable("write batch")
                if int(batch.ts_ns.min()) >= self._rollups.end_ns:
                    # One statement in autocommit mode is one transaction: no BEGIN/COMMIT
                    # round trips (they cost as much as the INSERT for small batches).
                    seq = self._w.execute(INSERT_INGEST, row).lastrowid
                else:  # late data: the roll-ups it touches go in the same transaction
                    since = _rollups.asset_since(batch.tag_id, batch.ts_ns, self._asset_of)
                    with self._write_txn("write batch") as conn:
                        seq = conn.execute(INSERT_INGEST, row).lastrowid
                        self._rollups.drop(conn, since)
            assert seq is not None
            with self._cache_lock:  # committed: its run may be cached from now on
                self._live.add(seq)
            self.changes.note(int(batch.ts_ns.min()))
            self._batches += 1
            self._points += n
            self._pending += 1
            self._pending_points += n
            # Also by volume: 64 huge batches (a backfill) must not pile up in ingest.
            if self._pending >= self.compact_every or self._pending_points >= _MERGE_POINTS:
                # The batch is already durable: a failed merge must not make the caller
                # believe the write failed (its retry would be a needless re-send). It is
                # logged and tried again at the next write.
                try:
                    self._maintain()
                except StoreError:
                    log.exception("%s: compaction failed; retrying at the next write", self._path)

    def _maintain(self) -> None:
        """Merge the written batches into a run (cascading up the levels), or flush all of
        ingest into chunks when that makes dense chunks. One transaction."""
        forget: list[int] = []
        remember: list[tuple[int, Sorted]] = []
        with self._write_txn("compact") as conn:
            rows = conn.execute(
                "SELECT seq, level, n FROM ingest WHERE level >= 0 ORDER BY seq").fetchall()
            if not any(level == 0 for _, level, _ in rows):
                self._pending = self._pending_points = 0
                return
            points = sum(n for _, _, n in rows)
            # distinct tags: raw rows' tag blobs plus the runs' (cached) directories. Only an
            # estimate for choosing merge or flush: a damaged blob is left out here and found
            # by the check the merge or flush makes of every row.
            tag_arrays = [np.frombuffer(b, TAG) for (b,) in conn.execute(
                "SELECT tag_ids FROM ingest WHERE level = 0"
            ) if isinstance(b, bytes) and len(b) % TAG.itemsize == 0]
            for s, lv, _ in rows:
                run = self._run(conn, s, lv) if lv > 0 else None
                if run is not None:
                    tag_arrays.append(run.tags_u)
            tags = np.unique(np.concatenate(tag_arrays or [np.empty(0, TAG)]))
            if points >= _MAX_PENDING_POINTS or points >= _CHUNK_TARGET * len(tags):
                forget = self._flush(conn)
            else:
                level = 0
                while True:
                    seqs = [s for s, lv, _ in rows if lv == level]
                    if level > 0 and len(seqs) < _FANOUT:
                        break
                    got = self._merge_level(conn, level)
                    forget += seqs
                    if got is None:  # every row of the level was damaged
                        break
                    new_seq, merged = got
                    remember.append((new_seq, merged))
                    rows = [r for r in rows if r[1] != level] + [(new_seq, level + 1, len(merged))]
                    level += 1
        self._pending = self._pending_points = 0
        self._forget(forget)
        for seq, merged in remember:  # only now: a rolled-back seq could be handed out again
            if seq not in forget:
                with self._cache_lock:
                    self._live.add(seq)
                self._remember(Run.of(seq, merged, keep_samples=False))

    def _sound_rows(self, conn: sqlite3.Connection, where: str,
                    args: tuple[object, ...]) -> list[tuple[int, BlobRow]]:
        """(seq, row) of the ingest rows ``where`` selects that pass their check, in seq
        order; the others are recorded as damaged in the caller's transaction (and so taken
        out of ingest's levels: never merged into a run or flushed into a chunk)."""
        good: list[tuple[int, BlobRow]] = []
        faults: list[IngestFault] = []
        for r in conn.execute(
            f"SELECT seq, {CHECK_COLS}, {ROW_COLS} FROM ingest WHERE {where} ORDER BY seq", args
        ).fetchall():
            try:
                good.append((int(r[0]), checked_row(int(r[0]), r[1:])))
            except RowDamaged as exc:
                faults.append(exc.fault)
        if faults:
            # also for rows already known (a transaction that recorded them may have rolled
            # back): out of the levels, so the merge's DELETE of its level leaves them
            conn.executemany("UPDATE ingest SET level = -1 WHERE seq = ?",
                             [(f[0],) for f in faults])
            self._found_rows(faults, conn)
        return good

    def _merge_level(self, conn: sqlite3.Connection, level: int) -> tuple[int, Sorted] | None:
        """All ingest rows of ``level`` -> one run of ``level + 1`` (None: all were damaged).
        It gets the newest seq, which keeps write order: rows of lower levels were all merged
        just before (levels are merged bottom-up), so every row left is older than the new
        run's samples."""
        rows = [r for _, r in self._sound_rows(conn, "level = ?", (level,))]
        conn.execute("DELETE FROM ingest WHERE level = ?", (level,))
        if not rows:
            return None
        merged = merge_rows(rows)
        cur = conn.execute(INSERT_INGEST, merged.ingest_row(level + 1))
        assert cur.lastrowid is not None
        return int(cur.lastrowid), merged

    def _flush(self, conn: sqlite3.Connection) -> list[int]:
        """Move all of ingest into per-tag chunks (and ``latest``); return the seqs moved."""
        rows = self._sound_rows(conn, "level >= 0", ())
        if not rows:
            return []
        merged = merge_rows([r for _, r in rows])
        conn.executemany(INSERT_CHUNK, merged.chunk_rows())
        conn.executemany(UPSERT_LATEST, merged.latest_rows())
        seqs = [q for q, _ in rows]
        # damaged rows (level -1) stay, reported, until retention
        conn.execute("DELETE FROM ingest WHERE seq <= ? AND level >= 0", (seqs[-1],))
        return seqs

    def compact(self) -> int:
        """Move everything in ingest into per-tag chunks now; return the ingest rows moved."""
        with self._wlock:
            with self._write_txn("compact") as conn:
                seqs = self._flush(conn)
            self._pending = self._pending_points = 0
        self._forget(seqs)
        return len(seqs)

    # ------------------------------------------------------------------ reading

    def _collect(
        self, conn: sqlite3.Connection, tag_id: int, start_ns: int, end_ns: int,
        prior: bool, with_text: bool, with_times: bool = False,
        ingest_rows: list[tuple[int, int]] | None = None,
    ) -> tuple[Part, list[str], int, int]:
        """Merged samples of one tag that the window (and prior) can need, with the slice
        [lo, hi) of the result that the caller asked for. ``with_times``: also the server
        and gateway timestamps (None where no part has them). ``ingest_rows``: the ingest
        rows the window can need (``_ingest_rows``), when the caller read them already."""
        faults: list[Fault] = []
        parts = chunk_parts(conn, tag_id, start_ns, end_ns, prior, with_text, with_times,
                            skip=self._damage, faults=faults)
        if faults:
            self._found(faults)
        # Every ingest row is newer than every chunk (a flush moves all of them), and seq
        # order is write order among ingest rows.
        rows = self._ingest_rows(conn, start_ns, end_ns, prior) if ingest_rows is None else ingest_rows
        for seq, level in rows:
            run = self._run(conn, seq, level)
            p = None if run is None else run.part(conn, tag_id, with_text, with_times)
            if p is not None:
                parts.append(p)
        merged, strings = merge_parts(parts, with_text)
        lo = int(np.searchsorted(merged.ts, start_ns, "left"))
        hi = int(np.searchsorted(merged.ts, end_ns, "left"))
        if prior and lo > 0:
            lo -= 1
        return merged, strings, lo, hi

    @staticmethod
    def _ingest_rows(conn: sqlite3.Connection, start_ns: int, end_ns: int, prior: bool
                     ) -> list[tuple[int, int]]:
        """(seq, level) of the ingest rows a read of [start_ns, end_ns) can need (of any tag:
        each run holds many), in seq order."""
        if prior:
            return conn.execute(
                "SELECT seq, level FROM ingest WHERE level >= 0 AND t_min < ? ORDER BY seq",
                (end_ns,)).fetchall()
        return conn.execute(
            "SELECT seq, level FROM ingest WHERE level >= 0 AND t_max >= ? AND t_min < ?"
            " ORDER BY seq", (start_ns, end_ns),
        ).fetchall()

    def _series(
        self, conn: sqlite3.Connection, tag_id: int, start_ns: int, end_ns: int, prior: bool,
        ingest_rows: list[tuple[int, int]] | None = None,
    ) -> Series:
        m, _, lo, hi = self._collect(conn, tag_id, start_ns, end_ns, prior, with_text=False,
                                     ingest_rows=ingest_rows)
        # astype copies: callers get new, writable, native arrays (never views of blobs)
        return Series(
            m.ts[lo:hi].astype(np.int64),
            m.value[lo:hi].astype(np.float64),
            m.quality[lo:hi].astype(np.uint8),
        )

    def read(self, tag_id: int, start_ns: int, end_ns: int, prior: bool = True) -> Series:
        """Samples with start_ns <= ts < end_ns in time order (one per ts: the last written);
        with ``prior`` also the last sample before start_ns. Text samples read as NaN."""
        with self._snapshot("read") as conn:
            return self._series(conn, int(tag_id), int(start_ns), int(end_ns), prior)

    def read_many(
        self, tag_ids: Sequence[int], start_ns: int, end_ns: int, prior: bool = True
    ) -> dict[int, Series]:
        """``read`` of several tags from one snapshot (mutually consistent); the ingest rows
        the window can need are listed once for them all."""
        with self._snapshot("read") as conn:
            rows = self._ingest_rows(conn, int(start_ns), int(end_ns), prior)
            return {
                int(t): self._series(conn, int(t), int(start_ns), int(end_ns), prior, rows)
                for t in tag_ids
            }

    def read_ranges(self, wanted: Sequence[tuple[int, int, int]], prior: bool = True) -> list[Series]:
        """``read`` of each (tag_id, start_ns, end_ns), every tag over its own window, from one
        snapshot: what a KPI request's read-ahead (``api.readahead``) asks for its assets' raw
        parts at once. The same samples as ``read`` of each, for less: one statement per range
        (``chunks.chunk_parts_many``), the ingest rows listed once per window, and of chunks
        in time order (the usual case) only the samples the range needs are copied, not the
        whole chunks merged first -- where no ingest row can matter and every chunk is sound,
        straight from the rows' blobs, the tags of one window in one statement
        (``chunks.sound_windows``)."""
        keys = [(int(t), int(a), int(b)) for t, a, b in wanted]
        distinct = list(dict.fromkeys(keys))
        series: dict[tuple[int, int, int], Series] = {}
        with self._snapshot("read") as conn:
            ingest: dict[tuple[int, int], list[tuple[int, int]]] = {}
            rest = distinct
            if prior and not self._damage:
                # the usual case first (chunks.sound_windows, the tags of each window in one
                # statement): no ingest row the range can need, no chunk known damaged, every
                # chunk it loads sound and in time order
                windows: dict[tuple[int, int], list[int]] = {}
                for tag_id, start_ns, end_ns in distinct:
                    windows.setdefault((start_ns, end_ns), []).append(tag_id)
                rest = []
                # with prior, a window's ingest rows are those with t_min < its end: none
                # before the latest end, none for any window (one statement, not one each)
                latest = max((e for _, e in windows), default=0)
                none = not self._ingest_rows(conn, latest, latest, prior)
                for (start_ns, end_ns), tag_ids in windows.items():
                    listed = ingest[(start_ns, end_ns)] = (
                        [] if none else self._ingest_rows(conn, start_ns, end_ns, prior))
                    straight = ([None] * len(tag_ids) if listed
                                else sound_windows(conn, tag_ids, start_ns, end_ns))
                    for tag_id, arrays in zip(tag_ids, straight, strict=True):
                        key = (tag_id, start_ns, end_ns)
                        if arrays is None:
                            rest.append(key)
                            continue
                        t, v, q = arrays
                        keep = keep_last(t)
                        series[key] = Series(t, v, q) if keep is None else Series(t[keep], v[keep], q[keep])
            faults: list[Fault] = []
            found = chunk_parts_many(conn, rest, prior, skip=self._damage, faults=faults)
            if faults:
                self._found(faults)
            for (tag_id, start_ns, end_ns), parts in zip(rest, found, strict=True):
                key = (tag_id, start_ns, end_ns)
                if parts is None:  # a damaged prior chunk: read as read does
                    series[key] = self._series(conn, tag_id, start_ns, end_ns, prior)
                    continue
                rows = ingest.get((start_ns, end_ns))
                if rows is None:
                    rows = ingest[(start_ns, end_ns)] = self._ingest_rows(conn, start_ns, end_ns, prior)
                for seq, level in rows:  # as _collect: every ingest row is newer than every chunk
                    run = self._run(conn, seq, level)
                    p = None if run is None else run.part(conn, tag_id, False, False)
                    if p is not None:
                        parts.append(p)
                got = _ordered_window(parts, start_ns, end_ns, prior)
                if got is None:
                    m, _ = merge_parts(parts, False)
                    lo = int(np.searchsorted(m.ts, start_ns, "left"))
                    hi = int(np.searchsorted(m.ts, end_ns, "left"))
                    if prior and lo > 0:
                        lo -= 1
                    got = Series(m.ts[lo:hi].astype(np.int64), m.value[lo:hi].astype(np.float64),
                                 m.quality[lo:hi].astype(np.uint8))
                series[key] = got
        return [series[k] for k in keys]

    def read_text(self, tag_id: int, start_ns: int, end_ns: int) -> list[tuple[int, str, int]]:
        with self._snapshot("read texts") as conn:
            m, strings, lo, hi = self._collect(
                conn, int(tag_id), int(start_ns), int(end_ns), prior=False, with_text=True
            )
        if m.txt is None:
            return []
        txt = m.txt[lo:hi]
        idx = np.flatnonzero(txt >= 0)
        return [(int(m.ts[lo + i]), strings[txt[i]], int(m.quality[lo + i])) for i in idx]

    def read_timestamps(self, tag_id: int, start_ns: int, end_ns: int) -> tuple[I64, I64, I64]:
        """(ts, server_ts, gateway_ts) of the samples with start_ns <= ts < end_ns, the same
        samples as ``read(..., prior=False)``; TS_UNKNOWN where a sample lacks one."""
        with self._snapshot("read timestamps") as conn:
            m, _, lo, hi = self._collect(
                conn, int(tag_id), int(start_ns), int(end_ns), prior=False, with_text=False,
                with_times=True,
            )
        n = hi - lo

        def column(times: I64 | None) -> I64:
            if times is None:
                return np.full(n, TS_UNKNOWN, np.int64)
            return times[lo:hi].astype(np.int64)  # a copy, never a view of a blob

        return m.ts[lo:hi].astype(np.int64), column(m.server_ts), column(m.gateway_ts)

    def read_page(self, tag_id: int, start_ns: int, end_ns: int, limit: int) -> SamplePage:
        """The first ``limit`` samples of ``read(..., prior=False)`` with their server and
        gateway timestamps, from one snapshot. Only the chunks that can hold them are read:
        the tag's chunks in the window are listed by ``t_min`` (no blobs), then loaded in
        that order, a few at a time, until the merged samples before the next unloaded
        chunk's ``t_min`` (which no unloaded chunk can change) fill the page. Memory is that
        of the page plus a round of chunks and the (bounded) ingest rows, whatever the
        window holds. Each part keeps only its first ``limit + 1`` samples in the window: a
        later one cannot be among the first ``limit + 1`` of the merge (a part holds one
        sample per ts)."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, not {limit}")
        tag_id, start_ns, end_ns = int(tag_id), int(start_ns), int(end_ns)
        want = int(limit) + 1  # one more than the page: whether the window holds more
        with self._snapshot("read page") as conn:
            index = conn.execute(
                "SELECT chunk_id, t_min, n FROM chunks WHERE tag_id = ? AND t_max >= ?"
                " AND t_min < ? ORDER BY t_min, chunk_id", (tag_id, start_ns, end_ns),
            ).fetchall()
            ingest: list[Part] = []
            for seq, level in conn.execute(
                "SELECT seq, level FROM ingest WHERE level >= 0 AND t_max >= ? AND t_min < ?"
                " ORDER BY seq", (start_ns, end_ns),
            ).fetchall():
                run = self._run(conn, seq, level)
                p = None if run is None else run.part(conn, tag_id, False, with_times=True)
                if p is not None:
                    ingest.append(_window_part(p, start_ns, end_ns, want))
            loaded: dict[int, Part] = {}
            i = 0
            while True:
                ids: list[int] = []
                budget = 0
                while i < len(index) and budget < want:
                    ids.append(int(index[i][0]))
                    budget += int(index[i][2])
                    i += 1
                faults: list[Fault] = []
                for cid, part in chunks_by_id(conn, ids, True, self._damage, faults).items():
                    loaded[cid] = _window_part(part, start_ns, end_ns, want)
                # ingest rows are newer than every chunk; chunk_id order is write order
                if faults:
                    self._found(faults)
                merged, _ = merge_parts([loaded[c] for c in sorted(loaded)] + ingest, False)
                final = end_ns if i == len(index) else min(end_ns, int(index[i][1]))
                ready = int(np.searchsorted(merged.ts, final, "left"))
                if ready >= want or i == len(index):
                    break
        n = min(ready, int(limit))

        def column(times: I64 | None) -> I64:
            if times is None:
                return np.full(n, TS_UNKNOWN, np.int64)
            return times[:n].astype(np.int64)

        return SamplePage(merged.ts[:n].astype(np.int64), merged.value[:n].astype(np.float64),
                          merged.quality[:n].astype(np.uint8), column(merged.server_ts),
                          column(merged.gateway_ts), ready > limit)

    def latest(self, tag_ids: Sequence[int]) -> dict[int, Latest]:
        """Newest sample of each tag (greatest ts; at equal ts the last written).

        The ``latest`` table is maintained by flushes (one upsert per tag per flush, not per
        write, which costs more than the write itself for small batches, see SCHEMA.md);
        what is still in ingest is merged in from the cached per-row summaries.
        """
        wanted = sorted({int(t) for t in tag_ids})
        if not wanted:
            return {}
        out: dict[int, Latest] = {}
        with self._snapshot("read latest") as conn:
            for i in range(0, len(wanted), _IN_CHUNK):
                part = wanted[i:i + _IN_CHUNK]
                marks = ",".join("?" * len(part))
                for tid, ts, v, q, text in conn.execute(
                    "SELECT tag_id, ts, value, quality, text FROM latest"
                    f" WHERE tag_id IN ({marks})",
                    part,
                ):
                    out[int(tid)] = Latest(int(ts), float("nan") if v is None else float(v),
                                           int(q), text)
            rows = conn.execute(
                "SELECT seq, level FROM ingest WHERE level >= 0 ORDER BY seq").fetchall()
            runs = [r for r in (self._run(conn, s, lv) for s, lv in rows) if r is not None]
        return merge_latest(out, runs, wanted)

    def latest_in_memory(self) -> bool:
        """Whether :meth:`latest` would decode no ingest row: every row committed and not yet
        merged or flushed has its summary cached. Then a ``latest`` of a few tags is a point
        query and some numpy (tens of us): the API reads it on its event loop
        (``api.gateway.Gateway.latest_on_loop``); otherwise in a worker thread."""
        with self._cache_lock:
            return self._live <= self._cache.keys()

    def last_ts(self, tag_ids: Sequence[int]) -> int | None:
        got = self.latest(tag_ids)
        return max((v.ts_ns for v in got.values()), default=None)

    # ------------------------------------------------------------------ gaps

    def open_gap(self, device: str, start_ns: int, reason: str, asset: str | None = None) -> int:
        with self._write_txn("open gap") as conn:
            cur = conn.execute(
                "INSERT INTO gaps (device, start_ns, end_ns, reason, asset) VALUES (?, ?, NULL, ?, ?)",
                (device, int(start_ns), reason, asset),
            )
            self._rollups.drop(conn, self._gap_since(device, asset, start_ns))
            assert cur.lastrowid is not None
            gap_id = int(cur.lastrowid)
        self.changes.note(int(start_ns))
        return gap_id

    def close_gap(self, gap_id: int, end_ns: int) -> None:
        with self._write_txn("close gap") as conn:
            row = conn.execute(
                "SELECT start_ns, device, asset FROM gaps WHERE gap_id = ?", (gap_id,)).fetchone()
            if row is None:
                raise StoreError(f"{self._path}: no gap {gap_id} to close")
            if int(end_ns) < int(row[0]):
                raise StoreError(
                    f"{self._path}: gap {gap_id} cannot end at {end_ns}, before its start {row[0]}"
                )
            conn.execute("UPDATE gaps SET end_ns = ? WHERE gap_id = ?", (int(end_ns), gap_id))
            self._rollups.drop(conn, self._gap_since(row[1], row[2], row[0]))
        self.changes.note(int(row[0]))

    def mark_alive(self, device: str, ts_ns: int) -> None:
        with self._write_txn("record heartbeat") as conn:
            conn.execute(
                "INSERT INTO heartbeats (device, ts_ns) VALUES (?, ?)"
                " ON CONFLICT (device) DO UPDATE SET ts_ns = max(ts_ns, excluded.ts_ns)",
                (device, int(ts_ns)),
            )

    def last_alive(self, device: str) -> int | None:
        with self._snapshot("read heartbeat") as conn:
            row = conn.execute("SELECT ts_ns FROM heartbeats WHERE device = ?", (device,)).fetchone()
        return None if row is None else int(row[0])

    def gaps(self, device: str | None, start_ns: int, end_ns: int) -> list[Gap]:
        """Gaps overlapping [start_ns, end_ns): start < end_ns and (open or end > start_ns)."""
        sql = (
            "SELECT gap_id, device, start_ns, end_ns, reason, asset FROM gaps"
            " WHERE start_ns < ? AND (end_ns IS NULL OR end_ns > ?)"
        )
        args: list[object] = [int(end_ns), int(start_ns)]
        if device is not None:
            sql += " AND device = ?"
            args.append(device)
        with self._snapshot("read gaps") as conn:
            rows = conn.execute(sql + " ORDER BY start_ns, gap_id", args).fetchall()
        out = [Gap(int(g), d, int(s), None if e is None else int(e), r, a) for g, d, s, e, r, a in rows]
        # damaged stored data: unknown time of its tag's asset, like a gap of collection
        damaged = [d.as_gap() for d in list(self._damage.values())
                   if (device is None or d.device == device or d.tag_id < 0)
                   and d.start_ns < int(end_ns) and d.end_ns > int(start_ns)]
        if damaged:
            out = sorted(out + damaged, key=lambda g: (g.start_ns, g.gap_id))
        return out

    # ------------------------------------------------------------------ damage

    def _load_damage(self) -> None:
        rows = self._w.execute(
            "SELECT d.chunk_id, d.tag_id, coalesce(t.path, ''), coalesce(t.device, ''),"
            " coalesce(t.asset, ''), d.t_min, d.t_max, d.n, d.reason, d.found_ns, d.seq"
            " FROM damage d LEFT JOIN tags t ON t.tag_id = d.tag_id"
        ).fetchall()
        self._damage = {
            int(c): Damage(int(c), int(t), p, dv, a, int(t0), int(t1) + 1, int(n), r, int(f),
                           None if q is None else int(q))
            for c, t, p, dv, a, t0, t1, n, r, f, q in rows
        }
        self._bad_seqs = {d.seq for d in self._damage.values() if d.seq is not None}

    def _found(self, faults: Sequence[Fault]) -> None:
        """Record chunks a read found damaged: in memory at once (later reads skip them and
        ``gaps`` reports them), in the ``damage`` table, and as a change of their asset's data
        (roll-ups resting on them are dropped). Called from readers; one small transaction on
        the writer. A failure to persist is logged: the damage is found again by the next
        read after a restart (or by ``verify``)."""
        new = [f for f in faults if f[0] not in self._damage]
        if not new:
            return
        now = time.time_ns()
        found: list[Damage] = []
        try:
            with self._write_txn("record damage") as conn:
                for cid, tag_id, t0, t1, n, why in new:
                    row = conn.execute("SELECT path, device, asset FROM tags WHERE tag_id = ?",
                                       (tag_id,)).fetchone() or ("", "", "")
                    found.append(Damage(cid, tag_id, row[0], row[1], row[2], t0, t1 + 1, n, why, now))
                    conn.execute(
                        "INSERT OR IGNORE INTO damage (chunk_id, tag_id, t_min, t_max, n, reason,"
                        " found_ns) VALUES (?, ?, ?, ?, ?, ?, ?)", (cid, tag_id, t0, t1, n, why, now))
                    if row[2]:
                        self._rollups.drop(conn, {row[2]: t0})
        except StoreError:
            log.exception("%s: could not record damaged chunks %s", self._path, [f[0] for f in new])
            found = [Damage(c, t, "", "", "", t0, t1 + 1, n, why, now) for c, t, t0, t1, n, why in new]
        for d in found:
            self._damage[d.chunk_id] = d
            log.error("%s: stored data damaged: tag %s (id %d), %d samples from %s to %s"
                      " (chunk %d: %s); read as a gap", self._path.name, d.path or "?", d.tag_id,
                      d.samples, iso(d.start_ns), iso(d.end_ns - 1), d.chunk_id, d.reason)
        self.changes.note(min(d.start_ns for d in found))

    def _found_rows(self, faults: Sequence[IngestFault],
                    conn: sqlite3.Connection | None = None) -> None:
        """Record ingest rows found damaged, as ``_found`` does chunks: one ``damage`` row per
        tag of the row (over the row's time range; tag -1 when its tags cannot be trusted), the
        row moved to level -1 (kept, never read, merged or flushed), the roll-ups of its
        assets dropped. ``conn``: the writer inside the caller's transaction (a merge or
        flush), else a transaction of its own."""
        new = [f for f in faults if f[0] not in self._bad_seqs]
        if not new:
            return
        now = time.time_ns()
        found: list[Damage] = []

        def record(c: sqlite3.Connection) -> None:
            for seq, tags, t0, t1, n, why in new:
                c.execute("UPDATE ingest SET level = -1 WHERE seq = ?", (seq,))
                for tag_id, count in tags if tags is not None else [(-1, n)]:
                    row = c.execute("SELECT path, device, asset FROM tags WHERE tag_id = ?",
                                    (tag_id,)).fetchone() or ("", "", "")
                    key = _ingest_key(seq, tag_id)
                    found.append(Damage(key, tag_id, row[0], row[1], row[2], t0, t1 + 1, count,
                                        f"ingest row {seq}: {why}", now, seq))
                    c.execute(
                        "INSERT OR IGNORE INTO damage (chunk_id, tag_id, t_min, t_max, n, reason,"
                        " found_ns, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (key, tag_id, t0, t1, count, f"ingest row {seq}: {why}", now, seq))
                    # tags unknown: any asset's roll-ups may rest on the row
                    self._rollups.drop(c, {row[2] or None: t0})

        try:
            if conn is not None:
                record(conn)
            else:
                with self._write_txn("record damage") as c:
                    record(c)
        except StoreError:
            log.exception("%s: could not record damaged ingest rows %s", self._path,
                          [f[0] for f in new])
            found = [Damage(_ingest_key(q, -1), -1, "", "", "", t0, t1 + 1, n,
                            f"ingest row {q}: {why}", now, q) for q, _, t0, t1, n, why in new]
        # the damage first, then the seqs that make readers skip the row: a reader in another
        # thread that skips it (``_run``) must find its gap too (``gaps``). The other order
        # let a /kpis whose read-ahead skipped the row while the roll-up maintainer was
        # recording it compute the hour with no gap (coverage 1.0 instead of ~0.75) and list
        # the gap in its evidence all the same (test_ingest_damage_api, ~1 run in 12 at -n 2)
        for d in found:
            self._damage[d.chunk_id] = d
            log.error("%s: stored data damaged: tag %s (id %d), %d samples from %s to %s"
                      " (%s); read as a gap", self._path.name, d.path or "?", d.tag_id,
                      d.samples, iso(d.start_ns), iso(d.end_ns - 1), d.reason)
        self._bad_seqs.update(f[0] for f in new)
        self._forget([f[0] for f in new])
        if found:
            self.changes.note(min(d.start_ns for d in found))

    def damage(self) -> list[Damage]:
        """The damaged chunks known (recorded, or found by reads and ``verify`` since), in
        time order: their samples are left out of every read and count as gaps."""
        return sorted(self._damage.values(), key=lambda d: (d.start_ns, d.chunk_id))

    def verify(self, batch: int = 2000) -> Verified:
        """Check every chunk (checksums and decoding), ``batch`` rows at a time from one
        snapshot (memory: one batch of rows); record what is damaged; return the counts and
        all damage known afterwards."""
        checked = unverified = 0
        with self._snapshot("verify") as conn:
            last = -1
            while True:
                rows = conn.execute(
                    "SELECT chunk_id, tag_id, t_min, t_max, n, ts, value, quality, crc,"
                    " texts, server_ts, gateway_ts, crc_extra FROM chunks WHERE chunk_id > ?"
                    " ORDER BY chunk_id LIMIT ?", (last, int(batch)),
                ).fetchall()
                if not rows:
                    break
                last = int(rows[-1][0])
                checked += len(rows)
                unverified += sum(1 for r in rows if r[8] is None)
                faults: list[Fault] = []
                for r in rows:
                    why = chunk_fault(r[:9], r[9:13])
                    if why is not None and int(r[0]) not in self._damage:
                        faults.append((int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), why))
                if faults:
                    self._found(faults)
            rows_checked = rows_unverified = 0
            last = -1
            while True:
                rows = conn.execute(
                    f"SELECT seq, {CHECK_COLS}, {ROW_COLS} FROM ingest WHERE seq > ?"
                    " AND level >= 0 ORDER BY seq LIMIT ?", (last, max(1, int(batch) // 100)),
                ).fetchall()
                if not rows:
                    break
                last = int(rows[-1][0])
                rows_checked += len(rows)
                rows_unverified += sum(1 for r in rows if r[6] is None)
                bad: list[IngestFault] = []
                for r in rows:
                    try:
                        checked_row(int(r[0]), r[1:])
                    except RowDamaged as exc:
                        bad.append(exc.fault)
                if bad:
                    self._found_rows(bad)
        return Verified(checked, unverified, self.damage(), rows_checked, rows_unverified)

    # ------------------------------------------------------------------ roll-ups

    def rollup_claim(self, end_ns: int) -> int:
        """Before computing roll-up rows of hours ending up to ``end_ns`` (and before opening
        the snapshot they are computed from): the token to hand to :meth:`put_rollups`."""
        with self._wlock:
            return self._rollups.claim(int(end_ns))

    def put_rollups(self, rows: Sequence[RollupRow], token: int) -> int:
        """Insert or replace rows computed from a snapshot opened after ``rollup_claim``
        returned ``token``; rows that a change committed since then touched are left out
        (``store/sqlite/rollups.py``). Returns the rows written. Not a change of the data:
        the change feed is not told."""
        with self._write_txn("write roll-ups") as conn:
            ok = self._rollups.admit(rows, token)
            _rollups.put(conn, ok)
        return len(ok)

    def first_ts(self) -> int | None:
        """The time of the store's first sample (any tag), None when it holds none: the
        least ``t_min`` of the chunks and ingest rows (exact: retention trims ``t_min`` with
        the samples), two index or table scans instead of a bisection of reads."""
        with self._snapshot("read first sample") as conn:
            (t,) = conn.execute(
                "SELECT min(m) FROM (SELECT min(t_min) AS m FROM chunks"
                " UNION ALL SELECT min(t_min) FROM ingest WHERE level >= 0)").fetchone()
        return None if t is None else int(t)

    def rollups_keyed(self, keys: Mapping[str, str], start_ns: int, end_ns: int,
                      min_reach_ns: int | None = None
                      ) -> dict[str, list[tuple[int, int, bytes, str | None]]]:
        """The read path's rows (``api.rollups.keyed_rows``): asset -> (hour_ns, reach_ns,
        data, extra) of the rows of key ``keys[asset]`` whose hour starts in [start_ns,
        end_ns) and whose ``reach_ns >= min_reach_ns``, by hour, from one snapshot."""
        with self._snapshot("read roll-ups") as conn:
            return _rollups.get_keyed(conn, dict(keys), start_ns, end_ns, min_reach_ns)

    def rollups_dense(self, keys: Mapping[str, str], start_ns: int, end_ns: int,
                      min_reach_ns: int | None = None
                      ) -> dict[str, list[tuple[int, int, bytes, str | None]]]:
        """``rollups_keyed`` of keys whose rows are most rows of the span (hour rows; the
        day-level rows lie between them): the same rows, read by the primary key."""
        with self._snapshot("read roll-ups") as conn:
            return _rollups.get_keyed(conn, dict(keys), start_ns, end_ns, min_reach_ns, dense=True)

    def drop_rollups(self, start_ns: int, end_ns: int) -> int:
        """Delete the roll-up rows whose hour starts in [start_ns, end_ns) (``tierproof rollups
        rebuild``); returns how many. Not a change of the data: the change feed is not told."""
        with self._write_txn("drop roll-ups") as conn:
            cur = conn.execute("DELETE FROM rollups WHERE hour_ns >= ? AND hour_ns < ?",
                               (int(start_ns), int(end_ns)))
            return int(cur.rowcount)

    def rollups(self, assets: Sequence[str], start_ns: int, end_ns: int, *, key: str | None = None,
                min_reach_ns: int | None = None) -> list[RollupRow]:
        """Rows of ``assets`` whose hour starts in [start_ns, end_ns), by asset and hour (only
        those of ``key`` and with ``reach_ns >= min_reach_ns``, when given)."""
        with self._snapshot("read roll-ups") as conn:
            return _rollups.get(conn, assets, start_ns, end_ns, key, min_reach_ns)

    # ------------------------------------------------------------------ retention, stats

    def apply_retention(self, now_ns: int) -> int:
        """Delete samples with ts < now - retention_days, and gaps that ended before that;
        return the number of samples deleted. Chunks straddling the horizon are trimmed in
        place (UPDATE keeps chunk_id, hence their write order)."""
        if self.retention_days is None:
            return 0
        horizon = int(now_ns) - int(self.retention_days * _NS_PER_DAY)
        with self._wlock:
            self.compact()  # so that ingest holds nothing older than the horizon
            with self._write_txn("apply retention") as conn:
                deleted = 0
                # per tag, so that the (tag_id, t_max) index does the finding
                for (tag_id,) in conn.execute("SELECT DISTINCT tag_id FROM chunks").fetchall():
                    (gone,) = conn.execute(
                        "SELECT coalesce(sum(n), 0) FROM chunks WHERE tag_id = ? AND t_max < ?",
                        (tag_id, horizon),
                    ).fetchone()
                    if gone:
                        conn.execute(
                            "DELETE FROM chunks WHERE tag_id = ? AND t_max < ?", (tag_id, horizon)
                        )
                        deleted += int(gone)
                    deleted += trim_chunks(conn, tag_id, horizon)
                gaps = conn.execute(
                    "DELETE FROM gaps WHERE end_ns IS NOT NULL AND end_ns < ?", (horizon,)
                ).rowcount
                # damaged chunks wholly before the horizon were deleted above
                conn.execute("DELETE FROM damage WHERE t_max < ?", (horizon,))
                # damaged ingest rows (level -1) wholly before the horizon, likewise
                conn.execute("DELETE FROM ingest WHERE level < 0 AND t_max < ?", (horizon,))
                if deleted or gaps:  # rows resting on data before the horizon
                    conn.execute("DELETE FROM rollups WHERE reach_ns < ?", (horizon,))
                    self._rollups.forget_tokens()
        for cid in [c for c, d in list(self._damage.items()) if d.end_ns <= horizon]:
            self._damage.pop(cid, None)
        self._bad_seqs = {d.seq for d in self._damage.values() if d.seq is not None}
        if deleted or gaps:  # first_sample and prior samples of any window may be gone
            self.changes.note(EVERYTHING)
        return deleted

    def stats(self) -> StoreStats:
        """Counters since this store was opened; ``extra`` describes the file."""
        with self._snapshot("stats") as conn:
            (ingest_rows,) = conn.execute("SELECT count(*) FROM ingest").fetchone()
            (chunks,) = conn.execute("SELECT count(*) FROM chunks").fetchone()
            (tags,) = conn.execute("SELECT count(*) FROM tags").fetchone()
        db_bytes = 0
        for suffix in ("", "-wal"):
            f = Path(f"{self._path}{suffix}")
            if f.exists():
                db_bytes += f.stat().st_size
        # read without the writer lock: stats must not wait behind a long flush
        return StoreStats(
            batches_written=self._batches,
            points_written=self._points,
            extra={"ingest_rows": int(ingest_rows), "chunks": int(chunks), "tags": int(tags),
                   "db_bytes": db_bytes,
                   "damaged_chunks": sum(1 for d in self._damage.values() if d.seq is None),
                   "damaged_ingest_rows": len(self._bad_seqs),
                   "path": str(self._path)},
        )

    def data_version(self) -> int:
        """A number that moves whenever any connection to the file commits, in this process
        or another (``PRAGMA data_version`` on a connection of its own that never writes).

        ``changes`` reports only this object's own commits; a reader of a file another process
        writes (``tierproof serve`` beside a gateway) asks this before trusting anything it
        derived from the file earlier (``api.flight``). It moves on this object's commits too,
        and may move on a commit that changed nothing (a checkpoint restarting the WAL), never
        the other way round. Cheap (a few microseconds: the WAL index in shared memory)."""
        with self._probe_lock:  # asked before every KPI cache hit: no context manager more
            try:
                if self._probe is None:
                    self._check_open()
                    self._probe = connect(self._path, self._synchronous, reader=True).cursor()
                self._probe.execute("PRAGMA data_version")
                return int(self._probe.fetchone()[0])
            except sqlite3.Error as exc:
                raise StoreError(f"{self._path}: data_version failed: {exc}") from exc

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Flush ingest into chunks, checkpoint the WAL, close every connection. Idempotent."""
        with self._wlock:
            if self._closed:
                return
            try:
                if not self.readonly:  # a reader leaves both to the writer
                    self.compact()
                    with self._errors("checkpoint"):
                        self._w.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                with self._pool_lock:
                    self._closed = True
                    idle, self._pool = self._pool, []
                for conn in idle:
                    conn.close()
                with self._probe_lock:
                    if self._probe is not None:
                        self._probe.connection.close()
                        self._probe = None
                self._w.close()
                with self._cache_lock:
                    self._cache.clear()
                    self._cache_weight = 0

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteStore({str(self._path)!r})"
