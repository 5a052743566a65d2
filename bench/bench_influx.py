"""Benchmark of the InfluxDB writer against a raw line-protocol POST loop, in the same run.

Run: ``.venv/bin/python bench/bench_influx.py [--rounds R] [--batches B] [--no-vm]``. Prints
figures only; no assertions. Starts its own servers (``tests/influx_servers.py``): InfluxDB
1.6 from Debian, and VictoriaMetrics for the ``api: v2`` path (influxdb-client), each on free
127.0.0.1 ports with a temporary data directory.

Workload: 1,000 tags (ISA-95 paths, role and device tags), 1 Hz each, in batches of 5,000
points: one bulk POST per batch (``batch_size`` 5,000).

(a) raw: an ``httpx.Client`` POSTing pre-built line-protocol bodies (built before the clock
    starts: the loop measures the server and the HTTP client only), same series keys, a
    measurement of its own;
(b) tierproof: ``InfluxStore.write(batch)`` of the numpy batches: line protocol built from the
    columns, POSTed, errors mapped.

Both run in alternating rounds of B batches, to fresh timestamps each (no overwrites), after a
warm-up round that creates the series on both sides, so that load from elsewhere hits both
alike. The best round of each counts. Gzip is measured off (loopback: compression costs more
than it saves) and on (both sides send gzip; the raw loop's bodies are compressed before the
clock starts, so that ratio is against a stricter ceiling). The encoder's own cost (CPU time
per point without any I/O) is printed too: its ceiling per core.

Goal: (b)/(a) >= 0.8 on InfluxDB 1.6 (measured on the 2-core test machine: raw ~350-475k
points/s).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config.store import InfluxStoreSettings
from store.base import TagRecord
from store.batch import Batch
from store.influx import InfluxStore
from store.influx.lp import LineEncoder, series_key
from store.influx.sink import gzip_body
from tests.influx_servers import InfluxDB16, VictoriaMetrics

T0 = 1_700_000_000 * 10**9
SEC = 10**9
N_TAGS = 1_000
BATCH = 5_000
TOKEN = "bench-token"


def tags() -> list[TagRecord]:
    return [
        TagRecord(path=f"plant/area{i // 500}/line{i // 100}/machine{i // 20:03d}/signal{i % 20:02d}",
                  asset=f"plant/area{i // 500}/line{i // 100}/machine{i // 20:03d}",
                  role="analog", device=f"plc{i // 20:03d}", protocol="modbus")
        for i in range(N_TAGS)
    ]


def batches(first_point: int, count: int, rng: np.random.Generator, values: str = "random") -> list[Batch]:
    """Round-robin over tags at 1 Hz: point k is tag k % N_TAGS at second k // N_TAGS.

    ``values``: "random" -- full-precision random doubles, the worst case for formatting
    (17 significant digits each); "plant" -- what a machine's 20 signals look like: 3 state /
    mode codes, 4 counters (integers), 13 analog readings at the sensor's resolution (2
    decimals)."""
    out = []
    for b in range(count):
        k = np.arange(first_point + b * BATCH, first_point + (b + 1) * BATCH, dtype=np.int64)
        v = rng.normal(50.0, 10.0, BATCH)
        if values == "plant":
            signal = k % N_TAGS % 20
            v = np.where(signal < 3, k % 4, np.where(signal < 7, k // N_TAGS, np.round(v, 2))).astype(float)
        out.append(Batch((k % N_TAGS + 1).astype(np.int32), T0 + (k // N_TAGS) * SEC,
                         v, np.zeros(BATCH, np.uint8)))
    return out


def raw_bodies(bs: list[Batch], keys: dict[int, str]) -> list[bytes]:
    """What a hand-written client would send: one f-string per point (not timed)."""
    return [
        "".join(f"{keys[t]} value={v!r},quality={q}i {s}\n" for t, v, q, s in zip(
            b.tag_id.tolist(), b.value.tolist(), b.quality.tolist(), b.ts_ns.tolist(), strict=True
        )).encode()
        for b in bs
    ]


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def timed_cpu(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU of this process) seconds: the CPU is the client's cost whatever the load."""
    c, t = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def run_case(title: str, store: InfluxStore, raw_post: Callable[[bytes], None], gzip: bool,
             rounds: int, per_round: int, values: str = "random") -> None:
    keys = {t.tag_id: series_key("raw", t) for t in store.tags()}
    rng = np.random.default_rng(11)
    point = 0

    def next_batches() -> list[Batch]:
        nonlocal point
        bs = batches(point, per_round, rng, values)
        point += per_round * BATCH
        return bs

    def raw_round() -> tuple[float, float]:
        bodies = raw_bodies(next_batches(), keys)
        if gzip:
            bodies = [gzip_body(b) for b in bodies]
        def run() -> None:
            for b in bodies:
                raw_post(b)

        return timed_cpu(run)

    def ours_round() -> tuple[float, float]:
        bs = next_batches()

        def run() -> None:
            for b in bs:
                store.write(b)

        return timed_cpu(run)

    raw_round(), ours_round()  # warm-up: creates the series on both sides
    raw_r, ours_r = [], []
    for _ in range(rounds):
        raw_r.append(raw_round())
        ours_r.append(ours_round())
    pts = per_round * BATCH
    raw_t, ours_t = [w for w, _ in raw_r], [w for w, _ in ours_r]
    raw_best, ours_best = pts / min(raw_t), pts / min(ours_t)
    raw_med, ours_med = pts / float(np.median(raw_t)), pts / float(np.median(ours_t))
    raw_cpu = float(np.median([c for _, c in raw_r])) / pts * 1e9
    ours_cpu = float(np.median([c for _, c in ours_r])) / pts * 1e9
    print(f"  {title}\n"
          f"    best   raw {raw_best:>9,.0f}  tierproof {ours_best:>9,.0f} points/s"
          f"  -> {ours_best / raw_best:.2f}x\n"
          f"    median raw {raw_med:>9,.0f}  tierproof {ours_med:>9,.0f} points/s"
          f"  -> {ours_med / raw_med:.2f}x\n"
          f"    client CPU per point: raw {raw_cpu:.0f} ns, tierproof {ours_cpu:.0f} ns")


def encoder_cost() -> None:
    recs = tags()
    enc = LineEncoder({i + 1: series_key("tierproof", t) for i, t in enumerate(recs)})
    bs = batches(0, 40, np.random.default_rng(3))
    enc.encode(bs[0], BATCH)
    cpu = time.process_time()
    wall = timed(lambda: [enc.encode(b, BATCH) for b in bs])
    cpu = time.process_time() - cpu
    n = len(bs) * BATCH
    gz = timed(lambda: [gzip_body(x) for b in bs[:10] for x in enc.encode(b, BATCH)])
    print(f"  line protocol from numpy batches: {n / wall:,.0f} points/s ({cpu / n * 1e9:.0f} ns CPU"
          f" per point); with gzip level 1: {10 * BATCH / gz:,.0f} points/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="measured rounds per side and case")
    ap.add_argument("--batches", type=int, default=40, help="5,000-point batches per round")
    ap.add_argument("--no-vm", action="store_true", help="skip the VictoriaMetrics (v2) case")
    args = ap.parse_args()
    print(f"numpy {np.__version__}, httpx {httpx.__version__}, python {sys.version.split()[0]}")
    print(f"\nWRITES: {N_TAGS:,} tags, {BATCH:,}-point batches (one POST each), {args.batches}"
          f" batches per round, best of {args.rounds} alternating rounds")
    encoder_cost()
    with tempfile.TemporaryDirectory(prefix="bench_influx_") as d:
        root = Path(d)
        server = InfluxDB16(root / "influxdb")
        server.start()
        client = httpx.Client(timeout=60.0)
        try:
            for gzip in (False, True):
                s = InfluxStoreSettings(type="influx", api="v1", url=server.url,
                                        database=server.database, batch_size=BATCH, gzip=gzip,
                                        meta_path=str(root / f"meta-v1-{gzip}.db"))
                headers = {"Content-Encoding": "gzip"} if gzip else {}

                def post(body: bytes, headers: dict[str, str] = headers) -> None:
                    r = client.post(f"{server.url}/write", content=body, headers=headers,
                                    params={"db": server.database, "precision": "ns"})
                    if r.status_code != 204:
                        raise SystemExit(f"raw write failed: {r.status_code} {r.text}")

                with InfluxStore(s) as store:
                    store.register_tags(tags())
                    run_case(f"InfluxDB 1.6 /write, gzip {'on' if gzip else 'off'}, random doubles",
                             store, post, gzip, args.rounds, args.batches)
                    if not gzip:
                        run_case("InfluxDB 1.6 /write, gzip off, plant-like values", store, post,
                                 gzip, args.rounds, args.batches, "plant")
        finally:
            server.stop()
        if not args.no_vm:
            vm = VictoriaMetrics(root / "vm")
            vm.start()
            try:
                s = InfluxStoreSettings(type="influx", api="v2", url=vm.url, token=SecretStr(TOKEN),
                                        org="plant", bucket="bench", batch_size=BATCH, gzip=False,
                                        meta_path=str(root / "meta-v2.db"))

                def post_v2(body: bytes) -> None:
                    r = client.post(f"{vm.url}/api/v2/write", content=body,
                                    params={"org": "plant", "bucket": "bench", "precision": "ns"},
                                    headers={"Authorization": f"Token {TOKEN}"})
                    if r.status_code != 204:
                        raise SystemExit(f"raw v2 write failed: {r.status_code} {r.text}")

                with InfluxStore(s) as store:
                    store.register_tags(tags())
                    run_case("VictoriaMetrics /api/v2/write (v2)", store, post_v2, False,
                             args.rounds, args.batches)
            finally:
                vm.stop()
        client.close()


if __name__ == "__main__":
    main()
