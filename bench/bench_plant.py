"""A benchmark shaped like a plant (issue 14 item 4): many devices, small batches per poll.

Run: ``.venv/bin/python bench/bench_plant.py [--seconds S] [--rounds R] [--devices D --tags T]
[--skip-a | --skip-b]``. Prints figures only; no assertions. Ends with one JSON line:
``{"influx_ratio", "sqlite_ratio", "mixed_points_per_s", "p99_latency_s", "rss_10k_tags_mb"}``.

Every measured phase runs in a **fresh spawned process** (so its CPU % and peak RSS are its
own: nothing left over from an earlier phase), and the devices it reads run in another child
process (a PLC is another machine; serving must not eat the measured process' CPU).

Scenario A -- 10 Modbus TCP devices (10 of our simulator servers, each on its own port) x 125
holding registers, one point per register, polled as fast as they answer, for S seconds
(``--seconds``, 60), into (a) the embedded SQLite store and (b) a real InfluxDB 1.6
(``tests/influx_servers.py``, started here on a free port with a temporary data directory):

- tierproof: :class:`~api.gateway.Gateway` with ``isolate=True`` as ``tierproof run`` builds
  it -- its Modbus collectors under the supervisor, the writer (group commit), the store from
  ``open_store`` -- with shipped settings (only the poll interval is the shortest allowed,
  1 ms, so the devices are polled as fast as they answer, and the store's paths are temporary);
- raw: plain asyncio + pymodbus, one client per device reading the same 125 registers back to
  back; into SQLite an ``executemany`` of the poll's points and a commit (WAL, synchronous
  NORMAL: the store's shipped durability) per poll; into InfluxDB httpx POSTing 5,000-point
  line-protocol batches (uncompressed: loopback), the poll that fills a batch awaiting its POST.

Alternating rounds (``--rounds``, 2) of S / R seconds each, so that load from elsewhere on the
shared machine hits both alike; rates are totals over the rounds.

Figures: registers/s **durably stored** (tierproof: points its store's ``write`` returned for,
the writer's acknowledgement, counted from the first connect to the end of the final flush;
raw: points committed / POSTed with a 2xx), CPU % of the measuring process (all its threads;
200 % = both cores; the device servers and InfluxDB are other processes), peak RSS of that
process, and p99 source->stored latency: for each point, the time its store write returned
(tierproof: the store's ``write``, wrapped on the instance to note the time; raw: commit / POST
returned) minus its poll timestamp (the sample's ``ts_ns``, taken by the collector when the
answer arrived). For InfluxDB with shipped settings (``flush_interval_s: 0``) the store's write
returns once InfluxDB answered the POST; if InfluxDB is down it returns once the spool has the
points (fsync), which is the durable point then -- here InfluxDB stays up.

Scenario B -- the whole plant mixed: D devices (``--devices``, 100) x T tags (``--tags``, 50)
at 1 Hz, a third each Modbus (our simulator servers), OPC UA (our asyncua simulator server,
subscriptions) and MQTT (JSON messages from a publisher process through Mosquitto,
``tests/mosquitto.py``), into the embedded store, for S seconds: sustained points/s, p99
source->stored latency, peak RSS of the gateway process with D x T tags.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REGISTERS = 125
INFLUX_BATCH = 5_000


# ---------------------------------------------------------------- latency bookkeeping


class Latency:
    """Weighted samples of (ack time - poll time): a batch's points share few poll times."""

    def __init__(self) -> None:
        self.lat: list[np.ndarray] = []
        self.cnt: list[np.ndarray] = []
        self.points = 0

    def note(self, ts_ns: np.ndarray, now_ns: int | None = None) -> None:
        now = time.time_ns() if now_ns is None else now_ns
        u, c = np.unique(ts_ns, return_counts=True)
        self.lat.append(now - u)
        self.cnt.append(c)
        self.points += len(ts_ns)

    def p(self, q: float) -> float:
        if not self.lat:
            return float("nan")
        lat, cnt = np.concatenate(self.lat), np.concatenate(self.cnt)
        order = np.argsort(lat)
        cum = np.cumsum(cnt[order])
        k = int(np.searchsorted(cum, q * cum[-1]))
        return float(lat[order][min(k, len(lat) - 1)]) / 1e9


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def figures(points: int, wall: float, cpu: float, lat: Latency, **extra: Any) -> dict[str, Any]:
    return {"points": points, "seconds": wall, "cpu_s": cpu, "p50": lat.p(0.50),
            "p99": lat.p(0.99), "rss_mb": peak_rss_mb(), **extra}


def quiet() -> None:
    """What ``tierproof run`` does: the protocol stacks log at WARNING and above only."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    for noisy in ("pymodbus", "asyncua", "amqtt", "transitions", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# ---------------------------------------------------------------- device servers (child process)


def serve_modbus(count: int, registers: int, conn: Connection) -> None:
    """Child process: ``count`` Modbus TCP servers, one unit of ``registers`` holding registers
    each (values change every second, so on-change storage would matter if it applied)."""
    quiet()
    from simulators.modbus import ModbusSimServer, RegisterImage

    async def run() -> None:
        images = []
        for d in range(count):
            img = RegisterImage()
            img.set_registers("holding", 0, [(d * 1000 + i) % 65536 for i in range(registers)])
            images.append(img)
        servers = [ModbusSimServer(units={1: img}) for img in images]
        for s in servers:
            await s.start()
        conn.send([s.port for s in servers])
        loop = asyncio.get_running_loop()
        stop = loop.run_in_executor(None, conn.recv)
        k = 0
        while not stop.done():
            await asyncio.sleep(1.0)
            k += 1
            for d, img in enumerate(images):
                img.set_registers("holding", 0, [(d * 1000 + i + k) % 65536 for i in range(registers)])
        for s in servers:
            await s.stop()

    asyncio.run(run())


# ---------------------------------------------------------------- scenario A phases (spawned)


def modbus_settings(ports: list[int], registers: int, poll_s: float, store: dict[str, Any]) -> Any:
    from config.settings import Settings

    assets = [{"path": f"plant/area/line/m{d:03d}"} for d in range(len(ports))]
    devices = [{
        "protocol": "modbus", "name": f"plc{d:03d}", "host": "127.0.0.1", "port": port,
        "poll_interval_s": poll_s,
        "tags": [{"name": f"r{r:03d}", "asset": f"plant/area/line/m{d:03d}", "address": r}
                 for r in range(registers)],
    } for d, port in enumerate(ports)]
    return Settings.model_validate({"assets": assets, "devices": devices, "store": store})


def timed_store(store: Any, lat: Latency) -> None:
    """Note the time each store write returns (the writer's acknowledgement) per point."""
    write = store.write

    def noted(batch: Any) -> None:
        write(batch)
        lat.note(batch.ts_ns)

    store.write = noted  # on the instance: the gateway and its writer call it


def tierproof_phase(settings_json: str, seconds: float) -> dict[str, Any]:
    """The gateway as ``tierproof run`` builds it, collecting for ``seconds``."""
    quiet()
    from api.gateway import Gateway
    from config.settings import Settings
    from store import open_store

    settings = Settings.model_validate_json(settings_json)
    lat = Latency()
    store = open_store(settings.store)
    timed_store(store, lat)

    async def run() -> tuple[float, float, int]:
        c0, t0 = time.process_time(), time.perf_counter()
        gw = Gateway(settings, store=store, isolate=True)
        async with gw:
            await asyncio.sleep(seconds)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        st = gw.writer.stats
        if st.batches_failed:
            raise RuntimeError(f"store writes failed: {st.last_error}")
        return wall, cpu, st.points_written

    try:
        wall, cpu, written = asyncio.run(run())
    finally:
        store.close()
    return figures(lat.points, wall, cpu, lat, writer_points=written)


async def _raw_poll(port: int, registers: int, deadline: float,
                    sink: Callable[[int, np.ndarray, list[int]], Any]) -> None:
    from pymodbus.client import AsyncModbusTcpClient

    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0, reconnect_delay=0)
    if not await client.connect():
        raise RuntimeError(f"raw: cannot connect to 127.0.0.1:{port}")
    try:
        while time.perf_counter() < deadline:
            rr = await client.read_holding_registers(0, count=registers, device_id=1)
            if rr.isError():
                raise RuntimeError(f"raw read failed: {rr}")
            r = sink(port, np.full(registers, time.time_ns(), np.int64), rr.registers)
            if r is not None:
                await r
    finally:
        client.close()


def raw_sqlite_phase(ports: list[int], registers: int, seconds: float, db: str) -> dict[str, Any]:
    """asyncio + pymodbus, an executemany and a commit per poll."""
    quiet()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS samples (tag_id INTEGER, ts INTEGER, value REAL, "
                 "quality INTEGER)")
    lat = Latency()
    base = {p: d * registers for d, p in enumerate(ports)}

    def sink(port: int, ts: np.ndarray, values: list[int]) -> None:
        t = int(ts[0])
        b = base[port]
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO samples VALUES (?, ?, ?, 0)",
                         [(b + i, t, float(v)) for i, v in enumerate(values)])
        conn.execute("COMMIT")
        lat.note(ts)

    async def run() -> None:
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*(_raw_poll(p, registers, deadline, sink) for p in ports))

    c0, t0 = time.process_time(), time.perf_counter()
    asyncio.run(run())
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    conn.close()
    return figures(lat.points, wall, cpu, lat)


def raw_influx_phase(ports: list[int], registers: int, seconds: float, url: str,
                     database: str) -> dict[str, Any]:
    """asyncio + pymodbus + httpx, 5,000-point line-protocol POSTs."""
    quiet()
    import httpx

    lat = Latency()
    lines: list[str] = []
    stamps: list[np.ndarray] = []
    base = {p: d for d, p in enumerate(ports)}

    async def run() -> None:
        async with httpx.AsyncClient(timeout=30) as client:

            async def post() -> None:
                if not lines:
                    return
                body = "".join(lines).encode()
                ts = np.concatenate(stamps)
                lines.clear()
                stamps.clear()
                r = await client.post(f"{url}/write", params={"db": database, "precision": "ns"},
                                      content=body)
                if r.status_code != 204:
                    raise RuntimeError(f"raw POST: {r.status_code} {r.text[:200]}")
                lat.note(ts)

            def sink(port: int, ts: np.ndarray, values: list[int]) -> Any:
                d, t = base[port], int(ts[0])
                lines.append("".join(
                    f"raw,device=plc{d:03d},tag=m{d:03d}/r{i:03d} value={v}.0 {t}\n"
                    for i, v in enumerate(values)))
                stamps.append(ts)
                if sum(len(s) for s in stamps) >= INFLUX_BATCH:
                    return post()
                return None

            deadline = time.perf_counter() + seconds
            await asyncio.gather(*(_raw_poll(p, registers, deadline, sink) for p in ports))
            await post()

    c0, t0 = time.process_time(), time.perf_counter()
    asyncio.run(run())
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return figures(lat.points, wall, cpu, lat)


def in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run one phase in a fresh spawned process (its own CPU and peak RSS)."""
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
        return ex.submit(fn, *args).result()


def add(total: dict[str, Any], r: dict[str, Any]) -> None:
    for k in ("points", "seconds", "cpu_s"):
        total[k] = total.get(k, 0) + r[k]
    for k in ("p99", "rss_mb"):
        total[k] = max(total.get(k, 0.0), r[k])


def line(name: str, r: dict[str, Any]) -> str:
    return (f"{name:34} {r['points'] / r['seconds']:>11,.0f} {100 * r['cpu_s'] / r['seconds']:>6.0f} "
            f"{r['rss_mb']:>8.0f} {r['p99']:>8.3f}")


def scenario_a(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    from tests.influx_servers import InfluxDB16

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve_modbus, args=(args.a_devices, REGISTERS, child), daemon=True)
    proc.start()
    influx = InfluxDB16(tmp / "influxdb")
    influx.start()
    try:
        ports: list[int] = parent.recv()
        print(f"Scenario A: {len(ports)} Modbus TCP devices x {REGISTERS} holding registers, "
              f"polled flat out, {args.seconds:g} s in {args.rounds} alternating rounds per case")
        print(f"{'case':34} {'registers/s':>11} {'CPU %':>6} {'RSS MiB':>8} {'p99 s':>8}")
        per = args.seconds / args.rounds
        totals: dict[str, dict[str, Any]] = {k: {} for k in ("raw_sqlite", "tp_sqlite",
                                                             "raw_influx", "tp_influx")}
        for k in range(args.rounds):
            sqlite_store = {"type": "sqlite", "path": str(tmp / f"tp{k}.db")}
            influx_store = {"type": "influx", "api": "v1", "url": influx.url,
                            "database": influx.database, "meta_path": str(tmp / f"meta{k}.db"),
                            "spool": {"path": str(tmp / f"spool{k}")}}
            add(totals["raw_sqlite"], in_child(raw_sqlite_phase, ports, REGISTERS, per,
                                               str(tmp / f"raw{k}.db")))
            add(totals["tp_sqlite"], in_child(tierproof_phase, modbus_settings(
                ports, REGISTERS, 0.001, sqlite_store).model_dump_json(), per))
            add(totals["raw_influx"], in_child(raw_influx_phase, ports, REGISTERS, per,
                                               influx.url, influx.database))
            add(totals["tp_influx"], in_child(tierproof_phase, modbus_settings(
                ports, REGISTERS, 0.001, influx_store).model_dump_json(), per))
        names = {"raw_sqlite": "raw asyncio loop -> SQLite", "tp_sqlite": "tierproof -> SQLite store",
                 "raw_influx": "raw asyncio loop -> InfluxDB 1.6", "tp_influx": "tierproof -> InfluxDB 1.6"}
        for key, name in names.items():
            print(line(name, totals[key]), flush=True)

        def rate(key: str) -> float:
            return float(totals[key]["points"] / totals[key]["seconds"])

        out = {"sqlite_ratio": rate("tp_sqlite") / rate("raw_sqlite"),
               "influx_ratio": rate("tp_influx") / rate("raw_influx")}
        print(f"ratio tierproof/raw: SQLite {out['sqlite_ratio']:.2f} (goal >= 0.9), "
              f"InfluxDB {out['influx_ratio']:.2f} (goal >= 0.8)", flush=True)
        return out
    finally:
        parent.send("stop")
        proc.join(10)
        influx.stop()


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="measured time per case")
    ap.add_argument("--rounds", type=int, default=2, help="scenario A: alternating rounds")
    ap.add_argument("--a-devices", type=int, default=10, help="scenario A: Modbus devices")
    ap.add_argument("--devices", type=int, default=100, help="scenario B: devices")
    ap.add_argument("--tags", type=int, default=50, help="scenario B: tags per device")
    ap.add_argument("--skip-a", action="store_true")
    ap.add_argument("--skip-b", action="store_true")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f} ({os.cpu_count()} CPUs)", flush=True)
    result: dict[str, float | None] = {"influx_ratio": None, "sqlite_ratio": None,
                                       "mixed_points_per_s": None, "p99_latency_s": None,
                                       "rss_10k_tags_mb": None}
    with tempfile.TemporaryDirectory(prefix="bench_plant_") as d:
        tmp = Path(d)
        if not args.skip_a:
            result.update(scenario_a(args, tmp))
        if not args.skip_b:
            result.update(scenario_b(args, tmp))
    print(f"load average at end: {os.getloadavg()[0]:.2f}", flush=True)
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()}))


def scenario_b(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    raise NotImplementedError


if __name__ == "__main__":
    main()
