"""Benchmark: ``KpiService.kpis`` of a whole history from raw samples vs from hourly roll-ups.

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_rollups.py`` (``--machines 100 --days 30``
for the scaled plant of ``tests/integration/test_scale_truth.py``; the demo's 11 machines and
28 days by default; ``--heartbeat-s 10`` adds a sample of every tag every 10 s, as storing
every poll would, for denser data). Prints figures only; no assertions.

A SQLite store in a temporary directory is backfilled with the simulated plant's history
(report by exception, as the collectors store it); ``RollupMaintainer.run_once`` rolls up
every closed hour (its time is printed: the one-off cost a gateway pays in the background);
then the window [now - days + 7 min, now) -- not on an hour edge -- is computed ``--repeat``
times by a service without roll-ups and by one with them, and the best times are printed,
with the largest relative difference of any KPI between the two answers.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from api.gateway import tag_records
from api.rollups import RollupMaintainer
from api.service import KpiService
from config import load_settings, shipped_config
from config.settings import Settings
from config.times import to_ns
from simulators import Plant
from store.batch import Batch
from store.sqlite import SqliteStore

NOW = datetime(2026, 11, 18, 9, 17, 23, tzinfo=UTC)


def plant_settings(machines: int, days: int) -> Settings:
    settings = load_settings(shipped_config("demo.yaml"))
    if machines <= len(settings.assets):
        data = settings.model_dump(mode="json")
        data["simulation"].update(history_days=days)
        return Settings.model_validate(data)
    import tests.integration.test_scale_truth as scale

    scale.MACHINES, scale.DAYS = machines, days
    scale.COPIES = -(-machines // len(settings.assets))
    return scale.scaled(settings)


def worst(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Largest relative difference of any KPI (assets, lines, total) between two answers."""
    out = 0.0
    for scope in ("assets", "lines"):
        for k in a[scope]:
            out = max(out, worst_entry(a[scope][k], b[scope][k]))
    return max(out, worst_entry(a["total"], b["total"]))


def worst_entry(x: dict[str, Any], y: dict[str, Any]) -> float:
    d = 0.0
    for k, v in x.items():
        if isinstance(v, float) and isinstance(y[k], float) and math.isfinite(v):
            d = max(d, abs(v - y[k]) / max(abs(v), 1e-12))
    return d


def heartbeats(store: SqliteStore, days: int, every_s: float) -> int:
    """Write every tag's value in force every ``every_s`` (one day at a time); return how many."""
    step = int(every_s * 1e9)
    start = to_ns(NOW - timedelta(days=days))
    written = 0
    for tag in store.tags():
        for d in range(days):
            a, b = start + d * 86400 * 10**9, start + (d + 1) * 86400 * 10**9
            s = store.read(tag.tag_id, a, b, prior=True)
            if not len(s.ts_ns):
                continue
            grid = np.arange(a - a % step + step, b, step, dtype=np.int64)
            i = np.searchsorted(s.ts_ns, grid, "right") - 1
            grid, i = grid[i >= 0], i[i >= 0]
            grid_new = ~np.isin(grid, s.ts_ns)  # never overwrite a stored sample
            grid, i = grid[grid_new], i[grid_new]
            store.write(Batch(np.full(len(grid), tag.tag_id, np.int32), grid, s.value[i], s.quality[i]))
            written += len(grid)
    return written


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--machines", type=int, default=11)
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--heartbeat-s", type=float, default=0.0)
    args = ap.parse_args()
    settings = plant_settings(args.machines, args.days)
    with tempfile.TemporaryDirectory() as tmp, SqliteStore(Path(tmp) / "bench.db") as store:
        tag_ids = store.register_tags(tag_records(settings))
        t0 = time.perf_counter()
        points = 0
        for batch in Plant(settings, now=NOW).history_batches(
                tag_ids, to_ns(NOW - timedelta(days=args.days)), to_ns(NOW)):
            store.write(batch)
            points += len(batch)
        if args.heartbeat_s:
            points += heartbeats(store, args.days, args.heartbeat_s)
        print(f"{len(settings.assets)} machines x {args.days} days: {points:,} samples, "
              f"backfilled in {time.perf_counter() - t0:.1f} s")
        raw, rolled = KpiService(settings, store, rollups=False), KpiService(settings, store, rollups=True)
        t0 = time.perf_counter()
        rows = RollupMaintainer(rolled, backfill_days=None, clock_ns=lambda: to_ns(NOW)).run_once()
        print(f"roll-up of every closed hour: {rows:,} rows in {time.perf_counter() - t0:.1f} s")
        start, end = NOW - timedelta(days=args.days) + timedelta(minutes=7), NOW
        answers = {}
        for name, service in (("raw", raw), ("roll-ups", rolled)):
            best = math.inf
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                answers[name] = service.kpis(start, end)
                best = min(best, time.perf_counter() - t0)
            print(f"KpiService.kpis, {args.days} days, {name}: {best:.3f} s (best of {args.repeat})")
        print(f"largest relative KPI difference: {worst(answers['raw'], answers['roll-ups']):.2e}")
        same = all(answers["raw"]["assets"][k]["evidence"] == answers["roll-ups"]["assets"][k]["evidence"]
                   for k in answers["raw"]["assets"])
        print(f"evidence identical: {same}")


if __name__ == "__main__":
    main()
