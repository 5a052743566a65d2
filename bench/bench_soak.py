"""Soak benchmark: the demo plant at 1 Hz plus 5 light API clients, for hours (issue 13 item 7).

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_soak.py`` (``--minutes 120``, ``--clients 5``,
``--days 28``). Prints figures only; no assertions.

``tierproof demo`` runs as a subprocess on a copy of ``config/demo.yaml`` (or ``--config``)
whose simulator ports (Modbus, OPC UA) are free ports, with its store in a temporary directory
and its API on a free port: eleven simulated machines, polled every second, their history
backfilled (``--days``) so that KPIs exist at once. ``--clients`` clients then each ask, as a
light dashboard would, for the KPIs of the last day (``/kpis?from=now-1d&to=now``) every 2 s
and for a latest value every 0.5 s.

Every minute one line: the gateway's RSS (and its anonymous part), VmHWM, open file
descriptors, threads, the KPI latency (p50 / p99 of that minute's requests), the requests and
errors of the minute, and the store's bytes on disk (database + WAL). The run ends with one
JSON line: the RSS slope (least squares, MB/h) over the last half of the run and over the
whole run, the p50 latency of the first and the last minutes and its slope (ms/h) over the
last half. A gateway that does not leak shows an RSS slope near 0 (the issue's bar: <= 5
MB/h over the last hour of a 2 h run) and a flat KPI latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api_server import HEADERS, with_key  # noqa: E402  (bench/, beside this file)

from config import shipped_config  # noqa: E402

_MB = 2**20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def soak_config(src: Path, tmp: Path, days: float) -> Path:
    """``src`` with every simulator port replaced by a free one (other runs on this machine
    may use the demo's fixed ports) and ``history_days`` set."""
    data = yaml.safe_load(src.read_text(encoding="utf-8"))
    for d in data.get("devices", []):
        if d.get("protocol") == "modbus":
            d["port"] = free_port()
        elif d.get("protocol") == "opcua":
            d["endpoint"] = re.sub(r":\d+/", f":{free_port()}/", d["endpoint"], count=1)
    data["simulation"]["history_days"] = days
    out = tmp / "soak.yaml"
    out.write_text(yaml.safe_dump(with_key(data), sort_keys=False), encoding="utf-8")
    return out


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon, VmHWM (bytes) and Threads of ``pid`` from /proc."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "VmHWM"):
            out[key] = int(rest.split()[0]) * 1024
        elif key == "Threads":
            out[key] = int(rest)
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def store_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


def slope_per_h(t_s: list[float], y: list[float]) -> float | None:
    """Least-squares slope of y per hour."""
    if len(t_s) < 3:
        return None
    return float(np.polyfit(np.asarray(t_s) / 3600.0, np.asarray(y), 1)[0])


class Load:
    """The clients: KPIs of the last day every 2 s, a latest value every 0.5 s."""

    def __init__(self, base: str, clients: int, latest_path: str) -> None:
        self.base = base
        self.clients = clients
        self.latest_path = latest_path
        self.kpi_ms: list[float] = []
        self.requests = 0
        self.errors = 0
        self.error_kinds: dict[str, int] = {}

    def _error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    async def _every(self, client: httpx.AsyncClient, period_s: float, url: str,
                     params: dict[str, str] | None, timed: bool, phase: float) -> None:
        await asyncio.sleep(phase)
        nxt = time.monotonic()
        while True:
            t0 = time.perf_counter()
            try:
                r = await client.get(url, params=params)
                self.requests += 1
                if r.status_code != 200:
                    self._error(f"{url.rsplit('/', 1)[-1]} {r.status_code}")
                elif timed:
                    self.kpi_ms.append((time.perf_counter() - t0) * 1000)
            except httpx.HTTPError as exc:
                self._error(type(exc).__name__)
            nxt += period_s
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=60, headers=HEADERS) as client:
            tasks = []
            for i in range(self.clients):
                phase = 2.0 * i / self.clients  # spread the clients over the 2 s period
                tasks.append(self._every(client, 2.0, "/api/v1/kpis",
                                         {"from": "now-1d", "to": "now"}, True, phase))
                tasks.append(self._every(client, 0.5, f"/api/v1/tags/{self.latest_path}/latest",
                                         None, False, phase / 4))
            await asyncio.gather(*tasks)


async def soak(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="tierproof-soak-") as tmpdir:
        tmp = Path(tmpdir)
        cfg = soak_config(Path(args.config) if args.config else shipped_config("demo.yaml"),
                          tmp, args.days)
        port = free_port()
        data = tmp / "data"
        log = (tmp / "demo.log").open("wb")
        launch = [args.launcher] if args.launcher else ["-m", "api.cli"]
        cmd = [sys.executable, *launch, "demo", "--config", str(cfg), "--port", str(port),
               "--data-dir", str(data)]
        proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 600
            async with httpx.AsyncClient(base_url=base, timeout=10, headers=HEADERS) as c:
                while True:
                    try:
                        if (await c.get("/api/v1/health")).status_code in (200, 503):
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise SystemExit("the demo did not start:\n"
                                         + (tmp / "demo.log").read_text(errors="replace"))
                    await asyncio.sleep(0.5)
                tags = (await c.get("/api/v1/tags")).json()
            latest_path = tags[0]["path"]
            print(f"soak: demo pid {proc.pid} on {base}, {args.clients} clients "
                  f"(KPIs of the last day every 2 s, latest {latest_path} every 0.5 s), "
                  f"{args.minutes:g} min", flush=True)
            print(f"{'min':>4} {'RSS MB':>7} {'anon MB':>7} {'HWM MB':>7} {'FDs':>4} {'thr':>4} "
                  f"{'p50 ms':>7} {'p99 ms':>7} {'req':>5} {'err':>4} {'store MB':>8}", flush=True)
            load = Load(base, args.clients, latest_path)
            task = asyncio.create_task(load.run())
            t0 = time.monotonic()
            rows: list[dict[str, float]] = []
            rss_t: list[float] = []
            rss_mb: list[float] = []
            seen_req = seen_err = 0
            for minute in range(1, int(args.minutes) + 1):
                # RSS every 10 s for the slope, one printed line per minute
                for _ in range(6):
                    await asyncio.sleep(max(0.0, t0 + (len(rss_t) + 1) * 10 - time.monotonic()))
                    if proc.poll() is not None or task.done():
                        raise SystemExit(f"the demo stopped (exit {proc.poll()})")
                    st = proc_status(proc.pid)
                    rss_t.append(time.monotonic() - t0)
                    rss_mb.append(st["VmRSS"] / _MB)
                ms, load.kpi_ms = load.kpi_ms, []
                p50 = float(np.percentile(ms, 50)) if ms else float("nan")
                p99 = float(np.percentile(ms, 99)) if ms else float("nan")
                row = {"minute": minute, "rss_mb": st["VmRSS"] / _MB,
                       "anon_mb": st["RssAnon"] / _MB, "hwm_mb": st["VmHWM"] / _MB,
                       "fds": st["fds"], "threads": st["Threads"], "p50_ms": p50, "p99_ms": p99,
                       "requests": load.requests - seen_req, "errors": load.errors - seen_err,
                       "store_mb": store_bytes(data / "demo.db") / _MB}
                seen_req, seen_err = load.requests, load.errors
                rows.append(row)
                print(f"{minute:>4} {row['rss_mb']:>7.1f} {row['anon_mb']:>7.1f} "
                      f"{row['hwm_mb']:>7.1f} {row['fds']:>4} {row['threads']:>4} {p50:>7.1f} "
                      f"{p99:>7.1f} {row['requests']:>5} {row['errors']:>4} "
                      f"{row['store_mb']:>8.1f}", flush=True)
            task.cancel()
            half = len(rss_t) // 2
            late = rows[len(rows) // 2:]
            summary = {
                "minutes": len(rows),
                "clients": args.clients,
                "rss_start_mb": round(rss_mb[0], 1),
                "rss_end_mb": round(rss_mb[-1], 1),
                "rss_slope_last_half_mb_per_h": _round(slope_per_h(rss_t[half:], rss_mb[half:])),
                "rss_slope_all_mb_per_h": _round(slope_per_h(rss_t, rss_mb)),
                "hwm_end_mb": round(rows[-1]["hwm_mb"], 1),
                "fds_first_last": [rows[0]["fds"], rows[-1]["fds"]],
                "threads_first_last": [rows[0]["threads"], rows[-1]["threads"]],
                "kpi_p50_first_last_ms": [_round(rows[0]["p50_ms"]), _round(rows[-1]["p50_ms"])],
                "kpi_p50_slope_last_half_ms_per_h": _round(slope_per_h(
                    [r["minute"] * 60.0 for r in late], [r["p50_ms"] for r in late])),
                "store_mb_first_last": [round(rows[0]["store_mb"], 1),
                                        round(rows[-1]["store_mb"], 1)],
                "requests": load.requests,
                "errors": load.errors,
                "error_kinds": load.error_kinds,
            }
            print(json.dumps(summary), flush=True)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def _round(x: float | None) -> float | None:
    return None if x is None or x != x else round(x, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=120, help="soak length (default 120)")
    ap.add_argument("--clients", type=int, default=5, help="API clients (default 5)")
    ap.add_argument("--days", type=float, default=28,
                    help="history backfilled before the soak (default 28, the demo's)")
    ap.add_argument("--config", help="demo configuration (default: the shipped config/demo.yaml)")
    ap.add_argument("--launcher", help="run the gateway as `python LAUNCHER demo ...` instead of "
                    "`python -m api.cli demo ...` (e.g. a script that starts a profiler first)")
    args = ap.parse_args()
    # SIGTERM as Ctrl-C: the demo subprocess is stopped on the way out, never left running
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    asyncio.run(soak(args))


if __name__ == "__main__":
    main()
