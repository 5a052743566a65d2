"""Group commit in the store writer, plant-shaped: many devices, small batches per poll.

Run: ``.venv/bin/python bench/bench_group_commit.py [--seconds S] [--devices D] [--points P]``.
Prints figures only; no assertions. Starts its own InfluxDB 1.6 (``tests/influx_servers.py``)
on a free 127.0.0.1 port, with temporary data directories for it, the spool and SQLite.

Workload (issue 14): D devices (10) each delivering P points (125, one per register) per poll,
as fast as the store takes them, into one :class:`~store.writer.Writer` -- the way the
supervisor hands batches over. Two ways a device hands its batch over:

- ``write``: the device awaits ``Writer.write`` (acknowledged when durable, as MQTT QoS 1)
  before its next poll;
- ``submit``: ``Writer.submit`` (as Modbus/OPC UA polls): waits only while 64 batches wait.

Stores, each as ``open_store`` builds it from the config: embedded SQLite; InfluxDB 1.6 via
the spool with ``flush_interval_s: 0`` (one POST per store write while the sink is up); and
with ``flush_interval_s: 1.0`` (one spool append + ``fdatasync`` per store write, posted by
the drain). Each with ``group_max_points: 1`` (every batch a store write of its own: the
writer before group commit) and the default 50,000. Figures: points/s acknowledged (write) or
written (submit, including the final flush), store writes/s, mean batches per write, CPU % of
this process (all threads; 200 % = both cores).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config.store import InfluxStoreSettings, SpoolSettings, SqliteStoreSettings
from store import open_store
from store.base import Store, TagRecord
from store.batch import Batch
from store.writer import DEFAULT_GROUP_MAX_POINTS, Writer
from tests.influx_servers import InfluxDB16

T0 = 1_700_000_000 * 10**9


def tags(devices: int, points: int) -> list[TagRecord]:
    return [
        TagRecord(path=f"plant/a/l/dev{d:02d}/reg{r:03d}", asset=f"plant/a/l/dev{d:02d}",
                  role="gauge", device=f"dev{d:02d}", protocol="modbus")
        for d in range(devices) for r in range(points)
    ]


async def run(store: Store, ids: list[np.ndarray], mode: str, group: int, seconds: float,
              epoch: int) -> dict[str, float]:
    w = Writer(store, group_max_points=group, log_interval_s=1e9)
    rng = np.random.default_rng(1)
    values = [rng.random(len(i)) * 100 for i in ids]
    done = [0]
    stop = time.monotonic() + seconds

    async def device(d: int) -> None:
        poll = 0
        while time.monotonic() < stop:
            # a fresh timestamp per poll: no overwrites (1 us apart, epoch: per case)
            b = Batch.of(ids[d], T0 + epoch + poll * 1_000, values[d])
            poll += 1
            if mode == "write":
                await w.write(b)
            else:
                await w.submit(b)
                await asyncio.sleep(0)  # a poll yields to the loop at least once
            done[0] += len(b)

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(device(d) for d in range(len(ids))))
    await w.close()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    st = w.stats
    assert st.batches_failed == 0, st.last_error
    return {"points_s": st.points_written / wall, "writes_s": st.groups_written / wall,
            "per_write": st.batches_written / max(1, st.groups_written), "cpu": 100 * cpu / wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--devices", type=int, default=10)
    p.add_argument("--points", type=int, default=125)
    args = p.parse_args()
    print(f"{args.devices} devices x {args.points} points per poll, {args.seconds:g} s per case")
    print(f"{'store':44} {'mode':6} {'group':>6} {'points/s':>10} {'writes/s':>9} "
          f"{'batch/wr':>8} {'CPU %':>6}")
    with tempfile.TemporaryDirectory(prefix="bench_group_") as d:
        root = Path(d)
        server = InfluxDB16(root / "influxdb")
        server.start()
        try:
            cases: list[tuple[str, object]] = [
                ("SQLite", SqliteStoreSettings(path=str(root / "t.db"))),
            ]
            for flush in (0.0, 1.0):
                cases.append((f"InfluxDB 1.6 via spool, flush_interval_s {flush:g}",
                              InfluxStoreSettings(
                                  type="influx", api="v1", url=server.url,
                                  database=server.database, flush_interval_s=flush,
                                  meta_path=str(root / f"meta{flush}.db"),
                                  spool=SpoolSettings(path=str(root / f"spool{flush}")))))
            epoch = 0
            for name, settings in cases:
                store = open_store(settings)  # type: ignore[arg-type]
                try:
                    reg = store.register_tags(tags(args.devices, args.points))
                    recs = tags(args.devices, args.points)
                    ids = [np.array([reg[t.path] for t in recs[k * args.points:(k + 1) * args.points]])
                           for k in range(args.devices)]
                    for mode in ("write", "submit"):
                        for group in (1, DEFAULT_GROUP_MAX_POINTS):
                            epoch += 10**12  # 1000 s apart: a fresh range of timestamps
                            r = asyncio.run(run(store, ids, mode, group, args.seconds, epoch))
                            print(f"{name:44} {mode:6} {group:>6} {r['points_s']:>10,.0f} "
                                  f"{r['writes_s']:>9,.1f} {r['per_write']:>8.1f} {r['cpu']:>6.0f}",
                                  flush=True)
                finally:
                    store.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
