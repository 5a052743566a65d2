"""Benchmark: one ``GET /api/v1/kpis/series`` of 30 days of hours for 100 machines against the
720 separate ``GET /api/v1/kpis`` calls of the same hours, in the same run, over HTTP.

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_series.py`` (``--machines 100 --days 30``;
``--bucket 1d`` for days; ``--dir`` keeps the store between runs with ``--reuse``). Prints
figures and a JSON line; nothing about timing is asserted.

The store: the demo's machine kinds replicated to ``--machines`` (``simulators.scale``), ``--days``
of simulated history up to a fixed whole hour (report by exception, as ``bench_api_scale``),
every closed hour (and local day) rolled up first (``RollupMaintainer.run_once``, as the
gateway does in the background). Served by a uvicorn subprocess with the default API options;
one client: a warm-up ``/kpis`` of a window off the buckets' grid, the series (the plant's
total per bucket), then each bucket's ``/kpis`` call
(whose ``total`` is what the series' bucket must equal: checked, to 1e-9, on every bucket).
Wall time and the server process's CPU time are printed: on a shared machine the CPU time
is the steadier figure.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api_server import served  # noqa: E402  (bench/, beside this file)
from bench_api_scale import cpu_s, prepare  # noqa: E402

from api.rollups import RollupMaintainer  # noqa: E402
from api.service import KpiService  # noqa: E402
from config import load_settings  # noqa: E402
from config.times import to_ns  # noqa: E402
from store.sqlite import SqliteStore  # noqa: E402

SERVER = """
import sys, uvicorn
from api.app import create_app
from config import load_settings
app = create_app(load_settings(sys.argv[1]), collect=False)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def worst(a: Any, b: Any) -> float:
    """Largest relative difference between two answers' numbers (inf: shapes differ)."""
    if isinstance(a, dict):
        return max((worst(a[k], b.get(k)) for k in a), default=0.0) if isinstance(b, dict) else math.inf
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) / max(abs(a), abs(b), 1e-12)
    return 0.0 if a == b else math.inf


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--machines", type=int, default=100)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--bucket", default="1h", choices=["1h", "1d", "shift"])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/tierproof-bench-series"))
    ap.add_argument("--reuse", action="store_true", help="keep the store of an earlier run")
    args = ap.parse_args()
    now = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)  # fixed: closed windows, a reusable store
    cfg = args.dir / "plant.yaml"
    if not (args.reuse and cfg.exists()):
        cfg, gen = prepare(args.dir, args.machines, args.days, now)
        print(f"{args.machines} machines x {args.days} days: {gen['samples']:,} samples of "
              f"{gen['tags']:,} tags, {gen['bytes'] / 1e6:.0f} MB, in {gen['generate_s']:.1f} s")
        data = yaml.safe_load(cfg.read_text())
        data["kpi"]["rollups"] = True
        cfg.write_text(yaml.safe_dump(data, sort_keys=False))
        t0 = time.perf_counter()
        with SqliteStore(Path(data["store"]["path"])) as store:
            rows = RollupMaintainer(KpiService(load_settings(cfg), store, rollups=True),
                                    backfill_days=None, clock_ns=lambda: to_ns(now)).run_once()
        print(f"roll-ups: {rows:,} rows in {time.perf_counter() - t0:.1f} s")
    start, end = now - timedelta(days=args.days), now
    with served(SERVER, cfg) as (proc, port), httpx.Client(
            base_url=f"http://127.0.0.1:{port}", timeout=3600) as c:
        # warm-up (caches, the server's roll-up maintainer's first pass): a window off the
        # buckets' grid, so that no timed request is answered from the closed-result cache
        c.get("/api/v1/kpis", params={"from": (start + timedelta(minutes=30)).isoformat(),
                                      "to": (end - timedelta(minutes=30)).isoformat()})
        t0, c0 = time.perf_counter(), cpu_s(proc.pid)
        r = c.get("/api/v1/kpis/series", params={"from": start.isoformat(), "to": end.isoformat(),
                                                 "bucket": args.bucket})
        series_s, series_cpu = time.perf_counter() - t0, cpu_s(proc.pid) - c0
        r.raise_for_status()
        buckets = r.json()["buckets"]
        t0, c0 = time.perf_counter(), cpu_s(proc.pid)
        calls = [c.get("/api/v1/kpis", params={"from": b["from"], "to": b["to"]}).json()["total"]
                 for b in buckets]
        calls_s, calls_cpu = time.perf_counter() - t0, cpu_s(proc.pid) - c0
    diff = max(worst({k: v for k, v in b.items() if k not in ("from", "to", "shift", "date")},
                     {k: v for k, v in t.items() if k not in ("evidence", "rollups")})
               for b, t in zip(buckets, calls, strict=True))
    print(f"/kpis/series, {len(buckets)} buckets of {args.bucket}: {series_s:.2f} s "
          f"({series_cpu:.1f} s of server CPU)")
    print(f"{len(buckets)} separate /kpis calls: {calls_s:.2f} s ({calls_cpu:.1f} s of server CPU)")
    print(f"ratio (calls / series): {calls_s / series_s:.2f}x wall, "
          f"{calls_cpu / max(series_cpu, 1e-9):.2f}x server CPU; largest relative difference of "
          f"any bucket's number: {diff:.2e}")
    print(json.dumps({"machines": args.machines, "days": args.days, "bucket": args.bucket,
                      "buckets": len(buckets), "series_s": round(series_s, 3),
                      "calls_s": round(calls_s, 3), "ratio": round(calls_s / series_s, 3),
                      "series_cpu_s": round(series_cpu, 2), "calls_cpu_s": round(calls_cpu, 2),
                      "max_rel_diff": diff}))


if __name__ == "__main__":
    main()
