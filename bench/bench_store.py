"""Benchmark of the embedded SQLite store against a naive one-row-per-point table.

Run: ``.venv/bin/python bench/bench_store.py`` (``--points N`` per case, ``--keep DIR``).
Prints figures only; no assertions. Both sides run in the same process, on the same disk,
with the same journal settings (WAL, synchronous NORMAL, one transaction per batch), so the
ratio is what matters, not the absolute numbers.

Writes: batches of 100, 1,000 and 10,000 points over 1,000 tags, and DESIGN.md's scale
(25,000 tags written in 50-point batches, one per machine poll). tierproof's time includes
the compactions the writes trigger and a final ``compact()``, so nothing is left pending.
The naive baseline is ``executemany`` of one row per point into
``points(tag_id, ts, value, quality)``, with the (tag_id, ts) index a reader needs and,
for reference, without any index.

Reads: one tag over its whole history ("long window"), with the prior sample.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store import Batch, SqliteStore

T0 = 1_700_000_000 * 10**9
SEC = 10**9


def batches(n_tags: int, batch_size: int, total: int) -> list[Batch]:
    """Round-robin over tags, 1 Hz per tag: point k is tag k % n_tags at second k // n_tags."""
    out = []
    rng = np.random.default_rng(7)
    for first in range(0, total, batch_size):
        k = np.arange(first, min(first + batch_size, total), dtype=np.int64)
        out.append(
            Batch(
                (k % n_tags + 1).astype(np.int32),
                T0 + (k // n_tags) * SEC,
                rng.normal(50.0, 10.0, len(k)),
                np.zeros(len(k), np.uint8),
            )
        )
    return out


def naive_db(path: Path, index: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE points (tag_id INTEGER, ts INTEGER, value REAL, quality INTEGER)")
    if index:
        conn.execute("CREATE INDEX points_by_tag ON points (tag_id, ts)")
    return conn


def naive_write(conn: sqlite3.Connection, b: Batch) -> None:
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO points VALUES (?, ?, ?, ?)",
        zip(b.tag_id.tolist(), b.ts_ns.tolist(), b.value.tolist(), b.quality.tolist(), strict=True),
    )
    conn.execute("COMMIT")


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def fresh(tmp: Path) -> Iterator[Path]:
    i = 0
    while True:
        i += 1
        yield tmp / f"db{i}.sqlite"


def rate_ours(path: Path, bs: list[Batch], **kw: object) -> float:
    store = SqliteStore(path, **kw)  # type: ignore[arg-type]

    def run() -> None:
        for b in bs:
            store.write(b)
        store.compact()

    dt = timed(run)
    store.close()
    return sum(map(len, bs)) / dt


def rate_naive(path: Path, bs: list[Batch], index: bool) -> float:
    conn = naive_db(path, index)

    def run() -> None:
        for b in bs:
            naive_write(conn, b)

    dt = timed(run)
    conn.close()
    return sum(map(len, bs)) / dt


def bench_writes(tmp: Path, total: int, repeat: int, design_points: int) -> None:
    paths = fresh(tmp)
    print(f"\nWRITES: {total:,} points per case, 1,000 tags, one transaction per batch,"
          f" best of {repeat} (points/s)")
    print(f"{'batch':>7} {'tierproof':>12} {'naive+index':>12} {'naive noidx':>12}"
          f" {'x naive+idx':>11} {'x noidx':>8}")
    for size in (100, 1_000, 10_000):
        bs = batches(1000, size, total)
        ours = max(rate_ours(next(paths), bs) for _ in range(repeat))
        idx = max(rate_naive(next(paths), bs, True) for _ in range(repeat))
        noidx = max(rate_naive(next(paths), bs, False) for _ in range(repeat))
        print(f"{size:>7,} {ours:>12,.0f} {idx:>12,.0f} {noidx:>12,.0f}"
              f" {ours / idx:>10.1f}x {ours / noidx:>7.1f}x")

    bs = batches(1000, 1000, min(total, 200_000))
    full = rate_ours(next(paths), bs, synchronous="full")
    print(f"  synchronous=full (fsync per write), 1,000-point batches: {full:,.0f} points/s")

    # DESIGN.md's scale: 500 machines x 50 tags, one batch per machine poll. Enough points
    # for several flushes (one per ~1.6M points here) and for the naive index to grow.
    n = design_points
    bs = batches(25_000, 50, n)
    ours, idx = rate_ours(next(paths), bs), rate_naive(next(paths), bs, True)
    print(f"  25,000 tags in 50-point batches, {n:,} points: tierproof {ours:,.0f},"
          f" naive+index {idx:,.0f} points/s ({ours / idx:.1f}x)")


def bench_reads(tmp: Path, per_tag: int) -> None:
    n_tags = 100
    paths = fresh(tmp / "r")
    (tmp / "r").mkdir()
    print(f"\nREADS: one tag's whole history ({per_tag:,} samples; {n_tags} tags,"
          " 10,000-point batches), prior=True")
    bs = batches(n_tags, 10_000, n_tags * per_tag)
    store = SqliteStore(next(paths))
    for b in bs:
        store.write(b)
    store.compact()
    conn = naive_db(next(paths), index=True)
    for b in bs:
        naive_write(conn, b)
    end = T0 + per_tag * SEC
    reps = 20

    def ours() -> None:
        for r in range(reps):
            s = store.read(1 + r % n_tags, T0, end)
            assert len(s) == per_tag

    def naive() -> None:
        for r in range(reps):
            rows = conn.execute(
                "SELECT ts, value, quality FROM points WHERE tag_id = ? AND ts >= ? AND ts < ?"
                " ORDER BY ts", (1 + r % n_tags, T0, end)).fetchall()
            a = np.array(rows)
            assert len(a) == per_tag

    t_ours, t_naive = timed(ours), timed(naive)
    chunks = store.stats().extra["chunks"]
    print(f"  tierproof: {reps * per_tag / t_ours:>14,.0f} pts/s ({t_ours / reps * 1e3:.2f} ms per "
          f"read, {chunks} chunks in the file)")
    print(f"  naive+idx: {reps * per_tag / t_naive:>14,.0f} pts/s ({t_naive / reps * 1e3:.2f} ms "
          f"per read)  -> {t_naive / t_ours:.0f}x")

    # A short recent window (what a dashboard asks): the cost is per call, not per point.
    def short() -> None:
        for r in range(200):
            store.read(1 + r % n_tags, end - 60 * SEC, end)

    t = timed(short)
    print(f"  tierproof: last minute of one tag: {t / 200 * 1e6:,.0f} µs per read")
    # Reads while part of the data sits uncompacted in ingest (served from the decoded cache).
    for b in batches(n_tags, 10_000, 30 * 10_000):
        store.write(b)
    t = timed(short)
    print(f"  tierproof: same, with {store.stats().extra['ingest_rows']} ingest rows pending:"
          f" {t / 200 * 1e6:,.0f} µs per read")
    t = timed(lambda: store.latest(list(range(1, n_tags + 1))))
    print(f"  tierproof: latest() of {n_tags} tags with ingest pending: {t * 1e3:.2f} ms")
    store.close()
    conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=500_000, help="points per write case")
    ap.add_argument("--repeat", type=int, default=3, help="runs per write case (best counts)")
    ap.add_argument("--design-points", type=int, default=4_000_000,
                    help="points of the 25,000-tag case")
    ap.add_argument("--per-tag", type=int, default=20_000, help="samples per tag, read case")
    ap.add_argument("--keep", type=Path, help="directory for the databases (default: temp)")
    args = ap.parse_args()
    print(f"sqlite {sqlite3.sqlite_version}, numpy {np.__version__},"
          f" python {sys.version.split()[0]}")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        bench_writes(args.keep, args.points, args.repeat, args.design_points)
        bench_reads(args.keep, args.per_tag)
        return
    with tempfile.TemporaryDirectory(prefix="bench_store_") as d:
        bench_writes(Path(d), args.points, args.repeat, args.design_points)
        bench_reads(Path(d), args.per_tag)


if __name__ == "__main__":
    main()
