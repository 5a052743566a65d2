"""Benchmark: ``GET /api/v1/kpis`` and ``GET /api/v1/tags/{path}/latest`` under 50 concurrent
clients on a plant of 100 machines x 30 days (issue 12; goal: p99 <= 50 ms).

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_api_scale.py`` (``--machines 100 --days 30
--clients 50 --seconds 20``; ``--modes raw,rollups``). Prints figures and ends with one JSON
line; nothing about timing is asserted.

The store: the demo's machine kinds replicated to ``--machines`` (``simulators.scale.replicate``,
as ``tests/integration/test_scale_truth.py`` and ``bench/bench_assess.py``), ``--days`` of
simulated history up to now (``Plant.history_batches``: report by exception) written into a
``store.sqlite.SqliteStore`` under ``--dir`` (default ``/tmp/tierproof-bench-api-scale``,
regenerated every run: its history must end now, since the default KPI window is relative to
the clock). With the ``rollups`` mode, every closed hour is rolled up beforehand
(``RollupMaintainer.run_once``, its time printed) and the configuration sets ``kpi.rollups``.

Served as ``bench/bench_kpi_api.py`` does: the app without collecting, in a uvicorn
subprocess (default API options: single flight, closed-result cache, 2 KPI threads), once
per mode; ``--clients`` httpx clients in this process each request back to back for
``--seconds`` per case:

- ``kpis default``: ``/api/v1/kpis`` (the default window, ``kpi.current``);
- ``kpis closed day``: ``/api/v1/kpis?from=..&to=..``, the day before yesterday (UTC);
- ``tag latest``: ``/api/v1/tags/{path}/latest`` of a random tag (of ``GET /api/v1/tags``);
- ``mixed``: each request one of the three at random (equal odds; per-kind figures too).

The clients share the machine's cores with the server (and, on a shared machine, with
whatever else runs: the 1-minute load average before each case is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api_server import HEADERS, served, with_key  # noqa: E402  (bench/, beside this file)

from api.gateway import tag_records  # noqa: E402
from api.rollups import RollupMaintainer  # noqa: E402
from api.service import KpiService  # noqa: E402
from config import Settings, load_settings, shipped_config  # noqa: E402
from config.times import to_ns  # noqa: E402
from simulators import Plant  # noqa: E402
from simulators.scale import replicate  # noqa: E402
from store.sqlite import SqliteStore  # noqa: E402

GOAL_MS = 50.0
SERVER = """
import sys, uvicorn
from api.app import create_app
from config import load_settings
app = create_app(load_settings(sys.argv[1]), collect=False)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def prepare(tmp: Path, machines: int, days: int, now: datetime) -> tuple[Path, dict[str, Any]]:
    """The store of ``machines`` x ``days`` up to ``now`` at ``tmp/store.db``, and its
    configuration at ``tmp/plant.yaml`` (without roll-ups); figures of the generation."""
    tmp.mkdir(parents=True, exist_ok=True)
    for p in tmp.glob("store.db*"):
        p.unlink()
    base = load_settings(shipped_config("demo.yaml"))
    data = replicate(base, machines, days, improved_days_ago=days // 2)
    data["store"] = {"type": "sqlite", "path": str(tmp / "store.db")}
    data["kpi"]["rollups"] = False  # the raw mode (roll-ups are on by default)
    settings = Settings.model_validate(data)
    cfg = tmp / "plant.yaml"
    cfg.write_text(yaml.safe_dump(with_key(data), sort_keys=False))
    t0 = time.perf_counter()
    points = 0
    with SqliteStore(tmp / "store.db") as store:
        ids = store.register_tags(tag_records(settings))
        for batch in Plant(settings, now=now).history_batches(
                ids, to_ns(now - timedelta(days=days)), to_ns(now)):
            store.write(batch)
            points += len(batch)
    size = sum(p.stat().st_size for p in tmp.glob("store.db*"))
    return cfg, {"samples": points, "generate_s": time.perf_counter() - t0, "bytes": size,
                 "tags": len(ids)}


def with_rollups(cfg: Path) -> tuple[Path, float, int]:
    """A copy of ``cfg`` with ``kpi.rollups`` on, after rolling up every closed hour."""
    data = yaml.safe_load(cfg.read_text())
    data["kpi"]["rollups"] = True
    out = cfg.with_name("plant-rollups.yaml")
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    settings = load_settings(out)
    t0 = time.perf_counter()
    with SqliteStore(Path(data["store"]["path"])) as store:
        rows = RollupMaintainer(KpiService(settings, store, rollups=True),
                                backfill_days=None).run_once()
    return out, time.perf_counter() - t0, rows


Request = tuple[str, str, dict[str, str]]  # kind, path, params


async def load(port: int, pick: Callable[[], Request], clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` clients requesting ``pick()`` back to back for ``seconds``."""
    lat: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    start = time.monotonic()
    stop = start + seconds

    async def client(c: httpx.AsyncClient) -> None:
        while time.monotonic() < stop:
            kind, path, params = pick()
            t0 = time.perf_counter()
            try:
                r = await c.get(path, params=params)
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            (lat[kind].append(time.perf_counter() - t0) if ok else None)
            if not ok:
                errors[kind] += 1

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120, headers=HEADERS,
                                 limits=httpx.Limits(max_connections=clients)) as c:
        await asyncio.gather(*(client(c) for _ in range(clients)))
    elapsed = time.monotonic() - start
    return {"elapsed": elapsed, "lat": dict(lat), "errors": dict(errors)}


def figures(lat: list[float], errors: int, elapsed: float) -> dict[str, Any]:
    ms = np.array(lat) * 1000 if lat else np.array([np.nan])
    p99 = float(np.percentile(ms, 99))
    return {"rps": round(len(lat) / elapsed, 1), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(p99, 1), "requests": len(lat), "errors": errors,
            "goal_met": bool(p99 <= GOAL_MS and errors == 0)}


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_mode(cfg: Path, cases: dict[str, Request | None], clients: int, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with served(SERVER, cfg) as (proc, port):
        paths = [t["path"] for t in httpx.get(f"http://127.0.0.1:{port}/api/v1/tags", headers=HEADERS).json()]
        rng = random.Random(12)
        latest: list[Request] = [("tag latest", f"/api/v1/tags/{p}/latest", {}) for p in paths]
        kinds: list[Request] = [v for v in cases.values() if v is not None]

        def fixed(req: Request) -> Callable[[], Request]:
            return lambda: req

        def mixed() -> Request:
            return rng.choice(latest) if rng.random() < 1 / 3 else rng.choice(kinds)

        picks: dict[str, Callable[[], Request]] = {
            **{k[0]: fixed(k) for k in kinds},
            "tag latest": lambda: rng.choice(latest),
            "mixed": mixed,
        }
        for name, pick in picks.items():
            load1 = os.getloadavg()[0]
            server0, client0 = cpu_s(proc.pid), time.process_time()
            r = asyncio.run(load(port, pick, clients, seconds))
            server_cpu, client_cpu = cpu_s(proc.pid) - server0, time.process_time() - client0
            all_lat = [x for v in r["lat"].values() for x in v]
            fig = figures(all_lat, sum(r["errors"].values()), r["elapsed"])
            fig["load1_before"] = round(load1, 2)
            # cores busy on average during the case: the server's, the clients' (this process)
            fig["server_cores"] = round(server_cpu / r["elapsed"], 2)
            fig["client_cores"] = round(client_cpu / r["elapsed"], 2)
            if name == "mixed":
                fig["by_kind"] = {k: figures(v, r["errors"].get(k, 0), r["elapsed"])
                                  for k, v in sorted(r["lat"].items())}
            out[name] = fig
            print(f"  {name:16} {fig['rps']:8.1f} req/s  p50 {fig['p50_ms']:8.1f} ms  "
                  f"p99 {fig['p99_ms']:8.1f} ms  errors {fig['errors']}  "
                  f"p99<={GOAL_MS:g}ms: {'yes' if fig['goal_met'] else 'NO'}  "
                  f"(load before {load1:.2f}; cores busy: server {fig['server_cores']:.2f}, "
                  f"clients {fig['client_cores']:.2f})", flush=True)
            for k, f in fig.get("by_kind", {}).items():
                print(f"    {k:14} {f['rps']:8.1f} req/s  p50 {f['p50_ms']:8.1f} ms  "
                      f"p99 {f['p99_ms']:8.1f} ms  errors {f['errors']}", flush=True)
        with open(f"/proc/{proc.pid}/status") as s:
            hwm = [ln for ln in s if ln.startswith("VmHWM:")]
        out["server_peak_rss_mb"] = int(hwm[0].split()[1]) // 1024 if hwm else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--machines", type=int, default=100)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--modes", default="raw,rollups")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/tierproof-bench-api-scale"))
    args = ap.parse_args()
    now = datetime.now(UTC).replace(microsecond=0)
    print(f"generating {args.machines} machines x {args.days} days up to {now:%Y-%m-%d %H:%M} "
          f"into {args.dir} ...", flush=True)
    cfg, gen = prepare(args.dir, args.machines, args.days, now)
    print(f"  {gen['samples']:,} samples of {gen['tags']} tags, {gen['bytes'] / 2**20:.0f} MB, "
          f"{gen['generate_s']:.1f} s", flush=True)
    day = now.replace(hour=0, minute=0, second=0) - timedelta(days=1)
    cases: dict[str, Request | None] = {
        "kpis default": ("kpis default", "/api/v1/kpis", {}),
        "kpis closed day": ("kpis closed day", "/api/v1/kpis",
                            {"from": (day - timedelta(days=1)).isoformat(), "to": day.isoformat()}),
        "tag latest": None,
    }
    result: dict[str, Any] = {"machines": args.machines, "days": args.days,
                              "clients": args.clients, "seconds": args.seconds,
                              "cpus": os.cpu_count(), **gen, "modes": {}}
    for mode in args.modes.split(","):
        mcfg = cfg
        if mode == "rollups":
            mcfg, secs, rows = with_rollups(cfg)
            print(f"roll-ups of every closed hour: {rows:,} rows, {secs:.1f} s", flush=True)
            result["rollup_rows"], result["rollup_s"] = rows, round(secs, 1)
        print(f"{mode}: {args.clients} clients, {args.seconds:g} s per case", flush=True)
        result["modes"][mode] = run_mode(mcfg, cases, args.clients, args.seconds)
    result["generate_s"] = round(result["generate_s"], 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
