"""Benchmark: 20 dashboards polling ``GET /api/v1/kpis`` on the demo store, with and without
single flight and the closed-result cache (``api.flight``).

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_kpi_api.py`` (``--clients 20``,
``--seconds 20``, ``--days 28``). Prints figures only; no assertions.

The demo configuration's store is backfilled with its simulated history (``--days``, the
demo's 28 by default) up to now; the gateway's API then serves it without collecting, in a
uvicorn subprocess, once per mode, and ``--clients`` clients each poll back to back (the worst
case of the dashboard's 5 s polling) for ``--seconds``:

- ``before``: every request computed, in 40 threads (Starlette's thread pool, as the sync
  routes ran before), no cache;
- ``after``: single flight, the closed-result cache, 2 KPI worker threads (the defaults).

Two windows: the default one (``kpi.current``, now-14d .. now: open, so never cached; shared
by requests in the same second) and a fixed closed one (the day before yesterday, UTC: cached).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api_server import HEADERS, served, with_key  # noqa: E402  (bench/, beside this file)

from api.cli import backfill  # noqa: E402
from api.gateway import tag_records  # noqa: E402
from config import load_settings, shipped_config  # noqa: E402
from simulators import Plant  # noqa: E402
from store.sqlite import SqliteStore  # noqa: E402

MODES = {
    "before": {"kpi_single_flight": False, "kpi_cache_size": 0, "kpi_workers": 40},
    "after": {},
}
SERVER = """
import sys, uvicorn
from api.app import create_app
from config import load_settings
app = create_app(load_settings(sys.argv[1]), collect=False, **{kw})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def prepare(tmp: Path, days: float) -> Path:
    data = yaml.safe_load(shipped_config("demo.yaml").read_text())
    data["store"] = {"type": "sqlite", "path": str(tmp / "demo.db")}
    data["simulation"]["history_days"] = days
    cfg = tmp / "demo.yaml"
    cfg.write_text(yaml.safe_dump(with_key(data), sort_keys=False))
    settings = load_settings(cfg)
    now = datetime.now(UTC)
    with SqliteStore(tmp / "demo.db") as store:
        ids = store.register_tags(tag_records(settings))
        backfill(settings, Plant(settings, now=now), ids, store, now)
        store.compact()
    return cfg


async def poll(port: int, params: dict[str, str], clients: int,
               seconds: float) -> tuple[list[float], float]:
    """Latencies of every request, and the wall time until the last one answered."""
    latencies: list[float] = []
    start = time.monotonic()
    stop = start + seconds

    async def client(c: httpx.AsyncClient) -> None:
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            r = await c.get("/api/v1/kpis", params=params)
            r.raise_for_status()
            latencies.append(time.perf_counter() - t0)

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600, headers=HEADERS,
                                 limits=httpx.Limits(max_connections=clients)) as c:
        await asyncio.gather(*(client(c) for _ in range(clients)))
    return latencies, time.monotonic() - start


def run_mode(cfg: Path, mode: str, windows: dict[str, dict[str, str]], clients: int,
             seconds: float) -> dict[str, tuple[float, float, float, int, int]]:
    out = {}
    with served(SERVER.format(kw=repr(MODES[mode])), cfg, f"{mode} server", 60) as (_, port):
        computed = 0
        for name, params in windows.items():
            lat, elapsed = asyncio.run(poll(port, params, clients, seconds))
            kpi = httpx.get(f"http://127.0.0.1:{port}/api/v1/health").json()["kpi"]
            ms = np.array(lat) * 1000
            out[name] = (len(lat) / elapsed, float(np.percentile(ms, 50)),
                         float(np.percentile(ms, 99)), len(lat), kpi["computed"] - computed)
            computed = kpi["computed"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--days", type=float, default=28.0)
    args = ap.parse_args()
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    windows = {
        "default window (now-14d..now)": {},
        "closed day": {"from": (day - timedelta(days=1)).isoformat(), "to": day.isoformat()},
    }
    with tempfile.TemporaryDirectory() as d:
        cfg = prepare(Path(d), args.days)
        results = {m: run_mode(cfg, m, windows, args.clients, args.seconds) for m in MODES}
    print(f"\n{args.clients} clients polling GET /api/v1/kpis back to back for {args.seconds:g} s "
          f"each, demo store with {args.days:g} days ({os.cpu_count()} CPUs)")
    print(f"{'window':32} {'mode':7} {'req/s':>8} {'p50 ms':>9} {'p99 ms':>9} {'requests':>9}  "
          "computed")
    for name in windows:
        for m in MODES:
            rps, p50, p99, n, kpi = results[m][name]  # kpi: computations the server ran
            print(f"{name:32} {m:7} {rps:8.1f} {p50:9.1f} {p99:9.1f} {n:9d}  {kpi}")


if __name__ == "__main__":
    main()
