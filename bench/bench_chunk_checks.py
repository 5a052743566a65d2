"""What the embedded store's chunk checksums cost (issue 13 item 5).

Run: ``.venv/bin/python bench/bench_chunk_checks.py``. Prints figures only; no assertions.

- ``zlib.crc32`` over 50 MB (the raw rate of the check);
- ``read()`` of one day of a 1 Hz tag stored in 96 chunks of 15 minutes, best of 30, with the
  check of every chunk, and with the check patched out (what a read cost before);
- the checksums a flush computes: per chunk of 64 samples (``chunk_crc`` + ``extra_crc``).
"""

from __future__ import annotations

import sys
import tempfile
import time
import timeit
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import store.sqlite.chunks as chunks
from store import Batch, SqliteStore, TagRecord
from store.sqlite.checksum import chunk_crc, extra_crc

SEC = 10**9
T0 = 1_700_000_000 * SEC


def main() -> None:
    data = bytes(np.random.default_rng(0).integers(0, 255, 50_000_000, dtype=np.uint8))
    t = time.perf_counter()
    zlib.crc32(data)
    print(f"zlib.crc32: {len(data) / (time.perf_counter() - t) / 1e9:.2f} GB/s")
    with tempfile.TemporaryDirectory() as d, SqliteStore(Path(d) / "b.db") as s:
        (tid,) = s.register_tags([TagRecord("s/a/l/m/x", "s/a/l/m", "analog", "plc", "modbus")]).values()
        for k in range(96):
            s.write(Batch.of([tid] * 900, T0 + (k * 900 + np.arange(900)) * SEC, np.arange(900.0)))
            s.compact()

        def best() -> float:
            out = 1e9
            for _ in range(30):
                t = time.perf_counter()
                s.read(tid, T0, T0 + 86_400 * SEC)
                out = min(out, time.perf_counter() - t)
            return out

        checked = best()
        real = chunks.chunk_fault
        chunks.chunk_fault = lambda r, e: None  # type: ignore[assignment]
        try:
            unchecked = best()
        finally:
            chunks.chunk_fault = real
        print(f"read of one day (86,400 samples, 96 chunks), best of 30: {checked * 1e3:.2f} ms "
              f"checked, {unchecked * 1e3:.2f} ms unchecked")
    b, q, n = memoryview(bytes(64 * 8)), memoryview(bytes(64)), 200_000
    per = timeit.timeit(lambda: (chunk_crc(5, 1, 2, 64, b, b, q), extra_crc(None, None, None)),
                        number=n) / n
    print(f"checksums at a flush: {per * 1e6:.2f} us per chunk of 64 samples")


if __name__ == "__main__":
    main()
