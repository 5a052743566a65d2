"""Benchmark of the central tierproof's KPI reads over InfluxDB: roll-ups vs raw samples.

Run: ``.venv/bin/python bench/bench_central.py [--machines M] [--days D] [--rounds R]``.
Prints figures only; no assertions. Starts its own InfluxDB 1.6 (``tests/influx_servers.py``).

Setup, as two gateways would leave the database: the demo's machines (cycled to M, half of
them in site ``site-a``, half in ``site-b``) with D days of simulated history, written through
each gateway's own ``InfluxStore``; each gateway's roll-ups of every closed hour computed by
its ``RollupMaintainer`` (one pass) and written to ``tierproof_rollup``. Then a central store
(another metadata file, tags discovered from the tag register) answers the KPIs from the
history's start to 23 minutes into the last closed hour, R times each way: ``KpiService`` with roll-ups
(whole hours from rows, edges raw) and without (every sample). The elements must agree to
1e-9 relative (printed). The best round of each counts.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.gateway import tag_records
from api.rollups import RollupMaintainer
from api.service import KpiService
from config import settings_from_dict, shipped_config
from config.times import to_ns
from simulators import Plant
from store import InfluxStore
from tests.influx_servers import InfluxDB16

H = 3600 * 10**9


def site_config(demo: dict[str, Any], site: str, machines: int, days: float, url: str,
                meta: Path) -> dict[str, Any]:
    assets, tags = [], []
    base = [a for a in demo["assets"] if any(t["asset"] == a["path"] and t.get("role") == "state"
                                             for d in demo["devices"] for t in d.get("tags", []))]
    for i in range(machines):
        a = base[i % len(base)]
        path = f"{site}/plant/line{i // 10}/m{i:03d}"
        assets.append({**a, "path": path})
        src = [t for d in demo["devices"] for t in d.get("tags", []) if t["asset"] == a["path"]]
        tags += [{**copy.deepcopy(t), "asset": path} for t in src if t.get("role") not in (None, "analog")]
    device = {"name": f"{site}-plc", "protocol": "modbus", "host": "127.0.0.1", "port": 1502,
              "tags": [{k: v for k, v in t.items() if k in ("name", "asset", "role", "enum", "unit")}
                       | {"table": "holding", "address": n * 2, "type": "uint32", "unit_id": 1}
                       for n, t in enumerate(tags)]}
    return {"version": 1, "calendar": demo["calendar"], "assets": assets, "devices": [device],
            "store": {"type": "influx", "api": "v1", "url": url, "database": "tierproof",
                      "meta_path": str(meta)},
            "kpi": {"rollups": True},
            "simulation": {**demo["simulation"], "history_days": days}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--machines", type=int, default=20, help="machines in all (two sites)")
    p.add_argument("--days", type=float, default=7.0)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    demo: dict[str, Any] = yaml.safe_load(shipped_config("demo.yaml").read_text())
    now = datetime.now(UTC).replace(microsecond=0)
    t0 = to_ns(now)
    with tempfile.TemporaryDirectory() as tmp, InfluxDB16(Path(tmp) / "influxdb") as influx:
        configs = []
        for site in ("site-a", "site-b"):
            data = site_config(demo, site, args.machines // 2, args.days, influx.url,
                               Path(tmp) / f"{site}.db")
            settings = settings_from_dict(data, f"{site}.yaml")
            configs.append(data)
            start = time.monotonic()
            points = 0
            with InfluxStore(settings.store) as store:  # type: ignore[arg-type]
                ids = store.register_tags(tag_records(settings))
                for batch in Plant(settings, now=now).history_batches(
                        ids, t0 - int(args.days * 24) * H, t0):
                    store.write(batch)
                    points += len(batch)
                write_s = time.monotonic() - start
                start = time.monotonic()
                service = KpiService(settings, store)
                maintainer = RollupMaintainer(service, backfill_days=None)
                rows = maintainer.run_once()
                maintainer.close()
                print(f"{site}: {len(settings.assets)} machines, {points:,} samples written in "
                      f"{write_s:.1f} s; {rows:,} roll-up rows computed and written in "
                      f"{time.monotonic() - start:.1f} s", flush=True)
        central = {**configs[0], "assets": [a for c in configs for a in c["assets"]], "devices": [],
                   "store": {**configs[0]["store"], "meta_path": str(Path(tmp) / "central.db")}}
        settings = settings_from_dict(central, "central.yaml")
        # from the history's start: the simulated history has no heartbeats, so a step tag
        # that never changes (a constant mode) holds one sample, and every row's reach goes
        # back to it (api/rollups.py): rows serve windows starting at or before it
        begin = datetime.fromtimestamp((t0 - int(args.days * 24) * H) / 1e9, UTC)
        end = datetime.fromtimestamp((t0 // H * H - H + 23 * 60 * 10**9) / 1e9, UTC)
        with InfluxStore(settings.store) as store:  # type: ignore[arg-type]
            found = store.discover_tags([a.path for a in settings.assets])
            results: dict[str, tuple[float, dict[str, Any]]] = {}
            for name, rollups in (("rollups", True), ("raw", False)):
                service = KpiService(settings, store, rollups=rollups)
                best = float("inf")
                got: dict[str, Any] = {}
                for _ in range(args.rounds):
                    start = time.perf_counter()
                    got = service.kpis(begin, end)
                    best = min(best, time.perf_counter() - start)
                results[name] = (best, got)
        rolled, raw = results["rollups"][1], results["raw"][1]
        equal = all(
            abs(x - raw["assets"][a]["elements"][f]) <= 1e-9 * max(abs(x), 1.0)
            for a, e in rolled["assets"].items() for f, x in e["elements"].items()
            if isinstance(x, float))
        used = sum(e["rollups"]["from_rollups"] for e in rolled["assets"].values())
        whole = sum(e["rollups"]["whole_hours"] for e in rolled["assets"].values())
        print(f"central: {found} tags discovered; window {begin:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M}; "
              f"{used:,} of {whole:,} whole asset-hours from roll-ups")
        print(f"  /kpis with roll-ups {results['rollups'][0]:.3f} s, from raw samples "
              f"{results['raw'][0]:.3f} s (x{results['raw'][0] / results['rollups'][0]:.1f}); "
              f"elements equal: {equal}")
        print(json.dumps({"machines": args.machines, "days": args.days,
                          "rollups_s": round(results["rollups"][0], 4),
                          "raw_s": round(results["raw"][0], 4), "equal": equal,
                          "hours_from_rollups": used, "whole_hours": whole}))


if __name__ == "__main__":
    main()
