"""What InfluxDB 1.6 spends per point of our line protocol, beside the raw loop's lines.

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_influx_lines.py [--polls 400] [--rounds 2]``.
Prints figures only; no assertions.

The plant benchmark (``bench/bench_plant.py``, scenario A) keeps both cores busy, so its ratio
is the ratio of the CPU every process spends per point, InfluxDB's included. This isolates
InfluxDB's share: the points of 10 devices x 125 registers x ``--polls`` polls, built before
the clock as 5,000-line bodies, posted uncompressed one after another to a fresh database of
a real InfluxDB 1.6 (``tests/influx_servers.py``), and InfluxDB's CPU seconds (user + system,
from ``/proc``) per point. Line shapes, each with the same values and timestamps:

- ``raw``: the raw loop's (``raw,device=plc000,tag=m000/r000 value=17.0 <ts>``);
- ``tierproof``: what the InfluxDB store posts, by its own :class:`~store.influx.LineEncoder`
  for the tags ``bench_plant`` configures (hierarchy, role and device tags; ``value`` and
  ``quality`` fields; a Modbus sample has no server or gateway stamp);
- ``tierproof, value only``: the same without the ``quality`` field (not a schema we write: the
  field's share of the cost);
- ``raw tags, value and quality``: the raw loop's tags with both fields (the tags' share).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store import Batch, TagRecord
from store.influx import LineEncoder, series_key
from tests.influx_servers import InfluxDB16

DEVICES, REGISTERS, BODY = 10, 125, 5000
T0 = 1_780_000_000_000_000_000


def bodies(shape: str, polls: int) -> list[bytes]:
    """The bodies of ``shape`` for ``polls`` polls of every device, in poll order."""
    records = [TagRecord(path=f"plant/area/line/m{d:03d}/r{r:03d}", asset=f"plant/area/line/m{d:03d}",
                         role="analog", device=f"plc{d:03d}", protocol="modbus")
               for d in range(DEVICES) for r in range(REGISTERS)]
    n = polls * DEVICES * REGISTERS
    tag = np.tile(np.arange(DEVICES * REGISTERS, dtype=np.int32), polls)
    poll = np.repeat(np.arange(polls * DEVICES), REGISTERS)
    ts = T0 + poll.astype(np.int64) * 1_000_000 + (poll % DEVICES)
    value = ((ts // 1000 + tag % REGISTERS) % 5000).astype(np.float64)
    if shape.startswith("tierproof"):
        enc = LineEncoder({i: series_key("tierproof", r) for i, r in enumerate(records)})
        out = enc.encode(Batch.of(tag, ts, value), BODY)
        if shape == "tierproof, value only":
            out = [b.replace(b",quality=0i", b"") for b in out]
        return out
    both = shape == "raw tags, value and quality"
    fields = " value={:.1f},quality=0i {}\n" if both else " value={:.1f} {}\n"
    lines = [f"raw,device=plc{t // REGISTERS:03d},tag=m{t // REGISTERS:03d}/r{t % REGISTERS:03d}"
             + fields.format(v, s) for t, v, s in zip(tag.tolist(), value.tolist(), ts.tolist(), strict=True)]
    return ["".join(lines[i:i + BODY]).encode() for i in range(0, n, BODY)]


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--polls", type=int, default=400, help="polls of every device (1,250 points each)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of every shape")
    args = ap.parse_args()
    shapes = ("raw", "tierproof", "tierproof, value only", "raw tags, value and quality")
    built = {s: bodies(s, args.polls) for s in shapes}
    n = args.polls * DEVICES * REGISTERS
    server = InfluxDB16(Path(tempfile.mkdtemp(prefix="bench-lines-")) / "influxdb")
    server.start()
    print(f"{n:,} points of {DEVICES} devices x {REGISTERS} registers in {BODY:,}-line bodies, "
          f"uncompressed, to InfluxDB 1.6; {args.rounds} alternating rounds")
    print(f"{'lines':30} {'bytes/point':>11} {'influxd CPU us/point':>21} {'wall us/point':>14}")
    try:
        with httpx.Client(timeout=60) as client:
            for k in range(args.rounds):
                for j, shape in enumerate(shapes):
                    db = f"lines{k}_{j}"
                    client.post(f"{server.url}/query", data={"q": f'CREATE DATABASE "{db}"'})
                    c0, t0 = server.cpu_s(), time.perf_counter()
                    for body in built[shape]:
                        r = client.post(f"{server.url}/write", params={"db": db, "precision": "ns"},
                                        content=body)
                        if r.status_code != 204:
                            raise RuntimeError(f"{shape}: {r.status_code} {r.text[:200]}")
                    cpu, wall = server.cpu_s() - c0, time.perf_counter() - t0
                    size = sum(map(len, built[shape])) / n
                    print(f"{shape:30} {size:>11.0f} {1e6 * cpu / n:>21.2f} {1e6 * wall / n:>14.2f}",
                          flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
