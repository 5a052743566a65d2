"""``tierproof rollups status`` and ``rollups rebuild`` on a real SQLite store (issue 12).

One day of the demo plant's history in a store; the roll-ups computed in process by the
maintainer (incremental), then ``rebuild`` in a ``tierproof`` subprocess drops and
recomputes them: the same rows, byte for byte (rebuild == incremental); ``status`` counts
rows, hours missing and rows of another key (after a change of an asset's PRU)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.cli import main
from api.gateway import tag_records
from api.rollups import HOUR_NS, RollupMaintainer
from api.service import KpiService
from config import Settings, load_settings
from config.times import iso, to_ns
from simulators import Plant
from store.sqlite import SqliteStore
from tests.helpers import api_key, one_week_demo
from tests.integration.test_hour_parts import NOW


def _at(ns: int) -> str:
    return str(iso(ns))


def cli(*args: str) -> str:
    """``tierproof rollups ...`` in a subprocess (as a user runs it beside the gateway)."""
    r = subprocess.run([sys.executable, "-m", "api.cli", "rollups", *args], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert r.returncode == 0, r.stderr
    return r.stdout


def status(cfg: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, int]:
    """``tierproof rollups status`` in process (the same ``main``; a subprocess costs seconds)."""
    assert main(["rollups", "status", "--config", str(cfg), "--to", _at(to_ns(NOW))]) == 0
    out = capsys.readouterr().out
    m = re.search(r"rows ([\d,]+), day rows ([\d,]+), hours missing ([\d,]+), key mismatches ([\d,]+)", out)
    assert m, out
    return dict(zip(("rows", "days", "missing", "stale"), (int(g.replace(",", "")) for g in m.groups()),
                    strict=True))


def test_status_and_rebuild(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = one_week_demo()
    data["store"] = {"type": "sqlite", "path": str(tmp_path / "r.db")}
    cfg = tmp_path / "plant.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    settings = load_settings(cfg)
    with SqliteStore(tmp_path / "r.db") as store:
        ids = store.register_tags(tag_records(settings))
        for b in Plant(settings, now=NOW).history_batches(ids, to_ns(NOW - timedelta(days=1)), to_ns(NOW)):
            store.write(b)
    n, hours = len(settings.assets), 24  # 09:00 yesterday to 09:00 (NOW is 09:17 UTC)
    assert status(cfg, capsys) == {"rows": 0, "days": 0, "missing": n * hours, "stale": 0}

    with SqliteStore(tmp_path / "r.db") as store:  # incremental, as the gateway's thread does
        m = RollupMaintainer(KpiService(settings, store), backfill_days=None, clock_ns=lambda: to_ns(NOW))
        computed = m.run_once()
        incremental = store.rollups([a.path for a in settings.assets], 0, to_ns(NOW))
    # a day row of the one Shanghai day that ended in the span (16:00 UTC yesterday; not all
    # its hours are held, so no day-sum or head row) and the head row of today, in progress
    days = n
    assert computed - n * hours == days + n
    assert status(cfg, capsys) == {"rows": n * hours, "days": days, "missing": 0, "stale": 0}

    out = cli("rebuild", "--config", str(cfg), "--to", _at(to_ns(NOW)))
    # today's heads are kept at today's end, after the span, and still current
    assert f"dropped {computed - n:,} rows" in out
    assert f"{n}/{n} " in out and f"rebuilt {computed - n:,} rows" in out  # progress, then the total
    with SqliteStore(tmp_path / "r.db") as store:
        assert store.rollups([a.path for a in settings.assets], 0, to_ns(NOW)) == incremental

    # a part of the span: only its hours are dropped and recomputed
    lo = (to_ns(NOW) // HOUR_NS - 3) * HOUR_NS
    assert main(["rollups", "rebuild", "--config", str(cfg), "--from", _at(lo), "--to", _at(to_ns(NOW))]) == 0
    out = capsys.readouterr().out
    assert f"dropped {n * 3:,} rows" in out and f"rebuilt {n * 3:,} rows" in out

    # another PRU for one asset: its rows no longer have the current key
    data["assets"][0]["ideal_cycle_time_s"] = 46.0
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    assert status(cfg, capsys) == {"rows": n * hours, "days": days - 1, "missing": hours, "stale": hours + 1}


def test_the_app_keeps_roll_ups_by_default(tmp_path: Path) -> None:
    """``kpi.rollups`` is on by default and the app (``serve``, ``run``, ``demo``) starts the
    maintainer over the embedded store; with it off, none."""
    import asyncio

    from api.app import create_app

    data = one_week_demo()
    data["store"] = {"type": "sqlite", "path": str(tmp_path / "app.db")}
    data["kpi"].pop("rollups", None)
    on = load_settings_from(tmp_path / "on.yaml", data)
    assert on.kpi.rollups is True
    data["kpi"]["rollups"] = False
    off = load_settings_from(tmp_path / "off.yaml", data)

    async def started(settings: Settings) -> object:
        api_key(settings)  # api.auth: the app starts only with a key
        app = create_app(settings, collect=False)
        async with app.router.lifespan_context(app):
            return app.state.rollups

    assert isinstance(asyncio.run(started(on)), RollupMaintainer)
    assert asyncio.run(started(off)) is None


def load_settings_from(path: Path, data: dict[str, Any]) -> Settings:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_settings(path)
