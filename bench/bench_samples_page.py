"""Benchmark: the first samples of a long window of one tag (issue 13: ``/tags/{path}/samples
?from=now-30d&limit=1`` on a tag with 20 M samples read the whole window, twice, before
applying ``limit``: 1.6 GB RSS and 6 s for one sample).

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_samples_page.py`` (``--samples 20000000``,
``--chunk 200000`` samples per flush, ``--dir``). Writes one tag's samples at 10 ms spacing
into a fresh ``SqliteStore`` (one chunk per ``--chunk`` samples, as the collectors' flushes
make them), then per case prints the wall time and the peak of Python allocations
(tracemalloc: numpy arrays and SQLite blobs included) of:

- ``read_page`` with limit 1, 10,000 and 100,000 (what the route does now);
- ``read`` + ``read_timestamps`` of the whole window (what the route did before).

Prints figures only; nothing is asserted (the memory bound is asserted by
``tests/store/sqlite/test_sqlite_read_page.py`` on 3 M samples).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store import Batch, SqliteStore, TagRecord

SEC = 10**9
T0 = 1_700_000_000 * SEC


def measure(what: str, fn: Callable[[], Any]) -> None:
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        fn()
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"{what:<44} {elapsed:8.3f} s  peak {peak / 2**20:9.1f} MiB", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=20_000_000)
    ap.add_argument("--chunk", type=int, default=200_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/tierproof-bench-samples-page"))
    args = ap.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    with SqliteStore(args.dir / "store.db") as store:
        (tid,) = store.register_tags([TagRecord(path="s/a/l/m/v", asset="s/a/l/m",
                                                role="analog", device="d",
                                                protocol="modbus")]).values()
        t0 = time.perf_counter()
        for lo in range(0, args.samples, args.chunk):
            n = min(args.chunk, args.samples - lo)
            ts = T0 + (lo + np.arange(n, dtype=np.int64)) * (SEC // 100)
            store.write(Batch(np.full(n, tid, np.int32), ts, np.arange(n, dtype=np.float64),
                              np.zeros(n, np.uint8)))
            store.compact()
        size = sum(p.stat().st_size for p in args.dir.glob("store.db*"))
        print(f"{args.samples:,} samples in {-(-args.samples // args.chunk)} chunks, "
              f"{size / 2**20:.0f} MiB, written in {time.perf_counter() - t0:.1f} s")
        end = T0 + args.samples * (SEC // 100)
        for limit in (1, 10_000, 100_000):
            measure(f"read_page, limit {limit:,}", lambda limit=limit: store.read_page(tid, T0, end, limit))

        def before() -> None:
            s = store.read(tid, T0, end, prior=False)
            store.read_timestamps(tid, T0, end)
            del s

        measure("read + read_timestamps (before)", before)
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
