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

Served as a user serves a stored plant: ``tierproof serve --config <the mode's file>`` in a
subprocess (``--server cli``, the default: the CLI's bounded HTTP protocol and socket, its
allocator settings; ``--server uvicorn``: the app under a plain ``uvicorn.run``, as measured
before session s28F), with the default API options (single flight, closed-result cache, 2 KPI
threads, open-window answers up to ``api.kpi_max_age_s`` old -- ``--max-age`` sets it, 0 turns
it off), once per mode; ``--clients`` connections each request back to back (or after an exponentially
distributed pause of mean ``--think-ms``) for ``--seconds`` per case. The load generator
(``--client``): ``wrk`` (Debian's ``wrk``, ``make bench-system``; default), a C client whose
two threads cost a small fraction of a core, so the figures are the server's; or ``httpx``,
the clients as coroutines of this Python process, which saturates its own core before the
server's for the cheap requests (the figures before ``wrk``). A Lua script gives wrk its
random tags and mixed requests and prints the percentiles (``--latency``), errors and
non-2xx answers. Cases:

- ``kpis default``: ``/api/v1/kpis`` (the default window, ``kpi.current``);
- ``kpis closed day``: ``/api/v1/kpis?from=..&to=..``, the day before yesterday (UTC);
- ``tag latest``: ``/api/v1/tags/{path}/latest`` of a random tag (of ``GET /api/v1/tags``);
- ``mixed``: each request one of the three at random (equal odds; per-kind figures too).

The clients share the machine's cores with the server (and, on a shared machine, with
whatever else runs: the 1-minute load average before and after each case is printed, with the
CPU seconds per second -- cores -- of the server and of the load generator, and the cores'
worth of time the server's threads were runnable but waiting for a CPU: the machine's run
queue, where a loaded machine's p99 comes from).

``--reuse``: keep the store (and its roll-ups) of an earlier run in ``--dir`` instead of
generating it: its history then ends when it was generated, not now (the default window's
last part holds no samples).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api_server import BENCH_KEY, HEADERS, served, with_key  # noqa: E402  (bench/, beside this file)

from api.gateway import tag_records  # noqa: E402
from api.rollups import RollupMaintainer  # noqa: E402
from api.service import KpiService  # noqa: E402
from config import Settings, load_settings, shipped_config  # noqa: E402
from config.times import to_ns  # noqa: E402
from simulators import Plant  # noqa: E402
from simulators.scale import replicate  # noqa: E402
from store.sqlite import SqliteStore  # noqa: E402
from tests.helpers import process_cpu_s as cpu_s  # noqa: E402

GOAL_MS = 50.0
#: how the store is served: ``cli`` is what a user runs (``tierproof serve``: the bounded
#: HTTP protocol of api.serving, the allocator's settings, the CLI's start-up); ``uvicorn`` is
#: the app under a plain ``uvicorn.run`` (the figures of the sessions before s28F)
SERVERS = {
    "cli": """
import sys
from api.cli import main
sys.exit(main(["serve", "--config", sys.argv[1], "--host", "127.0.0.1", "--port", sys.argv[2]]))
""",
    "uvicorn": """
import sys, uvicorn
from api.app import create_app
from config import load_settings
app = create_app(load_settings(sys.argv[1]), collect=False)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
""",
}


def prepare(tmp: Path, machines: int, days: int, now: datetime) -> tuple[Path, dict[str, Any]]:
    """The store of ``machines`` x ``days`` up to ``now`` at ``tmp/store.db``, and its
    configuration at ``tmp/plant.yaml`` (without roll-ups); figures of the generation."""
    tmp.mkdir(parents=True, exist_ok=True)
    for p in tmp.glob("store.db*"):
        p.unlink()
    for p in tmp.glob("plant*.yaml"):
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


def with_max_age(cfg: Path, max_age_s: float | None) -> Path:
    """``cfg`` with ``api.kpi_max_age_s`` set (None: its default)."""
    if max_age_s is None:
        return cfg
    data = yaml.safe_load(cfg.read_text())
    data.setdefault("api", {})["kpi_max_age_s"] = max_age_s
    out = cfg.with_name(f"{cfg.stem}-max-age-{max_age_s:g}.yaml")
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def with_rollups(cfg: Path) -> tuple[Path, float, int]:
    """A copy of ``cfg`` with ``kpi.rollups`` on, after rolling up every closed hour (not
    rolled up yet: with ``--reuse``, those of the earlier run stay)."""
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


#: the Lua script of a wrk case: a random request of REQUESTS (a list per kind, kinds equally
#: likely), an optional think time, and the figures as one JSON line at the end
WRK_LUA = """
local kinds = {%(kinds)s}
local think_ms = %(think_ms)s
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end
function init(args)
  math.randomseed(12 + 7919 * id)
end
function request()
  local kind = kinds[math.random(#kinds)]
  return wrk.format("GET", kind[math.random(#kind)])
end
if think_ms > 0 then
  function delay()
    return math.floor(-think_ms * math.log(1 - math.random()))
  end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p90_us":%%d,' ..
    '"p99_us":%%d,"max_us":%%d,"connect":%%d,"read":%%d,"write":%%d,"status":%%d,' ..
    '"timeout":%%d}\\n', summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, e.connect, e.read, e.write,
    e.status, e.timeout))
end
"""


def _lua_list(items: Sequence[str]) -> str:
    return "{" + ",".join(json.dumps(i) for i in items) + "}"


def wrk_load(port: int, kinds: Sequence[Sequence[str]], clients: int, seconds: float,
             think_ms: float) -> tuple[dict[str, Any], float]:
    """``wrk`` with ``clients`` connections on 2 threads for ``seconds``, each request one of
    ``kinds`` (paths with their query, a kind at random, then a path of it at random); its
    figures and its CPU seconds."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_LUA % {"kinds": ",".join(_lua_list(k) for k in kinds),
                           "think_ms": think_ms})
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(
            ["wrk", "-t", str(min(2, clients)), "-c", str(clients), "-d", f"{seconds:g}s",
             "--timeout", "60s", "--latency", "-H", f"X-API-Key: {BENCH_KEY}", "-s", f.name,
             f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True).stdout
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        os.unlink(f.name)
    line = next(ln for ln in out.splitlines() if ln.startswith("WRK "))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(line[4:]), cpu


def wrk_figures(w: dict[str, Any]) -> dict[str, Any]:
    elapsed = w["duration_us"] / 1e6
    errors = w["connect"] + w["read"] + w["write"] + w["status"] + w["timeout"]
    ok = w["requests"] - w["status"]
    p99 = w["p99_us"] / 1000
    return {"rps": round(ok / elapsed, 1), "p50_ms": round(w["p50_us"] / 1000, 1),
            "p90_ms": round(w["p90_us"] / 1000, 1), "p99_ms": round(p99, 1),
            "max_ms": round(w["max_us"] / 1000, 1), "requests": w["requests"], "errors": errors,
            "non_2xx": w["status"],
            "socket_errors": {k: w[k] for k in ("connect", "read", "write", "timeout") if w[k]},
            # no answer in the whole case is no evidence of anything
            "goal_met": bool(ok > 0 and p99 <= GOAL_MS and errors == 0)}


def figures(lat: list[float], errors: int, elapsed: float) -> dict[str, Any]:
    ms = np.array(lat) * 1000 if lat else np.array([np.nan])
    p99 = float(np.percentile(ms, 99))
    return {"rps": round(len(lat) / elapsed, 1), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(p99, 1), "requests": len(lat), "errors": errors,
            "goal_met": bool(p99 <= GOAL_MS and errors == 0)}


def runq_wait_s(pid: int) -> float:
    """Seconds the threads of process ``pid`` have spent runnable but waiting for a CPU so far
    (``/proc/PID/task/*/schedstat``, its second field; 0 where the kernel does not keep it)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, IndexError, ValueError):  # a thread that ended
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def idle(port: int, timeout_s: float = 600.0) -> None:
    """Until the server computes no KPI (``/health``'s ``kpi.in_flight``), at most
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        health = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", headers=HEADERS).json()
        if not health.get("kpi", {}).get("in_flight"):
            return
        time.sleep(0.2)


def run_mode(cfg: Path, cases: dict[str, Request | None], clients: int, seconds: float,
             client: str = "wrk", think_ms: float = 0.0,
             only: Sequence[str] | None = None, server: str = "cli") -> dict[str, Any]:
    out: dict[str, Any] = {}
    with served(SERVERS[server], cfg) as (proc, port):
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

        def url(req: Request) -> str:
            return req[1] + ("?" + urlencode(req[2]) if req[2] else "")

        lists: dict[str, list[list[str]]] = {
            **{k[0]: [[url(k)]] for k in kinds},
            "tag latest": [[url(r) for r in latest]],
            "mixed": [[url(r) for r in latest], *[[url(k)] for k in kinds]],
        }
        for name, pick in picks.items():
            if only and name not in only:
                continue
            # no computation of the case before still running (it would be counted here), and
            # one request first: a case measures the steady state, not the first computation
            idle(port)
            t_first = time.perf_counter()
            # one request of each kind the case sends (the mixed case's default window too:
            # an answer older than api.kpi_max_age_s is computed again, and the clients that
            # ask meanwhile wait for it)
            warm = [pick()] if name != "mixed" else [latest[0], *kinds]
            for _, path, params in warm:
                httpx.get(f"http://127.0.0.1:{port}{path}", params=params, headers=HEADERS,
                          timeout=600).raise_for_status()
            first_s = time.perf_counter() - t_first
            load1 = os.getloadavg()[0]
            server0, client0, t0 = cpu_s(proc.pid), time.process_time(), time.monotonic()
            waited0 = runq_wait_s(proc.pid)
            if client == "wrk":
                w, client_cpu = wrk_load(port, lists[name], clients, seconds, think_ms)
                elapsed = w["duration_us"] / 1e6
                server_cpu = cpu_s(proc.pid) - server0
                fig = wrk_figures(w)
            else:
                r = asyncio.run(load(port, pick, clients, seconds))
                elapsed = r["elapsed"]
                server_cpu, client_cpu = cpu_s(proc.pid) - server0, time.process_time() - client0
                all_lat = [x for v in r["lat"].values() for x in v]
                fig = figures(all_lat, sum(r["errors"].values()), elapsed)
                if name == "mixed":
                    fig["by_kind"] = {k: figures(v, r["errors"].get(k, 0), elapsed)
                                      for k, v in sorted(r["lat"].items())}
            wall = time.monotonic() - t0
            # the server's threads runnable but not running (other processes had the CPUs):
            # the machine's queue, which no change of the server's own shortens
            fig["server_runq_wait_cores"] = round((runq_wait_s(proc.pid) - waited0) / wall, 2)
            fig["first_s"] = round(first_s, 2)
            fig["load1_before"] = round(load1, 2)
            fig["load1_after"] = round(os.getloadavg()[0], 2)
            # cores busy on average during the case: the server's, the load generator's
            fig["server_cores"] = round(server_cpu / wall, 2)
            fig["client_cores"] = round(client_cpu / wall, 2)
            # the server's CPU per answered request: what the machine's load does not change much
            done = fig["rps"] * elapsed
            fig["server_cpu_ms_per_request"] = round(server_cpu * 1000 / done, 2) if done else None
            out[name] = fig
            print(f"  {name:16} {fig['rps']:8.1f} req/s  p50 {fig['p50_ms']:8.1f} ms  "
                  f"p99 {fig['p99_ms']:8.1f} ms  errors {fig['errors']}  "
                  f"p99<={GOAL_MS:g}ms: {'yes' if fig['goal_met'] else 'NO'}  "
                  f"(load {load1:.2f} -> {fig['load1_after']:.2f}; cores busy: server "
                  f"{fig['server_cores']:.2f}, {client} {fig['client_cores']:.2f}; server "
                  f"waiting for a CPU {fig['server_runq_wait_cores']:.2f}; server "
                  f"{fig['server_cpu_ms_per_request']} ms CPU per request; first answer "
                  f"{first_s:.2f} s)", flush=True)
            for k, f in fig.get("by_kind", {}).items():
                print(f"    {k:14} {f['rps']:8.1f} req/s  p50 {f['p50_ms']:8.1f} ms  "
                      f"p99 {f['p99_ms']:8.1f} ms  errors {f['errors']}", flush=True)
        with open(f"/proc/{proc.pid}/status") as s:
            hwm = [ln for ln in s if ln.startswith("VmHWM:")]
        out["server_peak_rss_mb"] = int(hwm[0].split()[1]) // 1024 if hwm else None
        health = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", headers=HEADERS).json()
        out["kpi_runner"] = health.get("kpi")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--machines", type=int, default=100)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--modes", default="raw,rollups")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/tierproof-bench-api-scale"))
    ap.add_argument("--client", choices=("wrk", "httpx"), default="wrk",
                    help="the load generator (default wrk: `make bench-system` installs it)")
    ap.add_argument("--think-ms", type=float, default=0.0,
                    help="wrk: mean pause of each connection between requests (0: back to back)")
    ap.add_argument("--max-age", type=float, default=None,
                    help="api.kpi_max_age_s of the server (default: the setting's default)")
    ap.add_argument("--cases", default=None,
                    help="only these cases (comma-separated names as printed, e.g. "
                         "'kpis default,mixed')")
    ap.add_argument("--server", choices=sorted(SERVERS), default="cli",
                    help="cli: `tierproof serve` (what a user runs; default); uvicorn: the app "
                         "under a plain uvicorn.run, as measured before")
    ap.add_argument("--reuse", action="store_true",
                    help="serve the store of an earlier run in --dir (its history ends then)")
    args = ap.parse_args()
    if args.client == "wrk" and shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: `make bench-system` (Debian package wrk), "
                         "or --client httpx")
    now = datetime.now(UTC).replace(microsecond=0)
    cfg = args.dir / "plant.yaml"
    if args.reuse and cfg.exists() and (args.dir / "store.db").exists():
        gen = json.loads((args.dir / "generated.json").read_text())
        now = datetime.fromisoformat(gen["now"])
        print(f"reusing the store in {args.dir}: history up to {now:%Y-%m-%d %H:%M}", flush=True)
    else:
        print(f"generating {args.machines} machines x {args.days} days up to "
              f"{now:%Y-%m-%d %H:%M} into {args.dir} ...", flush=True)
        cfg, gen = prepare(args.dir, args.machines, args.days, now)
        gen["now"] = now.isoformat()
        (args.dir / "generated.json").write_text(json.dumps(gen))
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
                              "client": args.client, "server": args.server,
                              "think_ms": args.think_ms,
                              "max_age_s": args.max_age,
                              "cpus": os.cpu_count(), **gen, "modes": {}}
    for mode in args.modes.split(","):
        mcfg = cfg
        if mode == "rollups":
            mcfg, secs, rows = with_rollups(cfg)
            print(f"roll-ups of every closed hour: {rows:,} rows, {secs:.1f} s", flush=True)
            result["rollup_rows"], result["rollup_s"] = rows, round(secs, 1)
        mcfg = with_max_age(mcfg, args.max_age)
        print(f"{mode}: {args.clients} clients ({args.client}, think {args.think_ms:g} ms), "
              f"{args.seconds:g} s per case", flush=True)
        result["modes"][mode] = run_mode(mcfg, cases, args.clients, args.seconds, args.client,
                                         args.think_ms,
                                         args.cases.split(",") if args.cases else None,
                                         args.server)
    result["generate_s"] = round(result["generate_s"], 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
