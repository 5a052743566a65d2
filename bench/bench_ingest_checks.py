"""What the embedded store's ingest row checksums cost at write time (issue 13 item 5).

Run: ``.venv/bin/python bench/bench_ingest_checks.py`` (``--points N``, ``--repeat R``).
Prints figures only; no assertions.

DESIGN.md's scale: 25,000 tags written in 50-point batches (one per machine poll), through
``SqliteStore.write`` with the merges and flushes the writes trigger and a final ``compact()``.
Each round writes the same batches to a new file twice, in the same process: with the
checksums (``crc_tags``/``crc``/``crc_extra`` computed per row, every row checked when a merge
or flush reads it) and with them patched out (rows written with NULL checksums and not
checked: what a write cost before schema version 6). Best of ``--repeat`` rounds each; the
ratio is what matters.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_store import batches  # type: ignore[import-not-found]

import store.sqlite.runs as runs
from store import Batch, SqliteStore


def rate(batch_list: list[Batch], directory: Path, name: str) -> float:
    points = sum(len(b) for b in batch_list)
    with SqliteStore(directory / name) as s:
        t = time.perf_counter()
        for b in batch_list:
            s.write(b)
        s.compact()
        return points / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    data = batches(25_000, 50, args.points)
    real_of, real_fault = runs.ingest_row_of, runs.ingest_fault

    def unchecked_row(*cols: Any) -> tuple[object, ...]:
        return (*cols, None, None, None)

    checked: list[float] = []
    unchecked: list[float] = []
    with tempfile.TemporaryDirectory() as d:
        for k in range(args.repeat):
            checked.append(rate(data, Path(d), f"on{k}.db"))
            runs.ingest_row_of = unchecked_row  # type: ignore[assignment]
            runs.ingest_fault = lambda r, extra=True: None  # type: ignore[assignment]
            try:
                unchecked.append(rate(data, Path(d), f"off{k}.db"))
            finally:
                runs.ingest_row_of, runs.ingest_fault = real_of, real_fault
    on, off = max(checked), max(unchecked)
    print(f"write, 25,000 tags, 50-point batches, {args.points:,} points, best of {args.repeat}: "
          f"{on:,.0f} points/s with ingest checksums, {off:,.0f} without; ratio {on / off:.3f}")


if __name__ == "__main__":
    main()
