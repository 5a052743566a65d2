"""Benchmark: ``GET /metrics`` -- scrape time and size for a plant of N devices (issue 15 item 7).

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_metrics.py`` (``--devices 10,100,500 --tags
10000 --scrapes 50 --poll-s 1``). Prints one line per case and ends with one JSON line;
nothing about timing is asserted.

Per case, a plant of ``D`` Modbus devices sharing ``--tags`` tags (``tags / D`` holding
registers each, polled every ``--poll-s``) is collected for real: one Modbus simulator
(``simulators.modbus.server.ModbusSimServer``, its own thread and event loop in this process)
answers every device's connection; the gateway (``create_app``, collecting, embedded store)
runs in a uvicorn subprocess. Once every device is connected and has delivered, ``--scrapes``
sequential ``GET /metrics`` over HTTP are timed (median, p99), the answer's size and series
counted; ``GET /api/v1/collector/status`` is timed the same way for comparison (it reads the
same snapshots). A second case with the same devices and 10x fewer tags shows the scrape does
not grow with tags (labels are per device, never per tag).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api_server import served  # noqa: E402  (bench/, beside this file)

from simulators.modbus.server import ModbusSimServer, RegisterImage  # noqa: E402

SERVER = """
import sys, uvicorn
from api.app import create_app
from config import load_settings
app = create_app(load_settings(sys.argv[1]))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


class ModbusThread:
    """One Modbus simulator on its own thread and loop: its answers do not share the client's."""

    def __init__(self) -> None:
        image = RegisterImage()
        image.holding[:] = 1
        self.server = ModbusSimServer(units={1: image})
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ModbusSimServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(30)
        return self.server

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def config(tmp: Path, port: int, devices: int, tags: int, poll_s: float) -> Path:
    per = max(1, tags // devices)
    data: dict[str, Any] = {
        "assets": [{"path": f"bench/area/line{d // 50}/m{d}"} for d in range(devices)],
        "devices": [{
            "protocol": "modbus", "name": f"plc{d}", "host": "127.0.0.1", "port": port,
            "poll_interval_s": poll_s, "timeout_s": 5.0,
            "tags": [{"asset": f"bench/area/line{d // 50}/m{d}", "name": f"r{i}", "address": i,
                      "type": "uint16", "role": "analog"} for i in range(per)],
        } for d in range(devices)],
        "store": {"type": "sqlite", "path": str(tmp / "store.db")},
        "api": {"host": "127.0.0.1"},
    }
    cfg = tmp / "plant.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    return cfg


def timed(client: httpx.Client, url: str, n: int) -> tuple[list[float], httpx.Response]:
    out, r = [], None
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(url)
        out.append((time.perf_counter() - t0) * 1e3)
        r.raise_for_status()
    assert r is not None
    return out, r


def p99(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(0.99 * (len(s) - 1)))]


def case(devices: int, tags: int, scrapes: int, poll_s: float, plc: ModbusSimServer) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tierproof-bench-metrics-") as d:
        cfg = config(Path(d), plc.port, devices, tags, poll_s)
        with served(SERVER, cfg, "gateway", timeout_s=300) as (_, port), \
                httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            deadline = time.monotonic() + 300
            while True:
                st = c.get("/api/v1/collector/status").json()
                if all(x["state"] == "connected" and x["samples_delivered"] > 0 for x in st):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("the devices did not all connect")
                time.sleep(0.5)
            c.get("/metrics")  # warm
            ms, r = timed(c, "/metrics", scrapes)
            status_ms, _ = timed(c, "/api/v1/collector/status", scrapes)
            families = list(text_string_to_metric_families(r.text))
            series = sum(len(f.samples) for f in families)
            load = os.getloadavg()[0]
    return {"devices": devices, "tags": devices * max(1, tags // devices),
            "scrape_ms_median": round(statistics.median(ms), 2), "scrape_ms_p99": round(p99(ms), 2),
            "status_ms_median": round(statistics.median(status_ms), 2),
            "bytes": len(r.content), "series": series, "families": len(families),
            "load_1min": round(load, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", default="10,100,500", help="comma-separated device counts")
    ap.add_argument("--tags", type=int, default=10_000, help="tags in all, shared by the devices")
    ap.add_argument("--scrapes", type=int, default=50)
    ap.add_argument("--poll-s", type=float, default=1.0)
    args = ap.parse_args()
    counts = [int(x) for x in args.devices.split(",")]
    results = []
    with ModbusThread() as plc:
        for n in counts:
            for tags in (args.tags, args.tags // 10):
                res = case(n, tags, args.scrapes, args.poll_s, plc)
                results.append(res)
                print(f"{res['devices']:>4} devices {res['tags']:>6} tags: scrape median "
                      f"{res['scrape_ms_median']:.1f} ms, p99 {res['scrape_ms_p99']:.1f} ms, "
                      f"{res['bytes']:,} bytes, {res['series']:,} series "
                      f"(collector/status {res['status_ms_median']:.1f} ms; load {res['load_1min']})",
                      flush=True)
    print(json.dumps({"bench": "metrics", "scrapes": args.scrapes, "cases": results}))


if __name__ == "__main__":
    main()
