"""What the loss analysis costs beside the KPIs it explains (issue 19).

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_losses.py [--days 7] [--rounds 3]``. The demo
plant (11 machines, stop_reason tags on every one) with twice ``--days`` of seeded history in a
temporary SQLite store, as the collectors store it by exception; then, per round, every asset's
stop events and losses over the last ``--days`` (``api.losses.asset_stops``: raw samples, the
way ``GET /api/v1/losses`` computes them) and the same window's ``/kpis`` from raw samples
(``KpiService.kpis`` without roll-ups). Prints seconds per round; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from api.gateway import tag_records
from api.losses import asset_stops
from api.service import KpiService
from config import Settings
from config.times import to_ns
from simulators import Plant
from store import SqliteStore
from tests.helpers import one_week_demo

NOW = datetime(2026, 11, 21, 16, 0, tzinfo=UTC)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = one_week_demo()
        data["simulation"]["history_days"] = 2 * args.days
        data["store"] = {"type": "sqlite", "path": str(Path(tmp) / "s.db")}
        settings = Settings.model_validate(data)
        store = SqliteStore(Path(tmp) / "s.db")
        ids = store.register_tags(tag_records(settings))
        t0 = NOW - timedelta(days=2 * args.days)
        for b in Plant(settings, now=NOW).history_batches(ids, to_ns(t0), to_ns(NOW)):
            store.write(b)
        svc = KpiService(settings, store, rollups=False)
        tree = settings.reasons.tree()
        s, e = to_ns(NOW - timedelta(days=args.days)), to_ns(NOW)
        rows = []
        for _ in range(args.rounds):
            a = time.perf_counter()
            with svc.snapshot():
                items = [asset_stops(svc, x, s, e, tree, settings.reasons.small_stop_s)
                         for x in settings.assets]
            b = time.perf_counter()
            svc.kpis(NOW - timedelta(days=args.days), NOW)
            c = time.perf_counter()
            rows.append({"losses_s": round(b - a, 3), "kpis_raw_s": round(c - b, 3),
                         "stops": sum(len(i.events) for i in items)})
            print(f"losses {b - a:.3f} s ({rows[-1]['stops']} stops), /kpis raw {c - b:.3f} s")
        store.close()
        print(json.dumps({"bench": "losses", "days": args.days, "assets": len(settings.assets),
                          "rounds": rows}))


if __name__ == "__main__":
    main()
