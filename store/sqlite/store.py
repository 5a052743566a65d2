"""The embedded store: SQLite (stdlib ``sqlite3``), one bulk write per batch.

A write is one INSERT of the batch's four arrays as BLOBs into ``ingest`` plus one COMMIT,
so its cost hardly depends on the number of points. The batch's server and gateway
timestamps, when it has any, are two more BLOBs (NULL otherwise) that every step below
carries along with the samples. Later, in one transaction each:

- every ``compact_every`` written batches are merged into one *run*: an ``ingest`` row of
  level 1 whose samples are sorted by (tag, ts) and free of duplicates;
- runs of one level are merged into one run of the next level once there are ``_FANOUT`` of
  them (size tiers, so a few large runs rather than many small ones);
- everything in ``ingest`` is *flushed* into per-tag ``chunks`` once that gives chunks of
  ``_CHUNK_TARGET`` samples per tag on average (or ``_MAX_PENDING_POINTS`` are waiting),
  and on ``compact()``, ``apply_retention()`` and ``close()``.

Why the runs: a chunk row costs one random page write in the per-tag index. Flushing every
64 batches of a 50-tag device each, with 25,000 tags, made one chunk *per sample*
(measured: 72k points/s and falling, below a naive row-per-point table). The runs are
written sequentially and keep per-tag chunks dense whatever the batch size.

Concurrency: one writer connection behind a lock (writes, compaction, tags, gaps,
retention); readers take connections from a small pool and read inside one transaction,
so each read sees one WAL snapshot and never a half-compacted state.
``store/sqlite/SCHEMA.md`` documents the file format for auditors.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

import numpy as np
import numpy.typing as npt

from config.errors import StoreError

from ..base import Gap, Latest, StoreStats, TagRecord
from ..batch import F64, I32, I64, TS_UNKNOWN, U8, Batch, Series, concat_times

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

log = logging.getLogger("store.sqlite")

#: version of the file layout in ``meta.schema_version``; bump on any incompatible change
#: (2: ``server_ts`` and ``gateway_ts`` in ingest and chunks; version 1 files are migrated)
SCHEMA_VERSION = 3

_NS_PER_DAY = 86_400 * 10**9
# Blob encodings are fixed little-endian so that a file moves between machines unchanged;
# on little-endian hosts (x86, ARM) these are the native dtypes and cost no conversion.
_TAG = np.dtype("<i4")
_TS = np.dtype("<i8")
_VAL = np.dtype("<f8")
_Q = np.dtype("u1")
_BUSY_TIMEOUT_S = 10.0
# SQLite allows 32766 bound parameters; stay far below for IN (...) lists.
_IN_CHUNK = 900
#: runs of one level merged into one run of the next level
_FANOUT = 8
#: average samples per tag that make flushing ingest into per-tag chunks worthwhile
_CHUNK_TARGET = 64
#: flush anyway beyond this many pending points (bounds the flush's memory and latency)
_MAX_PENDING_POINTS = 2_000_000
_WAL_CHECKPOINT_PAGES = 10_000
_WAL_SIZE_LIMIT = 64 * 2**20
#: merge written batches anyway once they hold this many points
_MERGE_POINTS = _MAX_PENDING_POINTS // 2
#: decoded level-0 rows kept in memory, in points (~30 bytes each)
_CACHE_MAX_POINTS = 1_000_000

_SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE tags (
    tag_id   INTEGER PRIMARY KEY,
    path     TEXT NOT NULL UNIQUE,
    asset    TEXT NOT NULL,
    role     TEXT NOT NULL,
    device   TEXT NOT NULL,
    protocol TEXT NOT NULL,
    unit     TEXT NOT NULL DEFAULT '',
    enum     TEXT
);
CREATE TABLE ingest (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    level   INTEGER NOT NULL,
    n       INTEGER NOT NULL,
    t_min   INTEGER NOT NULL,
    t_max   INTEGER NOT NULL,
    tag_ids BLOB NOT NULL,
    ts      BLOB NOT NULL,
    value   BLOB NOT NULL,
    quality BLOB NOT NULL,
    texts   TEXT,
    server_ts  BLOB,
    gateway_ts BLOB
);
CREATE TABLE chunks (
    chunk_id INTEGER PRIMARY KEY,
    tag_id   INTEGER NOT NULL,
    t_min    INTEGER NOT NULL,
    t_max    INTEGER NOT NULL,
    n        INTEGER NOT NULL,
    ts       BLOB NOT NULL,
    value    BLOB NOT NULL,
    quality  BLOB NOT NULL,
    texts    TEXT,
    server_ts  BLOB,
    gateway_ts BLOB
);
CREATE INDEX chunks_by_tag ON chunks (tag_id, t_max, t_min);
CREATE TABLE latest (
    tag_id  INTEGER PRIMARY KEY,
    ts      INTEGER NOT NULL,
    value   REAL,
    quality INTEGER NOT NULL,
    text    TEXT
);
CREATE TABLE gaps (
    gap_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    device   TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns   INTEGER,
    reason   TEXT NOT NULL DEFAULT '',
    asset    TEXT
);
CREATE INDEX gaps_by_device ON gaps (device, start_ns);
CREATE INDEX gaps_by_end ON gaps (end_ns);
CREATE TABLE heartbeats (
    device TEXT PRIMARY KEY,
    ts_ns  INTEGER NOT NULL
);
"""

_INSERT_CHUNK = (
    "INSERT INTO chunks (tag_id, t_min, t_max, n, ts, value, quality, texts, server_ts, gateway_ts)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_INGEST = (
    "INSERT INTO ingest"
    " (level, n, t_min, t_max, tag_ids, ts, value, quality, texts, server_ts, gateway_ts)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: schema version -> the statements that take a file from it to the next version
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # the optional timestamp columns (NULL in every existing row)
    1: (
        "ALTER TABLE ingest ADD COLUMN server_ts BLOB",
        "ALTER TABLE ingest ADD COLUMN gateway_ts BLOB",
        "ALTER TABLE chunks ADD COLUMN server_ts BLOB",
        "ALTER TABLE chunks ADD COLUMN gateway_ts BLOB",
    ),
    # gaps of one asset of a device (NULL: the whole device, as every existing gap)
    2: ("ALTER TABLE gaps ADD COLUMN asset TEXT",),
}
#: the ingest columns a merge reads, in BlobRow order
_ROW_COLS = "tag_ids, ts, value, quality, texts, server_ts, gateway_ts"
# >=: at equal ts the flush being written now holds the later write.
_UPSERT_LATEST = (
    "INSERT INTO latest (tag_id, ts, value, quality, text) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (tag_id) DO UPDATE SET ts = excluded.ts, value = excluded.value,"
    " quality = excluded.quality, text = excluded.text WHERE excluded.ts >= latest.ts"
)

# tag_ids, ts, value, quality, texts, server_ts, gateway_ts (see _ROW_COLS)
BlobRow = tuple[bytes, bytes, bytes, bytes, str | None, bytes | None, bytes | None]


# --------------------------------------------------------------------------- array helpers


def _blob(arr: npt.NDArray[np.generic], dtype: np.dtype[np.generic]) -> bytes:
    return arr.astype(dtype, copy=False).tobytes()


def _known(times: I64 | None) -> bool:
    """Whether an optional timestamp column holds any known time (else it is stored NULL)."""
    return times is not None and bool((times != TS_UNKNOWN).any())


def _times_blob(times: I64 | None) -> bytes | None:
    """The BLOB of an optional timestamp column: NULL when no sample has that time, so that
    batches and tags without it cost nothing."""
    return _blob(times, _TS) if times is not None and _known(times) else None


def _texts_json(text: npt.NDArray[np.object_] | None) -> str | None:
    """JSON ``[[index, text], ...]`` of the non-None entries, or None when there are none."""
    if text is None:
        return None
    # A Python loop, but only over batches that carry texts (string tags are rare).
    pairs = [[i, str(t)] for i, t in enumerate(text.tolist()) if t is not None]
    return json.dumps(pairs, ensure_ascii=False) if pairs else None


def _texts_index(texts_json: str | None, n: int) -> tuple[I32 | None, list[str]]:
    """Inverse of the JSON above: per-sample index into a list of strings (-1: none)."""
    if not texts_json:
        return None, []
    pairs = json.loads(texts_json)
    txt = np.full(n, -1, dtype=np.int32)
    txt[np.array([p[0] for p in pairs], dtype=np.intp)] = np.arange(len(pairs), dtype=np.int32)
    return txt, [str(p[1]) for p in pairs]


def _texts_subset(txt: I32 | None, strings: Sequence[str], lo: int, hi: int) -> str | None:
    """JSON of the texts of samples [lo, hi), indices relative to lo."""
    if txt is None:
        return None
    seg = txt[lo:hi]
    idx = np.flatnonzero(seg >= 0)
    if len(idx) == 0:
        return None
    return json.dumps([[int(i), strings[seg[i]]] for i in idx], ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class _Sorted:
    """Samples sorted by (tag, ts), one per (tag, ts): the last written.

    Tag ``tags_u[k]`` occupies ``lo[k]:hi[k]``; ``txt`` holds per sample an index into
    ``strings`` or -1 (None: no texts at all). ``server_ts``/``gateway_ts``: None, or per
    sample the time or TS_UNKNOWN.
    """

    tag: I32
    ts: I64
    value: F64
    quality: U8
    txt: I32 | None
    strings: list[str]
    tags_u: I32
    lo: I64
    hi: I64
    server_ts: I64 | None = None
    gateway_ts: I64 | None = None

    @classmethod
    def of(
        cls, tag: I32, ts: I64, value: F64, quality: U8, txt: I32 | None, strings: list[str],
        server_ts: I64 | None = None, gateway_ts: I64 | None = None,
    ) -> _Sorted:
        """From arrays already sorted by (tag, ts) without duplicates."""
        lo = np.concatenate(([0], np.flatnonzero(np.diff(tag)) + 1)).astype(np.int64)
        hi = np.append(lo[1:], len(tag)).astype(np.int64)
        if len(tag) == 0:
            lo = hi = np.empty(0, np.int64)
        return cls(tag, ts, value, quality, txt, strings, tag[lo], lo, hi, server_ts, gateway_ts)

    def __len__(self) -> int:
        return len(self.ts)

    def chunk_rows(self) -> list[tuple[object, ...]]:
        """One ``chunks`` row per tag. Per-tag work is list building; per-point work is numpy."""
        # One bytes object per array, sliced per tag through memoryviews: no per-tag copies.
        ts_b = memoryview(_blob(self.ts, _TS))
        v_b = memoryview(_blob(self.value, _VAL))
        q_b = memoryview(_blob(self.quality, _Q))
        w_ts, w_v = _TS.itemsize, _VAL.itemsize
        texts: list[str | None] = [None] * len(self.lo)
        if self.txt is not None:
            for k in np.flatnonzero(np.maximum.reduceat(self.txt, self.lo) >= 0).tolist():
                texts[k] = _texts_subset(self.txt, self.strings, int(self.lo[k]), int(self.hi[k]))
        srv, gw = self._times_slices(self.server_ts), self._times_slices(self.gateway_ts)
        return [
            (t, t0, t1, j - i, ts_b[i * w_ts:j * w_ts], v_b[i * w_v:j * w_v], q_b[i:j], tx, s, g)
            for t, t0, t1, i, j, tx, s, g in zip(
                self.tags_u.tolist(), self.ts[self.lo].tolist(), self.ts[self.hi - 1].tolist(),
                self.lo.tolist(), self.hi.tolist(), texts, srv, gw, strict=True,
            )
        ]

    def _times_slices(self, times: I64 | None) -> list[memoryview | None]:
        """Per tag, its slice of an optional timestamp column, or None (NULL) where the tag
        has no such time at all: a flush mixing devices adds nothing to the others' chunks."""
        if times is None or not len(self.lo):
            return [None] * len(self.lo)
        has = np.logical_or.reduceat(times != TS_UNKNOWN, self.lo).tolist()
        b = memoryview(_blob(times, _TS))
        w = _TS.itemsize
        return [b[i * w:j * w] if h else None
                for i, j, h in zip(self.lo.tolist(), self.hi.tolist(), has, strict=True)]

    def latest_rows(self) -> list[tuple[object, ...]]:
        last = self.hi - 1
        values: list[float | None] = self.value[last].tolist()
        if np.isnan(self.value[last]).any():  # SQLite stores NaN as NULL; say so explicitly
            values = [None if v != v else v for v in values]
        texts: list[str | None] = [None] * len(last)
        if self.txt is not None:
            texts = [self.strings[j] if j >= 0 else None for j in self.txt[last].tolist()]
        return list(zip(self.tags_u.tolist(), self.ts[last].tolist(), values,
                        self.quality[last].tolist(), texts, strict=True))

    def ingest_row(self, level: int) -> tuple[object, ...]:
        texts = None
        if self.txt is not None:
            texts = _texts_subset(self.txt, self.strings, 0, len(self.txt))
        return (
            level, len(self), int(self.ts.min()), int(self.ts.max()), _blob(self.tag, _TAG),
            _blob(self.ts, _TS), _blob(self.value, _VAL), _blob(self.quality, _Q), texts,
            _times_blob(self.server_ts), _times_blob(self.gateway_ts),
        )


def _merge_rows(rows: Sequence[BlobRow]) -> _Sorted:
    """Samples of ingest rows given in write order, stable-sorted by (tag, ts); of equal
    (tag, ts) the last written wins (a re-sent batch does not count twice)."""
    tag = np.concatenate([np.frombuffer(r[0], _TAG) for r in rows])
    ts = np.concatenate([np.frombuffer(r[1], _TS) for r in rows])
    value = np.concatenate([np.frombuffer(r[2], _VAL) for r in rows])
    quality = np.concatenate([np.frombuffer(r[3], _Q) for r in rows])
    txt: I32 | None = None
    strings: list[str] = []
    if any(r[4] for r in rows):
        pieces = []
        for r in rows:
            n_r = len(r[1]) // _TS.itemsize
            t_r, s_r = _texts_index(r[4], n_r)
            if t_r is None:
                pieces.append(np.full(n_r, -1, dtype=np.int32))
            else:  # re-base this row's indices onto the merged string list
                pieces.append(np.where(t_r >= 0, t_r + len(strings), -1).astype(np.int32))
                strings.extend(s_r)
        txt = np.concatenate(pieces)
    srv = gw = None
    if any(r[5] is not None or r[6] is not None for r in rows):
        lengths = [len(r[1]) // _TS.itemsize for r in rows]
        srv = concat_times([None if r[5] is None else np.frombuffer(r[5], _TS) for r in rows],
                            lengths)
        gw = concat_times([None if r[6] is None else np.frombuffer(r[6], _TS) for r in rows],
                           lengths)
    order = np.lexsort((ts, tag))  # stable: equal (tag, ts) stay in write order
    tag, ts, value, quality = tag[order], ts[order], value[order], quality[order]
    if txt is not None:
        txt = txt[order]
    srv = None if srv is None else srv[order]
    gw = None if gw is None else gw[order]
    if len(ts) > 1:
        dup = (tag[1:] == tag[:-1]) & (ts[1:] == ts[:-1])
        if dup.any():
            keep = np.append(~dup, True)
            tag, ts, value, quality = tag[keep], ts[keep], value[keep], quality[keep]
            txt = None if txt is None else txt[keep]
            srv = None if srv is None else srv[keep]
            gw = None if gw is None else gw[keep]
    return _Sorted.of(tag, ts, value, quality, txt, strings, srv, gw)


@dataclass(frozen=True, slots=True)
class _Part:
    """Samples of one tag from one source (a chunk or an ingest row), sorted by ts."""

    ts: I64
    value: F64
    quality: U8
    txt: I32 | None = None
    strings: Sequence[str] = ()
    server_ts: I64 | None = None
    gateway_ts: I64 | None = None


@dataclass(frozen=True, slots=True)
class _Run:
    """What readers need of one ``ingest`` row, cached by seq (rows never change and seq is
    never reused, AUTOINCREMENT): its tag directory, each tag's last sample (for
    ``latest``), and for level 0 (unsorted on disk) the sorted samples themselves. Level >= 1
    rows are sorted on disk, so a tag's slice is read straight from the blobs."""

    seq: int
    n: int
    tags_u: I32
    lo: I64
    hi: I64
    last_ts: I64
    last_value: F64
    last_quality: U8
    last_text: list[str | None] | None
    samples: _Sorted | None
    #: whether the row's server_ts / gateway_ts columns are not NULL
    has_server: bool = False
    has_gateway: bool = False

    @classmethod
    def of(cls, seq: int, s: _Sorted, keep_samples: bool,
           has_times: tuple[bool, bool] | None = None) -> _Run:
        """``has_times``: (has_server, has_gateway) of the row on disk when ``s`` was read
        without those columns; by default what ``s`` holds (stored as NULL when unknown)."""
        last = s.hi - 1
        last_text = None
        if s.txt is not None:
            last_text = [s.strings[j] if j >= 0 else None for j in s.txt[last].tolist()]
        if has_times is None:
            has_times = (_known(s.server_ts), _known(s.gateway_ts))
        return cls(seq, len(s), s.tags_u, s.lo, s.hi, s.ts[last], s.value[last],
                   s.quality[last], last_text, s if keep_samples else None, *has_times)

    @property
    def weight(self) -> int:
        """Cache cost: points held."""
        return self.n if self.samples is not None else len(self.tags_u)

    def part(
        self, conn: sqlite3.Connection, tag_id: int, with_text: bool, with_times: bool = False
    ) -> _Part | None:
        k = int(np.searchsorted(self.tags_u, tag_id))
        if k == len(self.tags_u) or self.tags_u[k] != tag_id:
            return None
        lo, hi = int(self.lo[k]), int(self.hi[k])
        txt: I32 | None = None
        srv: I64 | None = None
        gw: I64 | None = None
        s = self.samples
        if s is not None:
            if with_text and s.txt is not None:
                txt = s.txt[lo:hi]
            if with_times:
                srv = None if s.server_ts is None else s.server_ts[lo:hi]
                gw = None if s.gateway_ts is None else s.gateway_ts[lo:hi]
            return _Part(s.ts[lo:hi], s.value[lo:hi], s.quality[lo:hi], txt, s.strings, srv, gw)

        def read(column: str, width: int) -> bytes:
            with conn.blobopen("ingest", column, self.seq, readonly=True) as blob:
                blob.seek(lo * width)
                return blob.read((hi - lo) * width)

        if with_times:  # blobopen cannot open a NULL: only the columns the row has
            srv = np.frombuffer(read("server_ts", _TS.itemsize), _TS) if self.has_server else None
            gw = np.frombuffer(read("gateway_ts", _TS.itemsize), _TS) if self.has_gateway else None

        strings: list[str] = []
        if with_text:
            (texts,) = conn.execute(
                "SELECT texts FROM ingest WHERE seq = ?", (self.seq,)
            ).fetchone()
            all_txt, strings = _texts_index(texts, self.n)
            txt = None if all_txt is None else all_txt[lo:hi]
        return _Part(
            np.frombuffer(read("ts", _TS.itemsize), _TS),
            np.frombuffer(read("value", _VAL.itemsize), _VAL),
            np.frombuffer(read("quality", _Q.itemsize), _Q),
            txt,
            strings,
            srv,
            gw,
        )


def _positions(sorted_tags: I32, want: I32) -> npt.NDArray[np.intp]:
    """Positions in ``sorted_tags`` (distinct, ascending) of those ``want`` tags (distinct,
    ascending) that it holds. Bisection: far cheaper than np.isin for a few tags."""
    k = np.searchsorted(sorted_tags, want)
    inside = k < len(sorted_tags)
    k = k[inside]
    return k[sorted_tags[k] == want[inside]]


def _keep_last(ts: I64) -> npt.NDArray[np.bool_] | None:
    """Mask keeping the last of each run of equal ts (ts sorted), or None if all distinct."""
    if len(ts) < 2:
        return None
    keep = np.empty(len(ts), dtype=bool)
    np.not_equal(ts[1:], ts[:-1], out=keep[:-1])
    keep[-1] = True
    return None if keep.all() else keep


def _merge_parts(parts: list[_Part], with_text: bool) -> tuple[_Part, list[str]]:
    """Concatenate parts given in write order, sort by ts (stable), keep the last write per ts."""
    if not parts:
        empty = Series.empty()
        return _Part(empty.ts_ns, empty.value, empty.quality), []
    ts = np.concatenate([p.ts for p in parts])
    value = np.concatenate([p.value for p in parts])
    quality = np.concatenate([p.quality for p in parts])
    txt: I32 | None = None
    strings: list[str] = []
    if with_text and any(p.txt is not None for p in parts):
        pieces = []
        for p in parts:
            if p.txt is None:
                pieces.append(np.full(len(p.ts), -1, dtype=np.int32))
            else:
                pieces.append(np.where(p.txt >= 0, p.txt + len(strings), -1).astype(np.int32))
                strings.extend(p.strings)
        txt = np.concatenate(pieces)
    # parts carry these only when read for them (read_timestamps)
    lengths = [len(p.ts) for p in parts]
    srv = concat_times([p.server_ts for p in parts], lengths)
    gw = concat_times([p.gateway_ts for p in parts], lengths)
    # Sources are usually already in time order (a tag's chunks rarely overlap): check
    # before paying for a sort.
    if len(ts) > 1 and not bool(np.all(ts[1:] >= ts[:-1])):
        order = np.argsort(ts, kind="stable")
        ts, value, quality = ts[order], value[order], quality[order]
        txt = None if txt is None else txt[order]
        srv = None if srv is None else srv[order]
        gw = None if gw is None else gw[order]
    keep = _keep_last(ts)
    if keep is not None:
        ts, value, quality = ts[keep], value[keep], quality[keep]
        txt = None if txt is None else txt[keep]
        srv = None if srv is None else srv[keep]
        gw = None if gw is None else gw[keep]
    return _Part(ts, value, quality, txt, (), srv, gw), strings


def _enum_json(enum: dict[int, str] | None) -> str | None:
    if enum is None:
        return None
    return json.dumps({str(k): enum[k] for k in sorted(enum)}, ensure_ascii=False)


def _enum_load(text: str | None) -> dict[int, str] | None:
    if text is None:
        return None
    return {int(k): str(v) for k, v in json.loads(text).items()}


# --------------------------------------------------------------------------- the store


class SqliteStore:
    """The embedded, durable store (see the module docstring and ``store/sqlite/SCHEMA.md``).

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
    ) -> None:
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
        self._pool_lock = threading.Lock()
        self._pool: list[sqlite3.Connection] = []
        self._cache: OrderedDict[int, _Run] = OrderedDict()
        self._cache_weight = 0
        self._cache_lock = threading.Lock()
        self._closed = False
        self._batches = 0
        self._points = 0
        with self._errors("open"):
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._w = self._connect()
            try:
                self._init_schema()
                self._pending, self._pending_points = self._w.execute(
                    "SELECT count(*), coalesce(sum(n), 0) FROM ingest WHERE level = 0"
                ).fetchone()
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

    def _connect(self, reader: bool = False) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a write is exactly one
        # transaction and a read is exactly one snapshot.
        conn = sqlite3.connect(
            self._path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        if reader:
            conn.execute("PRAGMA query_only = ON")
        else:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                conn.close()
                raise StoreError(f"{self._path}: cannot use WAL journal mode (got {mode!r})")
            conn.execute(f"PRAGMA synchronous = {self._synchronous.upper()}")
            # Checkpoint every ~40 MB of WAL instead of 4 MB: ingest pages are freed and
            # reused within minutes, so a page rewritten several times is copied into the
            # database once (measured: 10k-point batches 3.4M -> 6M points/s). The limit
            # truncates the WAL file back after a checkpoint so it does not keep its peak.
            conn.execute(f"PRAGMA wal_autocheckpoint = {_WAL_CHECKPOINT_PAGES}")
            conn.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT}")
        return conn

    def _init_schema(self) -> None:
        conn = self._w
        conn.execute("BEGIN IMMEDIATE")
        try:
            names = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            if "meta" not in names:
                if names - {"sqlite_sequence"}:
                    raise StoreError(
                        f"{self._path}: not a tierproof store (has tables {sorted(names)}, no meta)"
                    )
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?), ('created_by', ?)",
                    (str(SCHEMA_VERSION), "tierproof store.sqlite"),
                )
            else:
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                version = int(row[0]) if row else 0
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"{self._path}: store schema version {version} is newer than this"
                        f" tierproof's ({SCHEMA_VERSION}); upgrade tierproof to open it"
                    )
                if version in _MIGRATIONS:
                    # in this transaction: a failed migration leaves the file as it was
                    old = version
                    while version in _MIGRATIONS:
                        for stmt in _MIGRATIONS[version]:
                            conn.execute(stmt)
                        version += 1
                    conn.execute(
                        "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),)
                    )
                    log.info("%s: store schema migrated from version %d to %d", self._path, old, version)
                if version != SCHEMA_VERSION:
                    raise StoreError(
                        f"{self._path}: unknown store schema version {version}"
                        f" (this tierproof reads {SCHEMA_VERSION})"
                    )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self._path}: store is closed")

    @contextmanager
    def _write_txn(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction on the writer connection, under the writer lock."""
        with self._wlock, self._errors(action):
            self._check_open()
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
        """A reader connection inside one read transaction (one consistent WAL snapshot)."""
        with self._errors(action):
            with self._pool_lock:
                self._check_open()
                conn = self._pool.pop() if self._pool else None
            if conn is None:
                conn = self._connect(reader=True)
            try:
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
            finally:
                with self._pool_lock:
                    if self._closed:
                        conn.close()
                    else:
                        self._pool.append(conn)

    def _run(self, conn: sqlite3.Connection, seq: int, level: int) -> _Run:
        """The cached reader's view of ingest row ``seq`` (decoded once per process)."""
        with self._cache_lock:
            run = self._cache.get(seq)
            if run is not None:
                self._cache.move_to_end(seq)
                return run
        if level == 0:
            row = conn.execute(f"SELECT {_ROW_COLS} FROM ingest WHERE seq = ?", (seq,)).fetchone()
            run = _Run.of(seq, _merge_rows([row]), keep_samples=True)
        else:  # already sorted and de-duplicated on disk
            # readers fetch their slice of the optional timestamps by blobopen: only
            # whether the row has them is needed here
            row = conn.execute(
                "SELECT tag_ids, ts, value, quality, texts, server_ts IS NOT NULL,"
                " gateway_ts IS NOT NULL FROM ingest WHERE seq = ?", (seq,)
            ).fetchone()
            tag = np.frombuffer(row[0], _TAG)
            txt, strings = _texts_index(row[4], len(tag))
            s = _Sorted.of(tag, np.frombuffer(row[1], _TS), np.frombuffer(row[2], _VAL),
                           np.frombuffer(row[3], _Q), txt, strings)
            run = _Run.of(seq, s, keep_samples=False, has_times=(bool(row[5]), bool(row[6])))
        self._remember(run)
        return run

    def _remember(self, run: _Run) -> None:
        with self._cache_lock:
            if run.seq in self._cache:
                return
            self._cache[run.seq] = run
            self._cache_weight += run.weight
            while self._cache_weight > _CACHE_MAX_POINTS and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._cache_weight -= old.weight

    def _forget(self, seqs: Sequence[int]) -> None:
        with self._cache_lock:
            for seq in seqs:
                run = self._cache.pop(seq, None)
                if run is not None:
                    self._cache_weight -= run.weight

    # ------------------------------------------------------------------ tags

    def register_tags(self, tags: Sequence[TagRecord]) -> dict[str, int]:
        """Insert or update tags by path; ``TagRecord.tag_id`` is ignored (the store assigns)."""
        rows = [
            (t.path, t.asset, t.role, t.device, t.protocol, t.unit, _enum_json(t.enum))
            for t in tags
        ]
        with self._write_txn("register tags") as conn:
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
        return {t.path: int(ids[t.path]) for t in tags}

    def tags(self) -> list[TagRecord]:
        with self._snapshot("list tags") as conn:
            rows = conn.execute(
                "SELECT tag_id, path, asset, role, device, protocol, unit, enum FROM tags"
                " ORDER BY tag_id"
            ).fetchall()
        return [
            TagRecord(path=p, asset=a, role=r, device=d, protocol=pr, unit=u,
                      enum=_enum_load(e), tag_id=int(i))
            for i, p, a, r, d, pr, u, e in rows
        ]

    # ------------------------------------------------------------------ writing

    def write(self, batch: Batch) -> None:
        """One INSERT + COMMIT; durable on return. Every ``compact_every`` writes it then
        merges (see the module docstring); that work never makes a durable write fail."""
        n = len(batch)
        if n == 0:
            return
        row = (
            0,
            n,
            int(batch.ts_ns.min()),
            int(batch.ts_ns.max()),
            _blob(batch.tag_id, _TAG),
            _blob(batch.ts_ns, _TS),
            _blob(batch.value, _VAL),
            _blob(batch.quality, _Q),
            _texts_json(batch.text),
            _times_blob(batch.server_ts_ns),
            _times_blob(batch.gateway_ts_ns),
        )
        with self._wlock:
            with self._errors("write batch"):
                self._check_open()
                # One statement in autocommit mode is one transaction: no BEGIN/COMMIT
                # round trips (they cost as much as the INSERT for small batches).
                self._w.execute(_INSERT_INGEST, row)
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
        remember: list[tuple[int, _Sorted]] = []
        with self._write_txn("compact") as conn:
            rows = conn.execute("SELECT seq, level, n FROM ingest ORDER BY seq").fetchall()
            if not any(level == 0 for _, level, _ in rows):
                self._pending = self._pending_points = 0
                return
            points = sum(n for _, _, n in rows)
            # distinct tags: raw rows' tag blobs plus the runs' (cached) directories
            tag_arrays = [np.frombuffer(b, _TAG) for (b,) in conn.execute(
                "SELECT tag_ids FROM ingest WHERE level = 0"
            )]
            tag_arrays += [self._run(conn, s, lv).tags_u for s, lv, _ in rows if lv > 0]
            tags = np.unique(np.concatenate(tag_arrays))
            if points >= _MAX_PENDING_POINTS or points >= _CHUNK_TARGET * len(tags):
                forget = self._flush(conn)
            else:
                level = 0
                while True:
                    seqs = [s for s, lv, _ in rows if lv == level]
                    if level > 0 and len(seqs) < _FANOUT:
                        break
                    new_seq, merged = self._merge_level(conn, level)
                    forget += seqs
                    remember.append((new_seq, merged))
                    rows = [r for r in rows if r[1] != level] + [(new_seq, level + 1, len(merged))]
                    level += 1
        self._pending = self._pending_points = 0
        self._forget(forget)
        for seq, merged in remember:  # only now: a rolled-back seq could be handed out again
            if seq not in forget:
                self._remember(_Run.of(seq, merged, keep_samples=False))

    def _merge_level(self, conn: sqlite3.Connection, level: int) -> tuple[int, _Sorted]:
        """All ingest rows of ``level`` -> one run of ``level + 1``. It gets the newest seq,
        which keeps write order: rows of lower levels were all merged just before (levels
        are merged bottom-up), so every row left is older than the new run's samples."""
        rows = conn.execute(
            f"SELECT {_ROW_COLS} FROM ingest WHERE level = ? ORDER BY seq", (level,)
        ).fetchall()
        merged = _merge_rows(rows)
        conn.execute("DELETE FROM ingest WHERE level = ?", (level,))
        cur = conn.execute(_INSERT_INGEST, merged.ingest_row(level + 1))
        assert cur.lastrowid is not None
        return int(cur.lastrowid), merged

    def _flush(self, conn: sqlite3.Connection) -> list[int]:
        """Move all of ingest into per-tag chunks (and ``latest``); return the seqs moved."""
        rows = conn.execute(f"SELECT seq, {_ROW_COLS} FROM ingest ORDER BY seq").fetchall()
        if not rows:
            return []
        merged = _merge_rows([r[1:] for r in rows])
        conn.executemany(_INSERT_CHUNK, merged.chunk_rows())
        conn.executemany(_UPSERT_LATEST, merged.latest_rows())
        seqs = [int(r[0]) for r in rows]
        conn.execute("DELETE FROM ingest WHERE seq <= ?", (seqs[-1],))
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
    ) -> tuple[_Part, list[str], int, int]:
        """Merged samples of one tag that the window (and prior) can need, with the slice
        [lo, hi) of the result that the caller asked for. ``with_times``: also the server
        and gateway timestamps (None where no part has them)."""
        cols = ("chunk_id, n, ts, value, quality" + (", texts" if with_text else "")
                + (", server_ts, gateway_ts" if with_times else ""))
        k_times = 6 if with_text else 5  # column index of server_ts when read
        chunk_rows = conn.execute(
            f"SELECT {cols} FROM chunks WHERE tag_id = ? AND t_max >= ? AND t_min < ?",
            (tag_id, start_ns, end_ns),
        ).fetchall()
        if prior:
            # The true last sample before start is in a chunk overlapping start (loaded
            # above), in the chunk(s) with the greatest t_max < start, or in ingest: two
            # index lookups, whatever the length of the history.
            (p_max,) = conn.execute(
                "SELECT max(t_max) FROM chunks WHERE tag_id = ? AND t_max < ?", (tag_id, start_ns)
            ).fetchone()
            if p_max is not None:
                chunk_rows += conn.execute(
                    f"SELECT {cols} FROM chunks WHERE tag_id = ? AND t_max = ?", (tag_id, p_max)
                ).fetchall()
        chunk_rows.sort(key=lambda r: r[0])  # chunk_id order is write order
        parts: list[_Part] = []
        for r in chunk_rows:
            txt, strings = _texts_index(r[5], r[1]) if with_text else (None, [])
            srv = gw = None
            if with_times:
                srv, gw = (None if b is None else np.frombuffer(b, _TS)
                           for b in r[k_times:k_times + 2])
            parts.append(_Part(
                np.frombuffer(r[2], _TS), np.frombuffer(r[3], _VAL), np.frombuffer(r[4], _Q),
                txt, strings, srv, gw,
            ))
        # Every ingest row is newer than every chunk (a flush moves all of them), and seq
        # order is write order among ingest rows.
        if prior:
            rows = conn.execute(
                "SELECT seq, level FROM ingest WHERE t_min < ? ORDER BY seq", (end_ns,)
            ).fetchall()
        else:
            rows = conn.execute(
                "SELECT seq, level FROM ingest WHERE t_max >= ? AND t_min < ? ORDER BY seq",
                (start_ns, end_ns),
            ).fetchall()
        for seq, level in rows:
            p = self._run(conn, seq, level).part(conn, tag_id, with_text, with_times)
            if p is not None:
                parts.append(p)
        merged, strings = _merge_parts(parts, with_text)
        lo = int(np.searchsorted(merged.ts, start_ns, "left"))
        hi = int(np.searchsorted(merged.ts, end_ns, "left"))
        if prior and lo > 0:
            lo -= 1
        return merged, strings, lo, hi

    def _series(
        self, conn: sqlite3.Connection, tag_id: int, start_ns: int, end_ns: int, prior: bool
    ) -> Series:
        m, _, lo, hi = self._collect(conn, tag_id, start_ns, end_ns, prior, with_text=False)
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
        """``read`` of several tags from one snapshot (mutually consistent)."""
        with self._snapshot("read") as conn:
            return {
                int(t): self._series(conn, int(t), int(start_ns), int(end_ns), prior)
                for t in tag_ids
            }

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
            rows = conn.execute("SELECT seq, level FROM ingest ORDER BY seq").fetchall()
            runs = [self._run(conn, s, lv) for s, lv in rows]
        want = np.asarray(wanted, dtype=np.int32)
        sel = [_positions(r.tags_u, want) for r in runs]
        if not any(len(k) for k in sel):
            return out
        tag = np.concatenate([r.tags_u[k] for r, k in zip(runs, sel, strict=True)])
        ts = np.concatenate([r.last_ts[k] for r, k in zip(runs, sel, strict=True)])
        value = np.concatenate([r.last_value[k] for r, k in zip(runs, sel, strict=True)])
        quality = np.concatenate([r.last_quality[k] for r, k in zip(runs, sel, strict=True)])
        texts: list[str | None] = []
        for r, k in zip(runs, sel, strict=True):
            lt = r.last_text
            texts += [None] * len(k) if lt is None else [lt[j] for j in k.tolist()]
        order = np.lexsort((ts, tag))  # stable: of equal ts the later row wins
        tag_s = tag[order]
        for j in order[np.append(np.flatnonzero(np.diff(tag_s)), len(tag_s) - 1)].tolist():
            tid = int(tag[j])
            have = out.get(tid)
            if have is None or int(ts[j]) >= have.ts_ns:  # ingest is newer than the table
                out[tid] = Latest(int(ts[j]), float(value[j]), int(quality[j]), texts[j])
        return out

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
            assert cur.lastrowid is not None
            return int(cur.lastrowid)

    def close_gap(self, gap_id: int, end_ns: int) -> None:
        with self._write_txn("close gap") as conn:
            row = conn.execute("SELECT start_ns FROM gaps WHERE gap_id = ?", (gap_id,)).fetchone()
            if row is None:
                raise StoreError(f"{self._path}: no gap {gap_id} to close")
            if int(end_ns) < int(row[0]):
                raise StoreError(
                    f"{self._path}: gap {gap_id} cannot end at {end_ns}, before its start {row[0]}"
                )
            conn.execute("UPDATE gaps SET end_ns = ? WHERE gap_id = ?", (int(end_ns), gap_id))

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
        return [Gap(int(g), d, int(s), None if e is None else int(e), r, a) for g, d, s, e, r, a in rows]

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
                    deleted += self._trim(conn, tag_id, horizon)
                conn.execute(
                    "DELETE FROM gaps WHERE end_ns IS NOT NULL AND end_ns < ?", (horizon,)
                )
        return deleted

    def _trim(self, conn: sqlite3.Connection, tag_id: int, horizon: int) -> int:
        straddling = conn.execute(
            "SELECT chunk_id, n, ts, value, quality, texts, server_ts, gateway_ts FROM chunks"
            " WHERE tag_id = ? AND t_max >= ? AND t_min < ?",
            (tag_id, horizon, horizon),
        ).fetchall()
        cut_total = 0
        for cid, n, ts_b, v_b, q_b, texts, srv_b, gw_b in straddling:
            cut = int(np.searchsorted(np.frombuffer(ts_b, _TS), horizon, "left"))
            txt, strings = _texts_index(texts, n)
            srv, gw = (None if b is None else _times_blob(np.frombuffer(b, _TS)[cut:])
                       for b in (srv_b, gw_b))
            conn.execute(
                "UPDATE chunks SET t_min = ?, n = ?, ts = ?, value = ?, quality = ?, texts = ?,"
                " server_ts = ?, gateway_ts = ? WHERE chunk_id = ?",
                (
                    int(np.frombuffer(ts_b, _TS)[cut]), n - cut, ts_b[cut * _TS.itemsize:],
                    v_b[cut * _VAL.itemsize:], q_b[cut * _Q.itemsize:],
                    _texts_subset(txt, strings, cut, n), srv, gw, cid,
                ),
            )
            cut_total += cut
        return cut_total

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
                   "db_bytes": db_bytes, "path": str(self._path)},
        )

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Flush ingest into chunks, checkpoint the WAL, close every connection. Idempotent."""
        with self._wlock:
            if self._closed:
                return
            try:
                self.compact()
                with self._errors("checkpoint"):
                    self._w.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                with self._pool_lock:
                    self._closed = True
                    idle, self._pool = self._pool, []
                for conn in idle:
                    conn.close()
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
