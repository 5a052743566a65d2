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
  line-protocol batches (uncompressed: loopback; tierproof's shipped ``gzip: auto`` is off there
  too), the poll that fills a batch awaiting its POST. Beside each InfluxDB phase: InfluxDB's CPU
  (% and microseconds per point stored) and how busy the machine's cores were.

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
at 1 Hz, a third each Modbus (our simulator servers, ``--modbus-procs`` processes), OPC UA
(our asyncua simulator server, ``--opcua-servers`` processes, subscriptions with the shipped
sampling interval unless ``--opcua-sampling-ms``) and MQTT (JSON messages from
``--mqtt-procs`` publisher processes through Mosquitto, ``tests/mosquitto.py``), into the
embedded store, for S seconds after a warm-up: sustained points/s, p99 source->stored latency
(per protocol, and OPC UA's broken down by its three timestamps), peak RSS of the gateway
process with D x T tags, and the CPU seconds of every process in the window (the gateway,
each group of simulators, Mosquitto): on a shared machine the simulators compete with the
gateway. ``--modbus-hz`` / ``--opcua-hz`` / ``--mqtt-hz`` set each protocol's rate (default
``--hz``), ``--protocols`` leaves protocols out (their devices go to the others).

Where offered and stored points part, per protocol in the window: nominal (configured),
offered (the simulators' own counters: registers answered, bulk values written, values
published), received (batches the collectors handed the supervisor), stored (the store's write
returned); Modbus poll ticks skipped; the collectors' loop lag and, from a 20 ms probe on that
loop, how much of it was the loop's own callbacks, the gateway's other threads, or waiting for
a core; whether Mosquitto logged dropping queued messages. Over the whole run it raises if the
store acknowledged more than the collectors handed over or less than the supervisor finished
delivering. ``--broker-config LINE`` adds a line to Mosquitto's config.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import resource
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
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
        self.frozen = False  # the window closed: later acknowledgements do not count

    def reset(self) -> None:
        self.lat, self.cnt, self.points = [], [], 0

    def note(self, ts_ns: np.ndarray, now_ns: int | None = None) -> None:
        if self.frozen:
            return
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


def serve_modbus(count: int, registers: int, counter: Any, conn: Connection) -> None:
    """Child process: ``count`` Modbus TCP servers, one unit of ``registers`` holding registers
    each (values change every second, so on-change storage would matter if it applied).
    ``counter`` (a shared ``multiprocessing.Value`` or None): the registers the servers have
    answered read requests for so far, updated every 0.1 s (what the devices offered)."""
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
        nxt = loop.time()
        while not stop.done():
            await asyncio.sleep(0.1)
            if counter is not None:
                counter.value = sum(s.requests[3] for s in servers) * registers
            if loop.time() < nxt + 1.0:
                continue
            nxt += 1.0
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


PROTOCOLS = ("modbus", "opcua", "mqtt")


def timed_store(store: Any, lat: Latency, by_protocol: dict[str, Latency] | None = None,
                protocol_of: list[np.ndarray] | None = None,
                totals: np.ndarray | None = None) -> None:
    """Note the time each store write returns (the writer's acknowledgement) per point; with
    ``by_protocol``, also per protocol (``protocol_of[0]``: tag id -> index in PROTOCOLS, set
    once the gateway registered its tags); ``totals`` (int64[3]): every point stored per
    protocol over the gateway's life, window or not."""
    write = store.write

    def noted(batch: Any) -> None:
        write(batch)
        now = time.time_ns()
        lat.note(batch.ts_ns, now)
        if by_protocol is not None and protocol_of:
            which = protocol_of[0][np.minimum(batch.tag_id, len(protocol_of[0]) - 1)]
            if totals is not None:
                totals[:] += np.bincount(which[which >= 0], minlength=len(PROTOCOLS))[:len(PROTOCOLS)]
            for k, name in enumerate(PROTOCOLS):
                mask = which == k
                if mask.any():
                    by_protocol[name].note(batch.ts_ns[mask], now)

    store.write = noted  # on the instance: the gateway and its writer call it


def tierproof_phase(settings_json: str, seconds: float, warmup: float = 0.0) -> dict[str, Any]:
    """The gateway as ``tierproof run`` builds it, collecting for ``seconds``.

    ``warmup`` 0: the time counted runs from before the gateway starts (connects) until it has
    stopped and flushed, and every point acknowledged counts. ``warmup`` > 0 (scenario B, paced
    sources): the window opens ``warmup`` s after the start (connections, subscriptions and
    their initial values are outside it) and the points acknowledged within it count."""
    quiet()
    from api.gateway import Gateway
    from config.settings import Settings
    from store import open_store

    settings = Settings.model_validate_json(settings_json)
    lat = Latency()
    by_protocol = {p: Latency() for p in PROTOCOLS}
    protocol_of: list[np.ndarray] = []
    store = open_store(settings.store)
    timed_store(store, lat, by_protocol, protocol_of)

    async def run() -> tuple[float, float, int, int]:
        c0, t0 = time.process_time(), time.perf_counter()
        gw = Gateway(settings, store=store, isolate=True)
        lookup = np.full(max(gw.tag_ids.values()) + 2, -1, np.int8)
        for path, tid in gw.tag_ids.items():
            proto = path.split("/")[1]
            lookup[tid] = PROTOCOLS.index(proto) if proto in PROTOCOLS else -1
        protocol_of.append(lookup)
        async with gw:
            if warmup > 0:
                await asyncio.sleep(warmup)
                lat.reset()
                for x in by_protocol.values():
                    x.reset()
                c0, t0 = time.process_time(), time.perf_counter()
            await asyncio.sleep(seconds)
            if warmup > 0:
                lat.frozen = True
                for x in by_protocol.values():
                    x.frozen = True
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if warmup <= 0:
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        st = gw.writer.stats
        if st.batches_failed:
            raise RuntimeError(f"store writes failed: {st.last_error}")
        groups.append((st.batches_written, st.groups_written))
        return wall, cpu, st.points_written, len(gw.tag_ids)

    groups: list[tuple[int, int]] = []
    try:
        wall, cpu, written, ntags = asyncio.run(run())
    finally:
        store.close()
    return figures(lat.points, wall, cpu, lat, writer_points=written, tags=ntags,
                   writes=groups[0][1] if groups else 0, batches=groups[0][0] if groups else 0,
                   protocols={p: (x.points / wall, x.p(0.5), x.p(0.99))
                              for p, x in by_protocol.items() if x.points})


async def _raw_poll(port: int, registers: int, deadline: float,
                    sink: Callable[[int, np.ndarray, Sequence[int]], Any]) -> None:
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

    def sink(port: int, ts: np.ndarray, values: Sequence[int]) -> None:
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

            def sink(port: int, ts: np.ndarray, values: Sequence[int]) -> Any:
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


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of every core since boot (``/proc/stat``; idle and iowait are idle)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


def with_influxd(server: Any, fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``fn(*args)``'s figures with the CPU seconds InfluxDB used meanwhile (``influxd_cpu_s``)
    and how busy the machine's cores were (``machine_busy``, 0-1, the phase's process start
    and stop included)."""
    c0, (b0, t0) = server.cpu_s(), machine_cpu()
    r = fn(*args)
    b1, t1 = machine_cpu()
    r["influxd_cpu_s"] = server.cpu_s() - c0
    r["machine_busy"] = (b1 - b0) / max(1, t1 - t0)
    return r


def influxd(r: dict[str, Any]) -> str:
    """InfluxDB's CPU % over a phase and its CPU microseconds per point stored (and how busy
    the machine was, for one phase)."""
    return (f"influxd {100 * r['influxd_cpu_s'] / r['seconds']:.0f}% CPU, "
            f"{1e6 * r['influxd_cpu_s'] / max(1, r['points']):.2f} us/point"
            + (f", machine {100 * r['machine_busy']:.0f}% busy" if "machine_busy" in r else ""))


def add(total: dict[str, Any], r: dict[str, Any]) -> None:
    for k in ("points", "seconds", "cpu_s", "writes", "batches", "influxd_cpu_s"):
        total[k] = total.get(k, 0) + r.get(k, 0)
    for k in ("p99", "rss_mb"):
        total[k] = max(total.get(k, 0.0), r[k])


def line(name: str, r: dict[str, Any]) -> str:
    return (f"{name:34} {r['points'] / r['seconds']:>11,.0f} {100 * r['cpu_s'] / r['seconds']:>6.0f} "
            f"{r['rss_mb']:>8.0f} {r['p99']:>8.3f}")


def scenario_a(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    from tests.influx_servers import InfluxDB16

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve_modbus, args=(args.a_devices, REGISTERS, None, child),
                       daemon=True)
    proc.start()
    influx = InfluxDB16(tmp / "influxdb")
    influx.start()
    try:
        ports: list[int] = parent.recv()
        print(f"Scenario A: {len(ports)} Modbus TCP devices x {REGISTERS} holding registers, "
              f"polled flat out, {args.seconds:g} s in {args.rounds} alternating rounds per case"
              + (f"; InfluxDB store with gzip: {args.influx_gzip}" if args.influx_gzip != "auto"
                 else "")
              + (f"; InfluxDB posts_in_flight: {args.influx_posts_in_flight}"
                 if args.influx_posts_in_flight else ""))
        print(f"{'case':34} {'registers/s':>11} {'CPU %':>6} {'RSS MiB':>8} {'p99 s':>8}")
        per = args.seconds / args.rounds
        totals: dict[str, dict[str, Any]] = {k: {} for k in ("raw_sqlite", "tp_sqlite",
                                                             "raw_influx", "tp_influx")}
        stores = set(args.a_stores.split(","))
        # each round's ratios (tierproof / raw of that round), with the load average beside
        rounds: dict[str, list[tuple[float, float]]] = {"sqlite": [], "influx": []}

        def one_round(kind: str, raw: dict[str, Any], tp: dict[str, Any]) -> None:
            add(totals[f"raw_{kind}"], raw)
            add(totals[f"tp_{kind}"], tp)
            ratio = (tp["points"] / tp["seconds"]) / (raw["points"] / raw["seconds"])
            rounds[kind].append((ratio, os.getloadavg()[0]))
            print(f"  round {len(rounds[kind])} {kind}: raw {raw['points'] / raw['seconds']:,.0f}, "
                  f"tierproof {tp['points'] / tp['seconds']:,.0f} points/s, ratio {ratio:.2f}, "
                  f"p99 {raw['p99']:.2f} / {tp['p99']:.2f} s, {tp['batches'] / max(1, tp['writes']):.1f} "
                  f"polls per store write (load {os.getloadavg()[0]:.1f})"
                  + (f"; raw {influxd(raw)}, tierproof {influxd(tp)}" if kind == "influx" else ""),
                  flush=True)

        # --influx-group-max-points a,b,...: each round measures tierproof with each (0: shipped)
        groups = [int(x) for x in args.influx_group_max_points.split(",")]
        other: dict[int, list[float]] = {g: [] for g in groups[1:]}
        for k in range(args.rounds):
            sqlite_store = {"type": "sqlite", "path": str(tmp / f"tp{k}.db")}
            influx_store: dict[str, Any] = {
                "type": "influx", "api": "v1", "url": influx.url, "database": influx.database,
                "meta_path": str(tmp / f"meta{k}.db"), "spool": {"path": str(tmp / f"spool{k}")}}
            if args.influx_gzip != "auto":
                influx_store["gzip"] = args.influx_gzip == "true"
            if args.influx_posts_in_flight:
                influx_store["posts_in_flight"] = args.influx_posts_in_flight
            if "sqlite" in stores:
                one_round("sqlite", in_child(raw_sqlite_phase, ports, REGISTERS, per,
                                             str(tmp / f"raw{k}.db")),
                          in_child(tierproof_phase, modbus_settings(
                              ports, REGISTERS, 0.001, sqlite_store).model_dump_json(), per))
            if "influx" in stores:
                raw = with_influxd(influx, in_child, raw_influx_phase, ports, REGISTERS, per,
                                   influx.url, influx.database)
                for j, gmp in enumerate(groups):
                    if gmp:
                        influx_store["group_max_points"] = gmp
                    tp = with_influxd(influx, in_child, tierproof_phase, modbus_settings(
                        ports, REGISTERS, 0.001, influx_store).model_dump_json(), per)
                    if j == 0:
                        one_round("influx", raw, tp)
                        continue
                    # another group_max_points against the same raw round: compared, not totalled
                    ratio = (tp["points"] / tp["seconds"]) / (raw["points"] / raw["seconds"])
                    other[gmp].append(ratio)
                    print(f"  round {k + 1} influx, group_max_points {gmp:,}: tierproof "
                          f"{tp['points'] / tp['seconds']:,.0f} points/s, ratio {ratio:.2f}, p99 "
                          f"{tp['p99']:.2f} s, {tp['batches'] / max(1, tp['writes']):.1f} polls per "
                          f"store write (load {os.getloadavg()[0]:.1f})", flush=True)
        names = {"raw_sqlite": "raw asyncio loop -> SQLite", "tp_sqlite": "tierproof -> SQLite store",
                 "raw_influx": "raw asyncio loop -> InfluxDB 1.6", "tp_influx": "tierproof -> InfluxDB 1.6"}
        for key, name in names.items():
            t = totals[key]
            if not t:
                continue
            print(line(name, t) + (f"  ({t['batches'] / t['writes']:.1f} polls per store write)"
                                   if t.get("writes") else "")
                  + (f"  ({influxd(t)})" if "influx" in key else ""), flush=True)

        def rate(key: str) -> float:
            return float(totals[key]["points"] / totals[key]["seconds"])

        out = {f"{kind}_ratio": rate(f"tp_{kind}") / rate(f"raw_{kind}")
               for kind in ("sqlite", "influx") if kind in stores}
        for kind, goal in (("sqlite", 0.9), ("influx", 0.8)):
            if kind in stores:
                r = sorted(x for x, _ in rounds[kind])
                loads = [x for _, x in rounds[kind]]
                print(f"ratio tierproof/raw, {kind}: {out[f'{kind}_ratio']:.2f} over all rounds "
                      f"(goal >= {goal}); per round median {float(np.median(r)):.2f}, range "
                      f"{r[0]:.2f}-{r[-1]:.2f}, {sum(x >= goal for x in r)} of {len(r)} rounds at "
                      f"the goal; load average {min(loads):.1f}-{max(loads):.1f}", flush=True)
        for gmp, rs in other.items():
            print(f"ratio tierproof/raw, influx with group_max_points {gmp:,}: per round median "
                  f"{float(np.median(rs)):.2f}, range {min(rs):.2f}-{max(rs):.2f}", flush=True)
        return out
    finally:
        parent.send("stop")
        proc.join(10)
        influx.stop()


# ---------------------------------------------------------------- scenario B


def serve_opcua_bulk(variables: int, interval_s: float, counter: Any, conn: Connection) -> None:
    """Child process: our OPC UA simulator with ``variables`` bulk Doubles changing every
    ``interval_s`` (beside the demo plant's OPC UA machine), until told to stop. ``counter``:
    the bulk values written so far (ticks x ``variables``: what the server offered)."""
    quiet()
    from asyncua import ua

    from config import load_settings, shipped_config
    from simulators import Plant
    from simulators.opcua import serve_opcua

    async def run() -> None:
        plant = Plant(load_settings(shipped_config("demo.yaml")))
        async with serve_opcua(plant, ["demo/assembly/line3/assembler-01"],
                               extra_variables=variables, interval_s=interval_s,
                               security=[ua.SecurityPolicyType.NoSecurity]) as server:
            conn.send((server.endpoint, server.namespace_index))
            stop = asyncio.get_running_loop().run_in_executor(None, conn.recv)
            first = server._tick  # the values before the first read are not offered changes
            while not stop.done():
                await asyncio.sleep(0.1)
                counter.value = (server._tick - first) * variables

    asyncio.run(run())


def publish_mqtt(host: str, port: int, first: int, machines: int, tags: int, interval_s: float,
                 counter: Any, conn: Connection) -> None:
    """Child process: every ``interval_s`` one JSON document per machine ``first`` ..
    ``first + machines - 1`` (QoS 1) with ``tags`` values and its publish time in ms (the
    source timestamp), until told to stop. The documents are formatted from a template (one
    ``%`` per document), so that the publisher spends little CPU per value. ``counter``: the
    values published so far (documents x ``tags``)."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"plant-pub-{os.getpid()}")
    client.max_inflight_messages_set(1000)
    client.connect(host, port, 60)
    client.loop_start()
    conn.send("ready")
    # values cycle through 100 documents per machine (each value changes every cycle)
    template = '{"ts":%d,"v":{' + ",".join(f'"t{t:03d}":%s' for t in range(tags)) + "}}"
    cycle = [tuple(f"{20.0 + (k + t) % 100 * 0.25:g}" for t in range(tags)) for k in range(100)]
    topics = [f"plant/L1/m{m:03d}" for m in range(first, first + machines)]
    k, sent = 0, 0
    nxt = time.monotonic()
    while not conn.poll(0):
        for m, topic in enumerate(topics):
            doc = template % (time.time_ns() // 1_000_000, *cycle[(k + m) % 100])
            client.publish(topic, doc, qos=1)
            sent += 1
        counter.value = sent * tags
        k += 1
        nxt += interval_s
        time.sleep(max(0.0, nxt - time.monotonic()))
    client.disconnect()
    client.loop_stop()
    conn.send(sent)


def split(devices: int, protocols: Sequence[str] = PROTOCOLS) -> tuple[int, int, int]:
    """Modbus, OPC UA, MQTT devices: an equal share each of those in ``protocols`` (all three:
    34/33/33, the first taking the remainder), none of the others."""
    k = len(protocols)
    share = devices // k
    n = [share if p in protocols else 0 for p in PROTOCOLS]
    n[PROTOCOLS.index(protocols[0])] += devices - share * k
    return n[0], n[1], n[2]


def mixed_settings(n: tuple[int, int, int], tags: int, hz: tuple[float, float, float],
                   modbus_ports: list[int],
                   opcua: list[tuple[str, int]], broker_url: str, db: str,
                   opcua_sampling_ms: float | None = None) -> Any:
    from config.settings import Settings

    _, n_ua, n_mq = n
    assets: list[dict[str, Any]] = []
    devices: list[dict[str, Any]] = []
    for d, port in enumerate(modbus_ports):
        asset = f"plant/modbus/line/m{d:03d}"
        assets.append({"path": asset})
        devices.append({"protocol": "modbus", "name": f"plc{d:03d}", "host": "127.0.0.1",
                        "port": port, "poll_interval_s": 1.0 / hz[0],
                        "tags": [{"name": f"t{t:03d}", "asset": asset, "address": t}
                                 for t in range(tags)]})
    first: dict[tuple[str, int], int] = {}
    for d in range(n_ua):
        endpoint, ns = opcua[d]
        j = d - first.setdefault(opcua[d], d)  # the device's index on its server
        asset = f"plant/opcua/line/m{d:03d}"
        assets.append({"path": asset})
        devices.append({"protocol": "opcua", "name": f"ua{d:03d}", "endpoint": endpoint,
                        "mode": "subscribe", "timeout_s": 30.0,
                        **({} if opcua_sampling_ms is None
                           else {"sampling_interval_ms": opcua_sampling_ms}),
                        "tags": [{"name": f"t{t:03d}", "asset": asset,
                                  "node_id": f"ns={ns};s=bulk/{j * tags + t}"}
                                 for t in range(tags)]})
    mq_tags = []
    for d in range(n_mq):
        asset = f"plant/mqtt/L1/m{d:03d}"
        assets.append({"path": asset})
        mq_tags += [{"asset": asset, "name": f"t{t:03d}", "field": f"v.t{t:03d}"}
                    for t in range(tags)]
    if n_mq:
        devices.append({"protocol": "mqtt", "name": "broker", "broker": broker_url, "qos": 1,
                        "subscriptions": [{"topic": "plant/L1/+", "format": "json",
                                           "template": "plant/{line}/{asset}",
                                           "timestamp_field": "ts"}],
                        "tags": mq_tags})
    return Settings.model_validate({"assets": assets, "devices": devices,
                                    "store": {"type": "sqlite", "path": db}})


class Hist:
    """Counts of durations in 1 ms bins up to 60 s (a fixed size: measuring must not add to
    the RSS measured); for the OPC UA breakdown."""

    def __init__(self) -> None:
        self.counts = np.zeros(60_001, np.int64)

    def note(self, ns: np.ndarray) -> None:
        ms = np.clip(ns // 1_000_000, 0, len(self.counts) - 1)
        self.counts += np.bincount(ms, minlength=len(self.counts))

    def p(self, q: float) -> float:
        total = int(self.counts.sum())
        if not total:
            return float("nan")
        return float(np.searchsorted(np.cumsum(self.counts), q * total)) / 1000.0


def mixed_phase(settings_json: str, seconds: float, warmup: float) -> dict[str, Any]:
    """The gateway as ``tierproof run`` builds it (:func:`tierproof_phase`), the window opening
    ``warmup`` s after the start (connections, subscriptions and their initial values are
    outside it); the points acknowledged within the window count. Also breaks OPC UA's
    source->stored down by its three timestamps: source->server (the server's ServerTimestamp:
    here the simulator writing the value), server->gateway (the publish the change waited for,
    the transport and asyncua's decoding, to the collector's handler: ``gateway_ts_ns``) and
    gateway->stored (the collector's batch, the writer's group, the commit)."""
    quiet()
    from api.gateway import Gateway
    from config.settings import Settings
    from store import open_store

    settings = Settings.model_validate_json(settings_json)
    lat = Latency()
    by_protocol = {p: Latency() for p in PROTOCOLS}
    protocol_of: list[np.ndarray] = []
    store: Any = open_store(settings.store)
    stored_total = np.zeros(len(PROTOCOLS), np.int64)
    timed_store(store, lat, by_protocol, protocol_of, stored_total)
    parts = {k: Hist() for k in ("source->server", "server->gateway", "gateway->stored")}
    window = [False]
    write = store.write

    def noted(batch: Any) -> None:
        write(batch)
        now = time.time_ns()
        if not window[0] or not protocol_of or batch.server_ts_ns is None:
            return
        ua_rows = protocol_of[0][np.minimum(batch.tag_id, len(protocol_of[0]) - 1)] == 1
        if batch.gateway_ts_ns is None or not ua_rows.any():
            return
        ts, sts, gts = batch.ts_ns[ua_rows], batch.server_ts_ns[ua_rows], batch.gateway_ts_ns[ua_rows]
        parts["source->server"].note(sts - ts)
        parts["server->gateway"].note(gts - sts)
        parts["gateway->stored"].note(now - gts)

    store.write = noted

    # every batch a collector hands the supervisor, counted per protocol when the supervisor
    # takes it (received) and once its delivery -- storage filter, store write, MQTT ack --
    # returned (delivered); a batch between the two when the gateway stops was cut short
    from collector.supervisor import Supervisor

    received = np.zeros(len(PROTOCOLS), np.int64)
    delivered = np.zeros(len(PROTOCOLS), np.int64)
    deliver = Supervisor._deliver

    async def counted(self: Any, name: str, batch: Any, collector: Any = None) -> None:
        p = self._health[name].protocol
        k = PROTOCOLS.index(p) if p in PROTOCOLS else None
        if k is not None:
            received[k] += len(batch)
        await deliver(self, name, batch, collector)
        if k is not None:
            delivered[k] += len(batch)

    Supervisor._deliver = counted  # type: ignore[method-assign]  # this child process only

    # the collectors' loop lag, explained: every 20 ms a probe on that loop notes how late its
    # sleep woke up, the CPU that loop's thread used meanwhile (its own callbacks: our code)
    # and the CPU of the whole process (the other threads: the writer, SQLite); a late wake-up
    # with neither is the thread waiting for a core
    lag_parts = np.zeros(4)  # late wake-ups (> 50 ms): count, seconds late, loop CPU, other CPU

    async def probe() -> None:
        while True:
            t0, l0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
            await asyncio.sleep(0.02)
            late = time.perf_counter() - t0 - 0.02
            if late > 0.05 and window[0]:
                loop_cpu = time.thread_time() - l0
                lag_parts[:] += (1, late, loop_cpu, time.process_time() - p0 - loop_cpu)

    def counts(gw: Any) -> dict[str, Any]:
        """Per protocol: samples received (see above), delivered, stored (the store's write
        returned), and the Modbus poll ticks skipped because a poll overran."""
        out: dict[str, Any] = {p: {"received": int(received[k]), "delivered": int(delivered[k])}
                               for k, p in enumerate(PROTOCOLS)}
        sup = gw.supervisor
        out["modbus"]["overruns"] = sum(
            getattr(getattr(c, "stats", None), "overruns", 0) for c in list(sup._collectors.values()))
        for k, p in enumerate(PROTOCOLS):
            out[p]["stored"] = int(stored_total[k])
        return out

    async def run() -> tuple[float, float, float, float, int, int, tuple[int, int], dict[str, Any]]:
        gw = Gateway(settings, store=store, isolate=True)
        lookup = np.full(max(gw.tag_ids.values()) + 2, -1, np.int8)
        for path, tid in gw.tag_ids.items():
            proto = path.split("/")[1]
            lookup[tid] = PROTOCOLS.index(proto) if proto in PROTOCOLS else -1
        protocol_of.append(lookup)
        async with gw:
            assert gw.loop is not None
            probing = asyncio.run_coroutine_threadsafe(probe(), gw.loop)
            await asyncio.sleep(warmup)
            lat.reset()
            for x in by_protocol.values():
                x.reset()
            window[0] = True
            at0 = counts(gw)
            w0, c0, t0 = time.time(), time.process_time(), time.perf_counter()
            await asyncio.sleep(seconds)
            lat.frozen = True
            for x in by_protocol.values():
                x.frozen = True
            window[0] = False
            w1, wall, cpu = time.time(), time.perf_counter() - t0, time.process_time() - c0
            at1 = counts(gw)
            lag = (gw.stall.stats.max_lag_s, gw.stall.stats.stalls) if gw.stall else (0.0, 0)
            probing.cancel()
        # after the gateway stopped: its final flush is in
        end = counts(gw)
        flow: dict[str, Any] = {p: {"window": {k: at1[p][k] - at0[p][k] for k in at1[p]},
                                    "total": end[p]} for p in PROTOCOLS}
        flow["loop_lag"] = lag
        flow["lag_parts"] = lag_parts.tolist()
        st = gw.writer.stats
        if st.batches_failed:
            raise RuntimeError(f"store writes failed: {st.last_error}")
        return (w0, w1, wall, cpu, st.points_written, len(gw.tag_ids),
                (st.batches_written, st.groups_written), flow)

    try:
        w0, w1, wall, cpu, written, ntags, groups, flow = asyncio.run(run())
    finally:
        store.close()
    return figures(lat.points, wall, cpu, lat, writer_points=written, tags=ntags,
                   writes=groups[1], batches=groups[0], window=(w0, w1),
                   protocols={p: (x.points / wall, x.p(0.5), x.p(0.99))
                              for p, x in by_protocol.items() if x.points},
                   opcua_parts={k: (h.p(0.5), h.p(0.99)) for k, h in parts.items()},
                   flow=flow)


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a process (and its reaped children: none here), seconds."""
    from tests.helpers import process_cpu_s  # (not at the top: the phases' children import this file)

    try:
        return process_cpu_s(pid)
    except OSError:  # it has exited
        return None


class CpuSampler:
    """Samples the CPU seconds of the simulator processes (and the points the simulators
    offered, their shared counters) every 0.25 s in a thread, so that both within the
    gateway's window (wall-clock bounds it reports) can be read."""

    def __init__(self, pids: dict[str, list[int]], counters: dict[str, list[Any]] | None = None) -> None:
        import threading

        self.pids = pids
        self.counters = counters or {}
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _take(self) -> dict[str, float]:
        cpu = {name: sum(c for pid in pids if (c := proc_cpu_s(pid)) is not None)
               for name, pids in self.pids.items()}
        return {**cpu, **{f"offered {name}": float(sum(v.value for v in values))
                          for name, values in self.counters.items()}}

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self._take()))
            self._stop.wait(0.25)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def within(self, w0: float, w1: float) -> dict[str, float]:
        """CPU seconds per group between the samples nearest to w0 and w1."""
        def at(t: float) -> dict[str, float]:
            return min(self.samples, key=lambda s: abs(s[0] - t))[1]

        a, b = at(w0), at(w1)
        return {name: b[name] - a[name] for name in a}


def shares(total: int, k: int) -> list[int]:
    """``total`` split into ``k`` near-equal parts (the first ones one larger)."""
    return [total // k + (1 if j < total % k else 0) for j in range(k)]


def mixed_run(args: argparse.Namespace, tmp: Path, devices: int, tags: int) -> dict[str, Any]:
    """One scenario B run: start the devices, measure the gateway in a fresh process."""
    from tests.mosquitto import Mosquitto

    n = split(devices, args.protocols)
    hz = (args.modbus_hz or args.hz, args.opcua_hz or args.hz, args.mqtt_hz or args.hz)
    ctx = mp.get_context("spawn")
    procs: list[Any] = []
    conns: list[Connection] = []
    pids: dict[str, list[int]] = {"Modbus servers": [], "OPC UA servers": [],
                                  "MQTT publishers": [], "Mosquitto": []}
    # per protocol: the points the simulators offered so far (shared counters they update)
    counters: dict[str, list[Any]] = {p: [] for p in PROTOCOLS}

    def counter(protocol: str) -> Any:
        v = ctx.Value("q", 0, lock=False)
        counters[protocol].append(v)
        return v

    def child(group: str, target: Callable[..., None], *a: Any) -> Connection:
        parent, c = ctx.Pipe()
        p = ctx.Process(target=target, args=(*a, c), daemon=True)
        p.start()
        procs.append(p)
        conns.append(parent)
        assert p.pid is not None
        pids[group].append(p.pid)
        return parent

    broker = Mosquitto(extra_config="".join(f"{line}\n" for line in args.broker_config))
    broker.start()
    assert broker.proc is not None
    pids["Mosquitto"].append(broker.proc.pid)
    sampler: CpuSampler | None = None
    try:
        mb_per = [m for m in shares(n[0], max(1, min(args.modbus_procs, n[0]))) if m]
        mbs = [child("Modbus servers", serve_modbus, m, tags, counter("modbus")) for m in mb_per]
        ua_per = [m for m in shares(n[1], max(1, min(args.opcua_servers, n[1]))) if m]
        uas = [child("OPC UA servers", serve_opcua_bulk, m * tags, 1.0 / hz[1], counter("opcua"))
               for m in ua_per]
        mq_per = [m for m in shares(n[2], max(1, min(args.mqtt_procs, n[2]))) if m]
        firsts = [sum(mq_per[:j]) for j in range(len(mq_per))]
        pubs = [child("MQTT publishers", publish_mqtt, broker.host, broker.port, f, m, tags,
                      1.0 / hz[2], counter("mqtt")) for f, m in zip(firsts, mq_per, strict=True)]
        for c in (*mbs, *uas, *pubs):
            if not c.poll(120):
                raise RuntimeError("a simulator did not start within 120 s")
        ports = [port for c in mbs for port in c.recv()]
        # device d of OPC UA server j: that server's (d - first of j)-th block of bulk variables
        opcua = [ep for c, m in zip(uas, ua_per, strict=True) for ep in [c.recv()] * m]
        for c in pubs:
            c.recv()
        settings = mixed_settings(n, tags, hz, ports, opcua, broker.url,
                                  str(tmp / f"mixed{devices}x{tags}.db"), args.opcua_sampling_ms)
        offered = [n[j] * tags * hz[j] for j in range(3)]
        print(f"Scenario B: {devices} devices x {tags} tags = {devices * tags:,} tags: "
              f"{n[0]} Modbus servers ({len(mb_per)} processes) polled at {hz[0]:g} Hz, "
              f"{n[1]} OPC UA sessions ({len(ua_per)} simulator processes) changing at "
              f"{hz[1]:g} Hz, sampling "
              + (f"{args.opcua_sampling_ms:g} ms" if args.opcua_sampling_ms is not None
                 else "shipped default")
              + f", {n[2]} machines publishing JSON at {hz[2]:g} Hz ({len(mq_per)} processes) "
              f"through Mosquitto on one MQTT subscription; offered {sum(offered):,.0f} "
              f"points/s (Modbus {offered[0]:,.0f}, OPC UA {offered[1]:,.0f}, MQTT "
              f"{offered[2]:,.0f}); {args.warmup:g} s warm-up, {args.seconds:g} s measured; "
              "Mosquitto " + ("; ".join(args.broker_config) or "as tests/mosquitto.py sets it")
              + f"; load {os.getloadavg()[0]:.2f}", flush=True)
        sampler = CpuSampler(pids, counters)
        r = in_child(mixed_phase, settings.model_dump_json(), args.seconds, args.warmup)
        sampler.stop()
        print(f"{'case':34} {'points/s':>11} {'CPU %':>6} {'RSS MiB':>8} {'p99 s':>8}")
        print(line(f"tierproof -> SQLite, {r['tags']:,} tags", r) + f"  (p50 {r['p50']:.3f} s; "
              f"{r['cpu_s'] / max(r['points'], 1) * 1e6:.1f} us CPU per point; "
              f"load {os.getloadavg()[0]:.2f})", flush=True)
        for proto, (rate, p50, p99) in r["protocols"].items():
            print(f"  of which {proto:24} {rate:>11,.0f} {'':>6} {'':>8} {p99:>8.3f}  "
                  f"(p50 {p50:.3f} s)", flush=True)
        if "opcua" in r["protocols"]:
            print("  OPC UA source->stored by timestamps, p50 / p99 s: " + ", ".join(
                f"{k} {p50:.3f} / {p99:.3f}" for k, (p50, p99) in r["opcua_parts"].items()),
                flush=True)
        # Mosquitto says so (once per episode) when a session's queue is full and it drops
        # QoS 1 messages: lost before the gateway could see them
        drops = broker.log_file.read_text(errors="replace").count(
            "Outgoing messages are being dropped") if broker.log_file.exists() else 0
        print(f"  Mosquitto: {drops} episodes of dropping queued messages for a client "
              "(max_queued_messages reached)" if drops else
              "  Mosquitto dropped no queued message", flush=True)
        within = sampler.within(*r["window"])
        cpu = {k: v for k, v in within.items() if not k.startswith("offered ")}
        flow_table(r, {p: within[f"offered {p}"] for p in PROTOCOLS}, offered)
        r["cpu_by_process"] = {"gateway": r["cpu_s"], **cpu}
        print(f"  CPU seconds in the {r['seconds']:.1f} s window: " + ", ".join(
            f"{k} {v:.1f}" for k, v in r["cpu_by_process"].items())
            + f" (sum {sum(r['cpu_by_process'].values()):.1f} of "
            f"{r['seconds'] * (os.cpu_count() or 1):.0f} core-seconds)", flush=True)
        return r
    finally:
        if sampler is not None:
            sampler.stop()
        for c in conns:
            with contextlib.suppress(OSError):
                c.send("stop")
        for p in procs:
            p.join(15)
            if p.is_alive():
                p.terminate()
                p.join(5)
        broker.stop()


def flow_table(r: dict[str, Any], offered_pts: dict[str, float], nominal: list[float]) -> None:
    """Where offered and stored points part, per protocol, in the window: offered by the
    simulators (Modbus: registers the servers answered; OPC UA: bulk values the servers
    wrote; MQTT: values the publishers handed to paho), received by the collectors, stored
    (the store's write returned); and over the gateway's whole life: raises if the store
    acknowledged more points than the collectors received (invented) or fewer than the
    supervisor finished delivering (lost; every tag here is stored every poll, so the storage
    filter withholds nothing). A batch received and not delivered when the gateway stopped
    was cut short by the stop (MQTT: not acknowledged, so the broker keeps it)."""
    secs = r["seconds"]
    print(f"  {'per protocol, points/s in the window':38} {'nominal':>9} {'offered':>9} "
          f"{'received':>9} {'stored':>9}  whole run: received / stored", flush=True)
    lost = []
    for k, p in enumerate(PROTOCOLS):
        f = r["flow"][p]
        w, t = f["window"], f["total"]
        if not t["received"] and not nominal[k]:
            continue
        extra = (f"; {w['overruns']:,} poll ticks skipped in the window (a poll overran its "
                 f"interval)" if p == "modbus" else "")
        cut = t["received"] - t["delivered"]
        print(f"  {p:38} {nominal[k]:>9,.0f} {offered_pts[p] / secs:>9,.0f} "
              f"{w['received'] / secs:>9,.0f} {w['stored'] / secs:>9,.0f}  "
              f"{t['received']:,} / {t['stored']:,}"
              + (f" ({cut:,} in a delivery the stop cut short)" if cut else "") + extra, flush=True)
        if not t["delivered"] <= t["stored"] <= t["received"]:
            lost.append(f"{p}: the collectors handed over {t['received']:,} points, the supervisor "
                        f"finished delivering {t['delivered']:,}, the store acknowledged "
                        f"{t['stored']:,}")
    lag, stalls = r["flow"]["loop_lag"]
    n, late, loop_cpu, other_cpu = r["flow"]["lag_parts"]
    print(f"  the collectors' event loop: largest lag {lag:.3f} s (a sleep woke up that late), "
          f"{stalls} stalls beyond the gap tolerance; {n:.0f} wake-ups of a 20 ms probe more than "
          f"50 ms late, {late:.2f} s late in all, during which the loop's thread ran {loop_cpu:.2f} "
          f"CPU s (its callbacks) and the gateway's other threads {other_cpu:.2f} s (the rest: "
          "waiting for a core)", flush=True)
    if lost:
        raise RuntimeError("points lost or invented: " + "; ".join(lost))


def scenario_b(args: argparse.Namespace, tmp: Path) -> dict[str, float | None]:
    r = mixed_run(args, tmp, args.devices, args.tags)
    out: dict[str, float | None] = {"mixed_points_per_s": r["points"] / r["seconds"],
                                    "p99_latency_s": r["p99"], "rss_10k_tags_mb": None}
    if args.rss_tags and args.devices * args.tags == args.rss_tags:
        out["rss_10k_tags_mb"] = r["rss_mb"]
    elif args.rss_tags:
        # the same mixed plant with rss_tags tags: more tags per device
        r10 = mixed_run(args, tmp, args.devices, -(-args.rss_tags // args.devices))
        out["rss_10k_tags_mb"] = r10["rss_mb"]
    print(f"mixed: {out['mixed_points_per_s']:,.0f} points/s (goal >= 100,000), p99 "
          f"{out['p99_latency_s']:.3f} s (goal <= 1 s), RSS with {args.rss_tags:,} tags "
          f"{out['rss_10k_tags_mb'] or float('nan'):.0f} MiB (goal <= 200)", flush=True)
    return out


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="measured time per case")
    ap.add_argument("--rounds", type=int, default=2, help="scenario A: alternating rounds")
    ap.add_argument("--influx-gzip", choices=("auto", "true", "false"), default="auto",
                    help="scenario A: tierproof's InfluxDB store's gzip (shipped: auto, which is "
                         "off for InfluxDB on loopback as here)")
    ap.add_argument("--influx-posts-in-flight", type=int, default=0,
                    help="scenario A: the InfluxDB store's posts_in_flight (0: shipped, 4)")
    ap.add_argument("--a-devices", type=int, default=10, help="scenario A: Modbus devices")
    ap.add_argument("--influx-group-max-points", default="0",
                    help="scenario A: the InfluxDB store's group_max_points (0: shipped); several, "
                    "comma-separated, are each measured in every round against the same raw run")
    ap.add_argument("--a-stores", default="sqlite,influx",
                    help="scenario A: the stores to measure (sqlite,influx; e.g. influx alone)")
    ap.add_argument("--devices", type=int, default=100, help="scenario B: devices")
    ap.add_argument("--tags", type=int, default=50, help="scenario B: tags per device")
    ap.add_argument("--hz", type=float, default=1.0, help="scenario B: samples per tag per second")
    ap.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS),
                    help="scenario B: the protocols of the plant, sharing its devices equally")
    ap.add_argument("--modbus-hz", type=float, default=0.0,
                    help="scenario B: Modbus polls per second (0: --hz)")
    ap.add_argument("--opcua-hz", type=float, default=0.0,
                    help="scenario B: OPC UA value changes per second (0: --hz)")
    ap.add_argument("--mqtt-hz", type=float, default=0.0,
                    help="scenario B: MQTT documents per machine and second (0: --hz)")
    ap.add_argument("--opcua-sampling-ms", type=float, default=None,
                    help="scenario B: the OPC UA devices' sampling_interval_ms (default: not set, "
                    "the shipped default)")
    ap.add_argument("--opcua-servers", type=int, default=3,
                    help="scenario B: OPC UA simulator processes sharing the OPC UA devices")
    ap.add_argument("--modbus-procs", type=int, default=2,
                    help="scenario B: processes sharing the Modbus simulator servers")
    ap.add_argument("--mqtt-procs", type=int, default=1,
                    help="scenario B: MQTT publisher processes sharing the machines")
    ap.add_argument("--warmup", type=float, default=5.0, help="scenario B: seconds before the window")
    ap.add_argument("--broker-config", action="append", default=[], metavar="LINE",
                    help="scenario B: a line added to Mosquitto's config (repeatable), e.g. "
                    "'max_inflight_messages 1000'")
    ap.add_argument("--rss-tags", type=int, default=10_000,
                    help="scenario B: also run the plant with this many tags for the RSS figure (0: no)")
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


if __name__ == "__main__":
    main()
