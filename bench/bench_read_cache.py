"""Benchmark: the InfluxDB store's read cache on the write path, with the ranges a dashboard
keeps held.

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_read_cache.py`` (``--machines 100 --tags 50
--held 6 --writes 300``). Prints figures; nothing about timing is asserted.

Every acknowledged write passes through ``ReadCache.writing``/``written`` (docs/influxdb.md,
"The read cache"). With nothing held that is a mask over the batch. A dashboard polling
``/kpis`` keeps each machine's KPI tags held: the window's start edge (a closed range) and its
end edge (an open range that each write extends), so each write then does work per held tag.
The plant: ``--machines`` × ``--tags`` tags, one sample of each per write (a 1 Hz poll of the
whole plant, written once a second), ``--held`` KPI tags per machine held, the open ranges
pre-filled with ``--prefill`` samples (how far into the hour the window's end edge is). Beside
it, in the same run, the line-protocol encoding of the same write (``LineEncoder.encode``):
work every write does anyway, so the ratio says what the cache adds to it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from store.batch import Batch, Series
from store.influx.lp import LineEncoder
from store.influx.readcache import OPEN, ReadCache

S = 10**9


def plant_write(n_tags: int, t: int, rng: np.random.Generator) -> Batch:
    return Batch(np.arange(n_tags, dtype=np.int32), np.full(n_tags, t, np.int64),
                 rng.random(n_tags), np.zeros(n_tags, np.uint8))


def held_cache(held: np.ndarray, t0: int, prefill: int) -> ReadCache:
    """A cache holding, for each tag of ``held``, the hour before the window's end edge
    (closed) and the end edge from ``prefill`` s before ``t0`` on (open)."""
    cache = ReadCache(100_000_000)
    one = Series(np.array([t0 - 7200 * S]), np.array([1.0]), np.zeros(1, np.uint8))
    filled = Series(t0 - np.arange(prefill, 0, -1, dtype=np.int64) * S, np.ones(prefill),
                    np.zeros(prefill, np.uint8))
    for tag in held.tolist():
        cache.keep(tag, t0 - 3 * 3600 * S, t0 - 2 * 3600 * S, one, one, cache.generations([tag]))
        cache.keep(tag, t0 - prefill * S, OPEN, one, filled, cache.generations([tag]))
    return cache


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--machines", type=int, default=100)
    ap.add_argument("--tags", type=int, default=50, help="tags per machine")
    ap.add_argument("--held", type=int, default=6, help="KPI tags per machine held")
    ap.add_argument("--prefill", type=int, default=1800,
                    help="samples already in each open range (s into the hour, at 1 Hz)")
    ap.add_argument("--writes", type=int, default=300)
    args = ap.parse_args()
    n = args.machines * args.tags
    rng = np.random.default_rng(1)
    t0 = 1_800_000_000 * S
    encoder = LineEncoder({i: f"m,tag=t{i}" for i in range(n)})
    cases = [("nothing held", np.zeros(0, np.int64)),
             (f"{args.held} KPI tags a machine held",
              (np.arange(args.machines)[:, None] * args.tags + np.arange(args.held)).ravel()),
             ("every tag held", np.arange(n))]
    print(f"{args.machines} machines x {args.tags} tags: writes of {n:,} points, "
          f"{args.writes} writes a case, open ranges pre-filled with {args.prefill} samples")
    enc_s = 0.0
    for k in range(args.writes):
        b = plant_write(n, t0 + k * S, rng)
        s = time.perf_counter()
        encoder.encode(b, 5000)
        enc_s += time.perf_counter() - s
    enc = enc_s / args.writes
    print(f"  line protocol of the write (reference): {enc * 1e3:8.3f} ms a write, "
          f"{enc / n * 1e9:6.0f} ns a point")
    for name, held in cases:
        cache = held_cache(held, t0, args.prefill)
        spent = 0.0
        for k in range(args.writes):
            b = plant_write(n, t0 + k * S, rng)
            s = time.perf_counter()
            cache.writing(b)
            cache.written(b, True)
            spent += time.perf_counter() - s
        per = spent / args.writes
        print(f"  cache, {name:>24} ({len(held):5,} tags, {len(cache._ranges):5,} ranges): "
              f"{per * 1e3:8.3f} ms a write, {per / n * 1e9:6.0f} ns a point, "
              f"{per / enc:5.2f}x the encoding")


if __name__ == "__main__":
    main()
