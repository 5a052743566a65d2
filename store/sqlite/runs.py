"""Sorted runs and merges: the samples of ingest rows sorted by (tag, ts) with one sample
per (tag, ts), the readers' cached view of one ingest row, and the merge of one tag's parts
(chunks and ingest rows) into its series."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..base import Latest
from ..batch import F64, I32, I64, TS_UNKNOWN, U8, Batch, Series, concat_times, keep_last
from .checksum import chunk_crc, extra_crc, ingest_crcs, ingest_fault
from .schema import CHECK_COLS, ROW_COLS, TAG, TS, VAL, BlobRow, Q

__all__ = [
    "CHUNK_MAX",
    "IngestFault",
    "Part",
    "RowDamaged",
    "Run",
    "Sorted",
    "batch_row",
    "blob",
    "checked_row",
    "ingest_row_of",
    "known",
    "merge_latest",
    "merge_parts",
    "merge_rows",
    "texts_index",
    "texts_json",
    "texts_subset",
    "times_blob",
]


#: the most samples a flush writes into one chunk: a tag with more pending is written as
#: several chunks, consecutive in time. A read of a window loads (and checks the checksum
#: of) every chunk the window touches whole, so a day-long chunk made a read of a few
#: minutes at its edge load the whole day: the bench's 8 days flushed at close() gave chunks
#: of up to 99,102 samples (1.7 MB), ~11 MB loaded per window edge of a 7-day /kpis of the
#: demo plant. 8,192 samples keep each blob at most 64 KiB (``ts``, ``value``; below glibc's
#: 128 KiB threshold for a memory map of its own) and a row at ~136 KiB.
CHUNK_MAX = 8192


# --------------------------------------------------------------------------- array helpers


def blob(arr: npt.NDArray[np.generic], dtype: np.dtype[np.generic]) -> bytes:
    return arr.astype(dtype, copy=False).tobytes()


def known(times: I64 | None) -> bool:
    """Whether an optional timestamp column holds any known time (else it is stored NULL)."""
    return times is not None and bool((times != TS_UNKNOWN).any())


def times_blob(times: I64 | None) -> bytes | None:
    """The BLOB of an optional timestamp column: NULL when no sample has that time, so that
    batches and tags without it cost nothing."""
    return blob(times, TS) if times is not None and known(times) else None


def texts_json(text: npt.NDArray[np.object_] | None) -> str | None:
    """JSON ``[[index, text], ...]`` of the non-None entries, or None when there are none."""
    if text is None:
        return None
    # A Python loop, but only over batches that carry texts (string tags are rare).
    pairs = [[i, str(t)] for i, t in enumerate(text.tolist()) if t is not None]
    return json.dumps(pairs, ensure_ascii=False) if pairs else None


def texts_index(texts_json: str | None, n: int) -> tuple[I32 | None, list[str]]:
    """Inverse of the JSON above: per-sample index into a list of strings (-1: none)."""
    if not texts_json:
        return None, []
    pairs = json.loads(texts_json)
    txt = np.full(n, -1, dtype=np.int32)
    txt[np.array([p[0] for p in pairs], dtype=np.intp)] = np.arange(len(pairs), dtype=np.int32)
    return txt, [str(p[1]) for p in pairs]


def texts_subset(txt: I32 | None, strings: Sequence[str], lo: int, hi: int) -> str | None:
    """JSON of the texts of samples [lo, hi), indices relative to lo."""
    if txt is None:
        return None
    seg = txt[lo:hi]
    idx = np.flatnonzero(seg >= 0)
    if len(idx) == 0:
        return None
    return json.dumps([[int(i), strings[seg[i]]] for i in idx], ensure_ascii=False)


def ingest_row_of(level: int, n: int, t_min: int, t_max: int, tag_ids: bytes, ts: bytes,
                  value: bytes, quality: bytes, texts: str | None, server_ts: bytes | None,
                  gateway_ts: bytes | None) -> tuple[object, ...]:
    """The values of ``schema.INSERT_INGEST``: the row with its checksums (``checksum.py``)."""
    return (level, n, t_min, t_max, tag_ids, ts, value, quality, texts, server_ts, gateway_ts,
            *ingest_crcs(level, n, t_min, t_max, tag_ids, ts, value, quality),
            extra_crc(texts, server_ts, gateway_ts))


def batch_row(batch: Batch) -> tuple[object, ...]:
    """The level-0 ``ingest`` row of a written batch (its samples as given, unsorted)."""
    return ingest_row_of(
        0,
        len(batch),
        int(batch.ts_ns.min()),
        int(batch.ts_ns.max()),
        blob(batch.tag_id, TAG),
        blob(batch.ts_ns, TS),
        blob(batch.value, VAL),
        blob(batch.quality, Q),
        texts_json(batch.text),
        times_blob(batch.server_ts_ns),
        times_blob(batch.gateway_ts_ns),
    )


#: an ingest row found damaged: (seq, [(tag_id, samples), ...] or None when its tags cannot be
#: trusted, t_min, t_max, n, reason)
IngestFault = tuple[int, list[tuple[int, int]] | None, int, int, int, str]


class RowDamaged(Exception):
    """An ingest row failed its check (``checksum.ingest_fault``)."""

    def __init__(self, fault: IngestFault) -> None:
        super().__init__(fault[5])
        self.fault = fault


def checked_row(seq: int, r: Sequence[object], extra: bool = True) -> BlobRow:
    """The ROW_COLS part of ``r`` (CHECK_COLS then ROW_COLS of ingest row ``seq``) once it
    passes its check; else RowDamaged naming its tags (when they can be trusted) and range."""
    got = ingest_fault(r, extra)
    if got is None:
        return tuple(r[7:14])  # type: ignore[return-value]
    why, tags_ok = got
    tags: list[tuple[int, int]] | None = None
    if tags_ok:
        tag_ids = r[7]
        assert isinstance(tag_ids, bytes)  # tags_ok says so
        u, counts = np.unique(np.frombuffer(tag_ids, TAG), return_counts=True)
        tags = list(zip(u.tolist(), counts.tolist(), strict=True))
    num = [x if isinstance(x, int) else 0 for x in r[1:4]]
    raise RowDamaged((seq, tags, num[1], num[2], num[0], why))


@dataclass(frozen=True, slots=True)
class Sorted:
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
    ) -> Sorted:
        """From arrays already sorted by (tag, ts) without duplicates."""
        lo = np.concatenate(([0], np.flatnonzero(np.diff(tag)) + 1)).astype(np.int64)
        hi = np.append(lo[1:], len(tag)).astype(np.int64)
        if len(tag) == 0:
            lo = hi = np.empty(0, np.int64)
        return cls(tag, ts, value, quality, txt, strings, tag[lo], lo, hi, server_ts, gateway_ts)

    def __len__(self) -> int:
        return len(self.ts)

    def chunk_rows(self, most: int = CHUNK_MAX) -> list[tuple[object, ...]]:
        """The ``chunks`` rows of these samples, with their checksums (``checksum.py``): per
        tag one chunk of its samples in time order, or several of at most ``most`` samples
        each, consecutive in time and written in time order (so chunk_id order is time order
        and they never overlap). Per-chunk work is list building and one CRC pass over the
        bytes; per-point work is numpy."""
        lo, hi = self._pieces(most)
        # One bytes object per array, sliced per chunk through memoryviews: no per-chunk copies.
        ts_b = memoryview(blob(self.ts, TS))
        v_b = memoryview(blob(self.value, VAL))
        q_b = memoryview(blob(self.quality, Q))
        w_ts, w_v = TS.itemsize, VAL.itemsize
        texts: list[str | None] = [None] * len(lo)
        if self.txt is not None and len(lo):
            for k in np.flatnonzero(np.maximum.reduceat(self.txt, lo) >= 0).tolist():
                texts[k] = texts_subset(self.txt, self.strings, int(lo[k]), int(hi[k]))
        srv, gw = self._times_slices(self.server_ts, lo, hi), self._times_slices(self.gateway_ts, lo, hi)
        rows: list[tuple[object, ...]] = []
        for t, t0, t1, i, j, tx, s, g in zip(
            self.tag[lo].tolist(), self.ts[lo].tolist(), self.ts[hi - 1].tolist(),
            lo.tolist(), hi.tolist(), texts, srv, gw, strict=True,
        ):
            ts_c, v_c, q_c = ts_b[i * w_ts:j * w_ts], v_b[i * w_v:j * w_v], q_b[i:j]
            rows.append((t, t0, t1, j - i, ts_c, v_c, q_c, tx, s, g,
                         chunk_crc(t, t0, t1, j - i, ts_c, v_c, q_c), extra_crc(tx, s, g)))
        return rows

    def _pieces(self, most: int) -> tuple[I64, I64]:
        """[lo, hi) of each chunk: each tag's samples cut every ``most`` samples."""
        if most < 1:
            raise ValueError(f"chunks of at most {most} samples: must be at least 1")
        if not len(self.lo) or int((self.hi - self.lo).max()) <= most:
            return self.lo, self.hi
        count = -(-(self.hi - self.lo) // most)  # chunks per tag
        first = np.repeat(self.lo, count)
        k = np.arange(len(first), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
        lo = first + k * most
        hi = np.minimum(lo + most, np.repeat(self.hi, count))
        return lo, hi

    def _times_slices(self, times: I64 | None, lo: I64, hi: I64) -> list[memoryview | None]:
        """Per chunk [lo, hi), its slice of an optional timestamp column, or None (NULL) where
        the chunk has no such time at all: a flush mixing devices adds nothing to the others'
        chunks."""
        if times is None or not len(lo):
            return [None] * len(lo)
        has = np.logical_or.reduceat(times != TS_UNKNOWN, lo).tolist()
        b = memoryview(blob(times, TS))
        w = TS.itemsize
        return [b[i * w:j * w] if h else None
                for i, j, h in zip(lo.tolist(), hi.tolist(), has, strict=True)]

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
            texts = texts_subset(self.txt, self.strings, 0, len(self.txt))
        return ingest_row_of(
            level, len(self), int(self.ts.min()), int(self.ts.max()), blob(self.tag, TAG),
            blob(self.ts, TS), blob(self.value, VAL), blob(self.quality, Q), texts,
            times_blob(self.server_ts), times_blob(self.gateway_ts),
        )


def merge_rows(rows: Sequence[BlobRow]) -> Sorted:
    """Samples of ingest rows given in write order, stable-sorted by (tag, ts); of equal
    (tag, ts) the last written wins (a re-sent batch does not count twice)."""
    tag = np.concatenate([np.frombuffer(r[0], TAG) for r in rows])
    ts = np.concatenate([np.frombuffer(r[1], TS) for r in rows])
    value = np.concatenate([np.frombuffer(r[2], VAL) for r in rows])
    quality = np.concatenate([np.frombuffer(r[3], Q) for r in rows])
    txt: I32 | None = None
    strings: list[str] = []
    if any(r[4] for r in rows):
        pieces = []
        for r in rows:
            n_r = len(r[1]) // TS.itemsize
            t_r, s_r = texts_index(r[4], n_r)
            if t_r is None:
                pieces.append(np.full(n_r, -1, dtype=np.int32))
            else:  # re-base this row's indices onto the merged string list
                pieces.append(np.where(t_r >= 0, t_r + len(strings), -1).astype(np.int32))
                strings.extend(s_r)
        txt = np.concatenate(pieces)
    srv = gw = None
    if any(r[5] is not None or r[6] is not None for r in rows):
        lengths = [len(r[1]) // TS.itemsize for r in rows]
        srv = concat_times([None if r[5] is None else np.frombuffer(r[5], TS) for r in rows],
                            lengths)
        gw = concat_times([None if r[6] is None else np.frombuffer(r[6], TS) for r in rows],
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
    return Sorted.of(tag, ts, value, quality, txt, strings, srv, gw)


@dataclass(frozen=True, slots=True)
class Part:
    """Samples of one tag from one source (a chunk or an ingest row), sorted by ts."""

    ts: I64
    value: F64
    quality: U8
    txt: I32 | None = None
    strings: Sequence[str] = ()
    server_ts: I64 | None = None
    gateway_ts: I64 | None = None


@dataclass(frozen=True, slots=True)
class Run:
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
    samples: Sorted | None
    #: whether the row's server_ts / gateway_ts columns are not NULL
    has_server: bool = False
    has_gateway: bool = False

    @classmethod
    def of(cls, seq: int, s: Sorted, keep_samples: bool,
           has_times: tuple[bool, bool] | None = None) -> Run:
        """``has_times``: (has_server, has_gateway) of the row on disk when ``s`` was read
        without those columns; by default what ``s`` holds (stored as NULL when unknown)."""
        last = s.hi - 1
        last_text = None
        if s.txt is not None:
            last_text = [s.strings[j] if j >= 0 else None for j in s.txt[last].tolist()]
        if has_times is None:
            has_times = (known(s.server_ts), known(s.gateway_ts))
        return cls(seq, len(s), s.tags_u, s.lo, s.hi, s.ts[last], s.value[last],
                   s.quality[last], last_text, s if keep_samples else None, *has_times)

    @classmethod
    def load(cls, conn: sqlite3.Connection, seq: int, level: int) -> Run:
        """The reader's view of ingest row ``seq`` of ``level``, decoded from the file once it
        passes its check (checksums; RowDamaged if not)."""
        got = conn.execute(f"SELECT {CHECK_COLS}, {ROW_COLS} FROM ingest WHERE seq = ?",
                           (seq,)).fetchone()
        row = checked_row(seq, got)
        if level == 0:
            return cls.of(seq, merge_rows([row]), keep_samples=True)
        # already sorted and de-duplicated on disk; readers fetch their slice of the optional
        # timestamps by blobopen: only whether the row has them is needed here
        tag = np.frombuffer(row[0], TAG)
        txt, strings = texts_index(row[4], len(tag))
        s = Sorted.of(tag, np.frombuffer(row[1], TS), np.frombuffer(row[2], VAL),
                      np.frombuffer(row[3], Q), txt, strings)
        return cls.of(seq, s, keep_samples=False,
                      has_times=(row[5] is not None, row[6] is not None))

    @property
    def weight(self) -> int:
        """Cache cost: points held."""
        return self.n if self.samples is not None else len(self.tags_u)

    def part(
        self, conn: sqlite3.Connection, tag_id: int, with_text: bool, with_times: bool = False
    ) -> Part | None:
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
            return Part(s.ts[lo:hi], s.value[lo:hi], s.quality[lo:hi], txt, s.strings, srv, gw)

        def read(column: str, width: int) -> bytes:
            with conn.blobopen("ingest", column, self.seq, readonly=True) as blob:
                blob.seek(lo * width)
                return blob.read((hi - lo) * width)

        if with_times:  # blobopen cannot open a NULL: only the columns the row has
            srv = np.frombuffer(read("server_ts", TS.itemsize), TS) if self.has_server else None
            gw = np.frombuffer(read("gateway_ts", TS.itemsize), TS) if self.has_gateway else None

        strings: list[str] = []
        if with_text:
            (texts,) = conn.execute(
                "SELECT texts FROM ingest WHERE seq = ?", (self.seq,)
            ).fetchone()
            all_txt, strings = texts_index(texts, self.n)
            txt = None if all_txt is None else all_txt[lo:hi]
        return Part(
            np.frombuffer(read("ts", TS.itemsize), TS),
            np.frombuffer(read("value", VAL.itemsize), VAL),
            np.frombuffer(read("quality", Q.itemsize), Q),
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


def merge_parts(parts: list[Part], with_text: bool) -> tuple[Part, list[str]]:
    """Concatenate parts given in write order, sort by ts (stable), keep the last write per ts."""
    if not parts:
        empty = Series.empty()
        return Part(empty.ts_ns, empty.value, empty.quality), []
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
    keep = keep_last(ts)
    if keep is not None:
        ts, value, quality = ts[keep], value[keep], quality[keep]
        txt = None if txt is None else txt[keep]
        srv = None if srv is None else srv[keep]
        gw = None if gw is None else gw[keep]
    return Part(ts, value, quality, txt, (), srv, gw), strings


def merge_latest(
    out: dict[int, Latest], runs: Sequence[Run], wanted: Sequence[int]
) -> dict[int, Latest]:
    """``out`` (read from the ``latest`` table) updated with the newest sample of each
    ``wanted`` tag among ``runs``, the ingest rows in seq order."""
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
