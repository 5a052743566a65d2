"""Benchmark of the store-and-forward spool against a real InfluxDB 1.6 (Debian ``influxd``).

Run: ``.venv/bin/python bench/bench_spool.py`` (``--rate`` points/s of ingest, ``--outage`` s).
Prints figures only; no assertions.

The question: after an outage, does the spool catch up while the plant keeps producing? The
gateway ingests at ``--rate`` points/s (DESIGN.md's plant section: 500 machines x 50 tags at
1 Hz = 25,000 points/s) in batches of one poll round (``--batch`` points). InfluxDB is down for
``--outage`` seconds, so everything goes to the spool; then it comes back and the spool drains
while ingest goes on at the same rate, all new batches queueing behind the old ones. The
drain rate is points sent from the spool per second until it is empty; the goal is >= 3x the
ingest rate (an outage of T then takes < T/2 to catch up).

For reference, in the same run and to the same server: the raw ceiling, a loop of
line-protocol POSTs with httpx (no tierproof), and the spool's own append rate (fsync per
batch) with the sink down.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config.base import Backoff
from config.store import InfluxStoreSettings, SpoolSettings
from store import SpooledStore, TagRecord, open_store
from store.batch import Batch
from tests.influx_servers import InfluxDB16

T0 = 1_760_000_000 * 10**9
SEC = 10**9
TAGS = 25_000


def tags() -> list[TagRecord]:
    return [TagRecord(path=f"bench/area/line{i // 5000}/m{i // 50}/s{i % 50}",
                      asset=f"bench/area/line{i // 5000}/m{i // 50}",
                      role="analog", device=f"plc{i // 5000}", protocol="modbus") for i in range(TAGS)]


def make_batch(k: int, size: int, ids: np.ndarray) -> Batch:
    """Poll round k: ``size`` consecutive tags (round-robin), one second apart per full sweep."""
    j = np.arange(k * size, (k + 1) * size, dtype=np.int64)
    return Batch(ids[j % len(ids)].astype(np.int32), T0 + (j // len(ids)) * SEC,
                 np.sin(j * 0.001) * 50 + 50, np.zeros(size, np.uint8))


def raw_post_rate(server: InfluxDB16, ids: np.ndarray, batch: int, seconds: float) -> float:
    """Points/s of a plain loop of line-protocol POSTs (the ceiling; same line shape)."""
    keys = [f"raw,signal=s{i % 50},asset=m{i // 50}" for i in range(TAGS)]
    pts, k, t0 = 0, 0, time.perf_counter()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        while time.perf_counter() - t0 < seconds:
            j = range(k * batch, (k + 1) * batch)
            vals = (np.sin(np.arange(k * batch, (k + 1) * batch) * 0.001) * 50 + 50).tolist()
            body = "".join(f"{keys[x % TAGS]} value={v!r},quality=0i {T0 + (x // TAGS) * SEC}\n"
                           for x, v in zip(j, vals, strict=True))
            r = c.post("/write", params={"db": server.database, "precision": "ns"}, content=body.encode())
            r.raise_for_status()
            pts += batch
            k += 1
    return pts / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=25_000, help="ingest points/s (default 25,000)")
    ap.add_argument("--batch", type=int, default=2_500, help="points per ingested batch")
    ap.add_argument("--outage", type=float, default=10.0, help="seconds InfluxDB is down")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="tierproof-bench-spool-") as tmp_s:
        tmp = Path(tmp_s)
        server = InfluxDB16(tmp / "influxdb")
        server.start()
        try:
            cfg = InfluxStoreSettings(
                type="influx", api="v1", url=server.url, database=server.database,
                meta_path=str(tmp / "meta.db"),
                spool=SpoolSettings(path=str(tmp / "spool"),
                                    backoff=Backoff(initial_s=0.2, max_s=1.0, jitter=0.0)),
            )
            store = open_store(cfg)
            assert isinstance(store, SpooledStore)
            reg = store.register_tags(tags())
            ids = np.array([reg[t.path] for t in tags()], np.int64)
            interval = args.batch / args.rate
            k = 0

            raw = raw_post_rate(server, ids, args.batch, 3.0)
            t0 = time.perf_counter()
            n_direct = 0
            while time.perf_counter() - t0 < 3.0:
                store.write(make_batch(k, args.batch, ids))
                k += 1
                n_direct += args.batch
            direct = n_direct / (time.perf_counter() - t0)

            server.stop()
            # the spool's own append rate (sink down: every write is one append + fsync)
            t0 = time.perf_counter()
            n_app = 0
            while time.perf_counter() - t0 < 0.5:
                store.write(make_batch(k, args.batch, ids))
                k += 1
                n_app += args.batch
            append = n_app / (time.perf_counter() - t0)

            # the outage at the plant's rate
            t0 = time.perf_counter()
            n = 0
            while time.perf_counter() - t0 < args.outage:
                store.write(make_batch(k, args.batch, ids))
                k += 1
                n += 1
                time.sleep(max(0.0, t0 + n * interval - time.perf_counter()))
            backlog = store.spool.points
            drained0 = store.forward.drained_points

            # recovery: ingest goes on at the same rate while the spool drains
            server.start()
            stop = threading.Event()
            ingested = [0]

            def ingest() -> None:
                nonlocal k
                t1 = time.perf_counter()
                n = 0
                while not stop.is_set():
                    store.write(make_batch(k, args.batch, ids))
                    k += 1
                    n += 1
                    ingested[0] += args.batch
                    time.sleep(max(0.0, t1 + n * interval - time.perf_counter()))

            th = threading.Thread(target=ingest)
            th.start()
            t_up = time.perf_counter()
            while not store.spool.empty and time.perf_counter() - t_up < 600:
                time.sleep(0.01)
            catch_up = time.perf_counter() - t_up
            stop.set()
            th.join()
            drained = store.forward.drained_points - drained0
            drain_rate = drained / catch_up
            ingest_rate = ingested[0] / catch_up
            store.close()
        finally:
            server.stop()

    print(f"InfluxDB 1.6 at 127.0.0.1, batches of {args.batch:,} points, {TAGS:,} tags")
    print(f"  raw line-protocol POST loop (httpx)      {raw:>12,.0f} points/s")
    print(f"  SpooledStore direct (sink up, no spool)  {direct:>12,.0f} points/s  ({direct / raw:.2f}x raw)")
    print(f"  spool append (sink down, fsync/batch)    {append:>12,.0f} points/s")
    print(f"  outage {args.outage:g} s at {args.rate:,.0f} points/s (after the append test) "
          f"-> backlog {backlog:,} points")
    print(f"  catch-up while ingesting {ingest_rate:,.0f} points/s: {catch_up:.2f} s")
    print(f"  drain rate                               {drain_rate:>12,.0f} points/s  "
          f"({drain_rate / args.rate:.1f}x the ingest rate; goal >= 3x)")


if __name__ == "__main__":
    main()
