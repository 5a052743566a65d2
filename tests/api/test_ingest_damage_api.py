"""Damaged recent data through the API (issue 13 item 5): an hour of a machine left in the
store's ingest rows (a gateway that died before compacting), the bytes of the row of its second
quarter hour flipped in the closed file, then the app opened on it. ``/kpis`` answers 200 with
the row's range as a gap of each of its tags in the evidence and the coverage lowered by it,
``/health`` is degraded naming the tags, and ``tierproof store verify`` finds it (exit code 1).
A real SQLite store, the app's own lifespan."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.gateway import tag_records
from config import settings_from_dict
from config.times import iso
from store import SqliteStore
from tests.api.test_store_damage_api import (
    ASSET,
    HOUR,
    MS,
    PER,
    SEC,
    STATE,
    T0,
    _client,
    config,
    hour_part,
)
from tests.helpers import flip_on_disk

TAGS = [STATE, f"{ASSET}/total", f"{ASSET}/good"]
#: the damaged row: the second quarter hour, counters at 900 s .. 1790 s, STATE 1 ms later
FIRST, LAST = T0 + PER * 10 * SEC, T0 + (2 * PER - 1) * 10 * SEC + MS


def write_hour_pending(db: Path, settings: Any) -> None:
    """Executing all hour, a part every 10 s, in four batches left in ingest: the file copied
    after a checkpoint while the store is open (its close would flush them into chunks)."""
    live = db.with_name("live.db")
    s = SqliteStore(live, compact_every=1000)
    ids = s.register_tags(tag_records(settings))
    for k in range(4):
        s.write(hour_part(ids, k))
    c = sqlite3.connect(live)
    assert c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    c.close()
    shutil.copyfile(live, db)
    s.close()


def damaged(tmp_path: Path) -> tuple[Path, Any]:
    db = tmp_path / "plant.db"
    settings = settings_from_dict(config(db))
    write_hour_pending(db, settings)
    assert flip_on_disk(db, FIRST + 5 * 10 * SEC + MS) == 1  # one of STATE's times
    return db, settings


async def test_kpis_and_health_report_a_damaged_ingest_row(tmp_path: Path) -> None:
    db, settings = damaged(tmp_path)
    async with _client(db, settings) as c:
        r = await c.get("/api/v1/kpis", params={**HOUR, "asset": ASSET})  # the first read finds it
        assert r.status_code == 200, r.text
        entry = r.json()["assets"][ASSET]
        gaps = entry["evidence"]["gaps"]
        assert sorted(g["tag"] for g in gaps) == sorted(TAGS)
        for g in gaps:
            assert (g["start"], g["end"], g["asset"], g["device"]) == (
                iso(FIRST), iso(LAST + 1), ASSET, "plc")
            assert g["reason"].startswith(f"stored data damaged: {g['tag']} (ingest row ")
            assert g["reason"].endswith(": checksum mismatch)")
        # the row's quarter hour is unknown, not zero samples: coverage about 0.75, not 1.0
        assert entry["coverage"] < 0.76
        assert entry["coverage"] > 0.7
        (state,) = [t for t in entry["evidence"]["tags"] if t["path"] == STATE]
        assert state["samples"] == 3 * PER
        samples = (await c.get(f"/api/v1/tags/{STATE}/samples", params=HOUR)).json()
        assert samples["count"] == 3 * PER and iso(FIRST + MS) not in samples["ts"]

        health = await c.get("/api/v1/health")
        assert health.status_code == 503
        body = health.json()
        assert body["status"] == "degraded" and body["store"]["damaged_ingest_rows"] == 1
        reasons = [x for x in body["reasons"] if x["part"] == "store"]
        assert sorted(x["name"] for x in reasons) == sorted(TAGS)
        assert all(x["reason"].startswith(f"stored data damaged: {PER} samples from {iso(FIRST)}"
                                          f" to {iso(LAST)} (ingest row ") for x in reasons)
    async with _client(db, settings) as c:  # persisted: reported at once after a restart
        r = await c.get("/api/v1/health")
        assert r.status_code == 503
        assert sorted(x["name"] for x in r.json()["reasons"] if x["part"] == "store") == sorted(TAGS)


def test_store_verify_command_finds_a_damaged_ingest_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from api.cli import main as cli

    db, _ = damaged(tmp_path)
    conf = tmp_path / "plant.yaml"
    conf.write_text(yaml.safe_dump(config(db)))
    assert cli(["--log-level", "ERROR", "store", "verify", "--config", str(conf)]) == 1
    out = capsys.readouterr().out
    assert "0 chunks checked" in out and "4 ingest rows checked (0 without checksums" in out
    assert "; 3 damaged" in out
    assert (f"damaged: {STATE} (tag id 1): {PER} samples from {iso(FIRST)} to {iso(LAST)}"
            " (ingest row 2: checksum mismatch)") in out
    assert str(tmp_path) not in out
