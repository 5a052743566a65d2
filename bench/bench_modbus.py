"""Benchmark of the Modbus path against a raw pymodbus client loop, in the same run.

Run: ``.venv/bin/python bench/bench_modbus.py [--seconds N] [--units U] [--registers R]``.
Prints figures only; no assertions.

A :class:`~simulators.modbus.ModbusSimServer` with U unit ids x R holding registers of
mixed tags (uint16, int16, uint32, float32, int32 CDAB, float32 BADC, float64) runs in a
child process, as a PLC would be another machine (and so that serving does not eat the
measured process' CPU). Then, for N seconds each:

(a) raw: one ``AsyncModbusTcpClient`` reads the same register blocks the collector's plan
    uses, back to back, decoding nothing; its points are the tags those blocks hold.
(b) tierproof: ``ModbusCollector`` (poll interval ~0, so it polls flat out) -> ``Writer`` ->
    ``SqliteStore`` in a temporary directory; its points are what the store holds at the
    end (read back), so a point only counts once it is durably stored; its time includes
    flushing the writer.

Both run in alternating rounds of about a second, so that load from elsewhere on a shared
machine hits both alike.

The ratio (b)/(a) is the figure that matters (goal >= 0.8): absolute rates depend on the
machine. Raw ceiling measured earlier on these 2-core machines: ~5,900 requests/s of 125
registers.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pymodbus.client import AsyncModbusTcpClient

from collector.modbus import ModbusCollector
from config.modbus import ModbusDevice, ModbusTag
from simulators.modbus import ModbusSimServer, RegisterImage
from store.base import TagRecord
from store.sqlite import SqliteStore
from store.writer import Writer

# (type, byte order) cycled through each unit's registers
MIX = [
    ("uint16", "ABCD"), ("int16", "ABCD"), ("uint32", "ABCD"), ("float32", "ABCD"),
    ("int32", "CDAB"), ("float32", "BADC"), ("float64", "ABCD"), ("uint16", "ABCD"),
]
WIDTH = {"uint16": 1, "int16": 1, "uint32": 2, "int32": 2, "float32": 2, "float64": 4}


def make_tags(units: int, registers: int) -> list[ModbusTag]:
    tags = []
    for u in range(1, units + 1):
        address, k = 0, 0
        while True:
            type_, order = MIX[k % len(MIX)]
            if address + WIDTH[type_] > registers:
                break
            tags.append(ModbusTag(
                name=f"u{u}_t{k}", asset=f"bench/a/l/m{u}", unit_id=u, address=address,
                type=type_, byte_order=order,  # type: ignore[arg-type]
            ))
            address += WIDTH[type_]
            k += 1
    return tags


def serve(units: int, registers: int, conn: Connection) -> None:
    """Child process: serve the images until told to stop."""


    async def run() -> None:
        images = {}
        for u in range(1, units + 1):
            img = RegisterImage()
            img.set_registers("holding", 0, [(u * 1000 + i) % 65536 for i in range(registers)])
            images[u] = img
        async with ModbusSimServer(units=images) as server:
            conn.send(server.port)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, conn.recv)  # any message = stop
            conn.send(dict(server.requests))

    asyncio.run(run())


async def raw_loop(port: int, blocks: list[tuple[int, int, int, int]], seconds: float
                   ) -> tuple[int, int, float]:
    """Read (unit, start, count, tags) blocks back to back; return points, requests, s."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0,
                                  reconnect_delay=0)
    assert await client.connect()
    points = requests = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    try:
        while time.perf_counter() < deadline:
            for unit, start, count, ntags in blocks:
                rr = await client.read_holding_registers(start, count=count, device_id=unit)
                if rr.isError():
                    raise RuntimeError(f"raw read failed: {rr}")
                points += ntags
                requests += 1
    finally:
        client.close()
    return points, requests, time.perf_counter() - t0


class TierproofPath:
    """Collector -> Writer -> SqliteStore, run in rounds that share one store."""

    def __init__(self, device: ModbusDevice, db: Path) -> None:
        self.device = device
        self.store = SqliteStore(db)
        self.ids = self.store.register_tags([
            TagRecord(path=t.path, asset=t.asset, role=t.role.value, device=device.name,
                      protocol="modbus")
            for t in device.tags
        ])
        self.batches = self.requests = self.overruns = 0
        self.seconds = 0.0

    async def round(self, seconds: float) -> None:
        """Poll flat out for ``seconds``; the time counted includes flushing the writer."""
        writer = Writer(self.store, max_pending=64)
        collector = ModbusCollector(self.device, self.ids)
        t0 = time.perf_counter()
        deadline = t0 + seconds
        async with collector:
            gen = collector.batches()
            try:
                async for batch in gen:
                    await writer.submit(batch)
                    self.batches += 1
                    if time.perf_counter() >= deadline:
                        break
            finally:
                await gen.aclose()  # type: ignore[attr-defined]
        await writer.close()
        self.seconds += time.perf_counter() - t0
        self.requests += collector.stats.requests
        self.overruns += collector.stats.overruns
        if writer.stats.batches_failed:
            raise RuntimeError(f"store writes failed: {writer.stats.last_error}")

    def stored_points(self) -> int:
        series = self.store.read_many(list(self.ids.values()), 0, 2**62, prior=False)
        return sum(len(s) for s in series.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each measurement")
    ap.add_argument("--units", type=int, default=10)
    ap.add_argument("--registers", type=int, default=250, help="holding registers per unit")
    args = ap.parse_args()

    tags = make_tags(args.units, args.registers)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve, args=(args.units, args.registers, child), daemon=True)
    proc.start()
    try:
        port = parent.recv()
        # the shortest poll interval a configuration may give (1 ms): a round of this plan
        # takes longer (20 requests at the default size), so the collector polls flat out, as
        # the raw loop reads
        device = ModbusDevice(protocol="modbus", name="bench", host="127.0.0.1", port=port,
                              poll_interval_s=0.001, timeout_s=5.0, tags=tags)
        # the raw loop reads exactly the blocks the collector's plan requests
        plan = ModbusCollector(device, {t.path: i for i, t in enumerate(tags)})
        blocks = [(r.unit, r.start, r.count, len(r.members))
                  for g in plan._groups.values() for r in g.requests]
        print(f"server: {args.units} units x {args.registers} registers, {len(tags)} tags, "
              f"{len(blocks)} requests per poll (max {max(b[2] for b in blocks)} registers)")

        rounds = max(1, round(args.seconds))
        raw_points = raw_req = 0
        raw_s = 0.0
        with tempfile.TemporaryDirectory(prefix="tierproof-bench-") as tmp:
            tp = TierproofPath(device, Path(tmp) / "bench.db")
            for _ in range(rounds):
                p, r, s = asyncio.run(raw_loop(port, blocks, args.seconds / rounds))
                raw_points, raw_req, raw_s = raw_points + p, raw_req + r, raw_s + s
                asyncio.run(tp.round(args.seconds / rounds))
            t_read = time.perf_counter()
            tp_points = tp.stored_points()
            read_s = time.perf_counter() - t_read
            tp.store.close()
        raw_rate = raw_points / raw_s
        tp_rate = tp_points / tp.seconds
        print(f"(a) raw pymodbus loop        : {raw_rate:10,.0f} points/s "
              f"({raw_req / raw_s:,.0f} requests/s, {raw_points:,} points in {raw_s:.2f} s)")
        print(f"(b) collector->writer->sqlite: {tp_rate:10,.0f} points/s "
              f"({tp.requests / tp.seconds:,.0f} requests/s, {tp_points:,} points stored in "
              f"{tp.seconds:.2f} s, {tp.batches:,} batches; read back in {read_s:.2f} s)")
        print(f"ratio (b)/(a): {tp_rate / raw_rate:.2f}  "
              f"(goal >= 0.80; {rounds} alternating rounds)")
    finally:
        parent.send("stop")
        served = parent.recv() if parent.poll(10) else {}
        proc.join(10)
        if served:
            print(f"server answered {sum(served.values()):,} requests")


if __name__ == "__main__":
    main()
