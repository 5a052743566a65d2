"""Collection under API load: how late are the polls while the API is flooded?

Run: ``.venv/bin/python bench/bench_isolation.py [--seconds N] [--history-days D]
[--tree PATH] [--old]``. Prints figures only; no assertions.

``tierproof simulate`` serves the demo's Modbus lines; ``tierproof run`` (file limit 1,024,
as on the box of issue 13's finding) polls them every second, storing every poll; D days of
simulated history are backfilled first so that a KPI request over them is CPU-heavy. After a
quiet start the API is flooded for N seconds: 4 loops of ``GET /kpis`` over the whole
history, 2 loops of 100,000-sample raw reads, 1,100 idle connections (every tenth half-open:
a request whose headers never end), and a probe of ``/health`` each second (5 s timeout).
Then the store is read: per device the polls in the flood, the largest interval between two
polls, the polls later than one interval, and the gaps recorded in the flood.

``--tree PATH`` runs the gateway from another checkout (e.g. a ``git worktree`` of the commit
before the isolation, to measure "before"); ``--old`` leaves out the ``api`` settings that
such a tree does not know.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api_server import HEADERS, with_key  # (bench/, beside this file)

from api.gateway import tag_records
from config import shipped_config
from config.loader import load_settings
from simulators import Plant
from store import SqliteStore

NS = 1_000_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(tmp: Path, days: float, old: bool) -> tuple[Path, dict[str, Any]]:
    data: dict[str, Any] = yaml.safe_load(shipped_config("demo.yaml").read_text())
    data["devices"] = [d for d in data["devices"] if d["protocol"] == "modbus"]
    for d in data["devices"]:
        d["port"] = free_port()
        d["poll_interval_s"] = 1.0
        d["storage"] = {"mode": "every_poll"}
    data["simulation"]["history_days"] = days
    data["store"] = {"type": "sqlite", "path": str(tmp / "run.db")}
    data["api"] = {"host": "127.0.0.1", "port": free_port()}
    if not old:
        data["api"].update(max_connections=200, header_timeout_s=2.0, keep_alive_s=2.0)
    cfg = tmp / "plant.yaml"
    cfg.write_text(yaml.safe_dump(with_key(data), sort_keys=False))
    return cfg, data


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--history-days", type=float, default=14.0)
    ap.add_argument("--tree", default=str(Path(__file__).resolve().parent.parent))
    ap.add_argument("--old", action="store_true")
    ap.add_argument("--kpi-loops", type=int, default=4)
    ap.add_argument("--raw-loops", type=int, default=2)
    ap.add_argument("--idle", type=int, default=1100)
    args = ap.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    tmp = Path(tempfile.mkdtemp(prefix="bench-isolation-"))
    cfg, data = config(tmp, args.history_days, args.old)
    settings = load_settings(cfg)
    store = SqliteStore(settings.store.path)  # type: ignore[union-attr]
    ids = store.register_tags(tag_records(settings))
    for b in Plant(settings, now=datetime.now(UTC)).history_batches(ids):
        store.write(b)
    store.close()
    env = {**os.environ, "PYTHONPATH": args.tree}
    cli = [sys.executable, "-m", "api.cli"]

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    sim = subprocess.Popen([*cli, "simulate", "--config", str(cfg)], env=env, cwd=args.tree,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp / "run.log"
    with log.open("w") as out:
        gw = subprocess.Popen([*cli, "run", "--config", str(cfg)], env=env, cwd=args.tree,
                              stdout=out, stderr=subprocess.STDOUT, preexec_fn=limits)
    port = data["api"]["port"]
    base = f"http://127.0.0.1:{port}"
    stop = threading.Event()
    lat: dict[str, list[float]] = {"kpis": [], "raw": []}
    errors: dict[str, int] = {}
    first: dict[str, str] = {}
    probes: list[float | None] = []
    idle: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                st = httpx.get(f"{base}/api/v1/collector/status", timeout=5, headers=HEADERS).json()
                if all(d["state"] == "connected" for d in st) and st:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        time.sleep(3)
        tags = httpx.get(f"{base}/api/v1/tags", timeout=10, headers=HEADERS).json()
        raw_path = next(t["path"] for t in tags if t["path"].endswith("/energy_kwh"))

        def loop(kind: str, url: str) -> None:
            with httpx.Client(base_url=base, timeout=120, headers=HEADERS) as c:
                n = 0
                while not stop.is_set():
                    t = time.monotonic()
                    n += 1
                    try:
                        # {n}: each request a window of its own (no shared computation, no cache)
                        r = c.get(url.format(n=n * 97 + threading.get_ident() % 89))
                        if r.status_code == 200:
                            lat[kind].append(time.monotonic() - t)
                        else:
                            first.setdefault(f"{kind} {r.status_code}", r.text[:300])
                            errors[f"{kind} {r.status_code}"] = errors.get(f"{kind} {r.status_code}", 0) + 1
                    except httpx.HTTPError as exc:
                        key = f"{kind} {type(exc).__name__}"
                        errors[key] = errors.get(key, 0) + 1

        def probe() -> None:
            while not stop.is_set():
                t = time.monotonic()
                try:
                    httpx.get(f"{base}/api/v1/health", timeout=5)
                    probes.append(time.monotonic() - t)
                except httpx.HTTPError:
                    probes.append(None)
                time.sleep(1)

        t0 = time.time_ns()
        heavy = f"/api/v1/kpis?from=now-{int(args.history_days * 86400)}s&to=now-{{n}}s"
        raw = f"/api/v1/tags/{raw_path}/samples?from=now-{args.history_days:g}d&limit=100000&n={{n}}"
        threads = [threading.Thread(target=loop, args=(k, u), daemon=True)
                   for k, u in (("kpis", heavy),) * args.kpi_loops + (("raw", raw),) * args.raw_loops]
        threads.append(threading.Thread(target=probe, daemon=True))
        for t in threads:
            t.start()
        for i in range(args.idle):
            s = socket.socket()
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", port))
                if i % 10 == 0:
                    s.sendall(b"GET /api/v1/health HTTP/1.1\r\nhost: x\r\n")
                idle.append(s)
            except OSError:
                s.close()
        time.sleep(args.seconds)
        stop.set()
        t1 = time.time_ns()
        closed = 0
        for s in idle:
            s.setblocking(False)
            try:
                while s.recv(4096):
                    pass
                closed += 1
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
    finally:
        stop.set()
        for s in idle:
            with contextlib.suppress(OSError):
                s.close()
        gw.send_signal(signal.SIGTERM)
        try:
            gw.wait(timeout=60)
        except subprocess.TimeoutExpired:
            gw.kill()
        sim.send_signal(signal.SIGTERM)
        sim.wait(timeout=30)
    store = SqliteStore(settings.store.path)  # type: ignore[union-attr]
    tid = {t.path: t.tag_id for t in store.tags()}
    print(f"flood {args.seconds:g} s, history {args.history_days:g} days, {args.kpi_loops} KPI "
          f"loops, {args.raw_loops} raw loops, {args.idle} idle connections, tree {args.tree}")
    for kind, xs in lat.items():
        med = f"{statistics.median(xs):.2f}" if xs else "-"
        print(f"  {kind}: {len(xs)} answers 200, median {med} s")
    print(f"  errors: {errors or 'none'}")
    for k, v in first.items():
        print(f"    first {k}: {v}")
    ok = [p for p in probes if p is not None]
    print(f"  /health probes: {len(ok)} of {len(probes)} answered within 5 s"
          + (f", max {max(ok):.2f} s" if ok else ""))
    print(f"  idle connections: {len(idle)} opened, {closed} closed by the server by the end")
    print(f"  gateway log: {log.stat().st_size:,} bytes; exit code {gw.returncode}")
    stalls = [ln.split("WARNING")[-1].strip() for ln in log.read_text().splitlines()
              if "could not run" in ln]
    print(f"  stalls logged: {len(stalls)}" + "".join(f"\n    {x}" for x in stalls[:5]))
    for d in settings.devices:
        path = next(f"{t.asset}/{t.name}" for t in d.tags if t.name == "state")  # type: ignore[attr-defined]
        # a Modbus sample's time is its poll's (gateway) time: the protocol has no other
        g, _, _ = store.read_timestamps(tid[path], t0 - 3 * NS, t1)
        # the last poll before the flood, every poll in it, and the flood's end
        steps = np.diff(np.append(g, t1)) / NS
        g = g[g >= t0]
        gaps = store.gaps(d.name, t0, t1)
        print(f"  {d.name}: {len(g)} polls, largest interval {steps.max():.2f} s, "
              f"{int((steps > 2.0).sum())} later than one interval; gaps: "
              + ("; ".join(f"{((g_.end_ns or t1) - g_.start_ns) / NS:.2f} s '{g_.reason}'" for g_ in gaps)
                 or "none"))
    store.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
