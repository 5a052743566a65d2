"""Damaged stored data through the API (issue 13 item 5): bytes of one chunk of a state tag
flipped in the closed database file, then the app opened on it. ``/kpis`` answers 200 with the
damaged range as a gap in the evidence (the tag, its time range, "stored data damaged") and its
coverage lowered by it, ``/samples`` returns the intact samples, ``/health`` is degraded naming
the tag, and ``tierproof store verify`` finds it (exit code 1). A real SQLite store, the app's
own lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from api.app import create_app
from api.gateway import tag_records
from config import settings_from_dict
from config.times import iso
from store import Batch, SqliteStore
from tests.helpers import flip_on_disk, key_headers

SEC = 10**9
MS = 10**6
T0 = int(datetime(2026, 11, 16, tzinfo=UTC).timestamp()) * SEC  # the default calendar plans every hour
ASSET = "s/a/l/m1"
STATE = f"{ASSET}/state"
PER = 90  # samples per chunk, one every 10 s: chunks of 15 min; four of them make the hour
HOUR = {"from": iso(T0), "to": iso(T0 + 3600 * SEC)}
#: the damaged chunk: STATE's second, samples at 900 s .. 1790 s (+ 1 ms)
FIRST, LAST = T0 + PER * 10 * SEC + MS, T0 + (2 * PER - 1) * 10 * SEC + MS


def config(db: Path) -> dict[str, Any]:
    return {
        "assets": [{"path": ASSET, "ideal_cycle_time_s": 10, "default_mode": "Processing"}],
        "devices": [{"protocol": "modbus", "name": "plc", "host": "127.0.0.1", "enabled": False,
                     "tags": [
                         {"name": "state", "asset": ASSET, "address": 0, "role": "state",
                          "enum": {0: "NotExecuting", 1: "Executing"}},
                         {"name": "total", "asset": ASSET, "address": 1, "role": "total_count"},
                         {"name": "good", "asset": ASSET, "address": 2, "role": "good_count"}]}],
        "store": {"type": "sqlite", "path": str(db)},
    }


def write_hour(db: Path, settings: Any) -> None:
    """Executing all hour, a part every 10 s; each tag in four chunks. STATE's times are
    1 ms after the counters' so that its ts blob is unique in the file."""
    with SqliteStore(db) as s:
        ids = s.register_tags(tag_records(settings))
        for k in range(4):
            s.write(hour_part(ids, k))
            s.compact()


def hour_part(ids: dict[str, int], k: int) -> Batch:
    """Part ``k`` of 4 of the hour: STATE Executing, total and good counting a part per 10 s."""
    t = T0 + (k * PER + np.arange(PER, dtype=np.int64)) * 10 * SEC
    n = (k * PER + np.arange(PER)).astype(np.float64)
    return Batch.of([ids[STATE]] * PER + [ids[f"{ASSET}/total"]] * PER + [ids[f"{ASSET}/good"]] * PER,
                    np.concatenate([t + MS, t, t]), np.concatenate([np.ones(PER), n, n]))



@asynccontextmanager
async def _client(db: Path, settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    store = SqliteStore(db)
    headers = key_headers(settings)  # api.auth: every test sends a key
    app = create_app(settings, store=store, collect=False)
    try:
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://tierproof", headers=headers
        ) as c:
            yield c
    finally:
        store.close()


@pytest.fixture
async def damaged(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Path]]:
    db = tmp_path / "plant.db"
    settings = settings_from_dict(config(db))
    write_hour(db, settings)
    assert flip_on_disk(db, FIRST + 5 * 10 * SEC) >= 1  # one sample's time, mid-chunk
    async with _client(db, settings) as c:
        yield c, tmp_path


async def test_intact_hour_has_full_coverage(tmp_path: Path) -> None:
    """The reference: the same hour undamaged is fully known, with no gap."""
    db = tmp_path / "plant.db"
    settings = settings_from_dict(config(db))
    write_hour(db, settings)
    async with _client(db, settings) as c:
        r = await c.get("/api/v1/kpis", params={**HOUR, "asset": ASSET})
        entry = r.json()["assets"][ASSET]
        assert entry["coverage"] == pytest.approx(3599.999 / 3600)  # state known from 1 ms on
        assert entry["evidence"]["gaps"] == []
        assert (await c.get("/api/v1/health")).status_code == 200


async def test_kpis_show_the_damaged_range_as_a_gap_and_lower_coverage(
    damaged: tuple[httpx.AsyncClient, Path],
) -> None:
    c, _ = damaged
    r = await c.get("/api/v1/kpis", params={**HOUR, "asset": ASSET})  # the first read finds it
    assert r.status_code == 200, r.text
    entry = r.json()["assets"][ASSET]
    (gap,) = entry["evidence"]["gaps"]
    assert gap["tag"] == STATE and gap["asset"] == ASSET and gap["device"] == "plc"
    assert gap["reason"] == f"stored data damaged: {STATE} (checksum mismatch)"
    assert (gap["start"], gap["end"]) == (iso(FIRST), iso(LAST + 1))
    # the damaged 890 s are unknown time, not Executing carried over, not zero samples
    # (the state stays unknown after the gap until its next sample, at 1800 s + 1 ms)
    assert entry["elements"]["known_s"] == pytest.approx(3599.999 - 900)
    assert entry["coverage"] == pytest.approx(2699.999 / 3600)  # 0.75, not 1.0
    (state,) = [t for t in entry["evidence"]["tags"] if t["path"] == STATE]
    assert state["samples"] == 3 * PER
    samples = (await c.get(f"/api/v1/tags/{STATE}/samples", params=HOUR)).json()
    assert samples["count"] == 3 * PER and iso(FIRST) not in samples["ts"]

    health = await c.get("/api/v1/health")
    assert health.status_code == 503
    body = health.json()
    assert body["status"] == "degraded" and body["store"]["damaged_chunks"] == 1
    (reason,) = [x for x in body["reasons"] if x["part"] == "store"]
    assert reason["name"] == STATE
    assert reason["reason"] == (f"stored data damaged: {PER} samples from {iso(FIRST)} to "
                                f"{iso(LAST)} (checksum mismatch); read as a gap")


async def test_health_is_degraded_after_a_restart_before_any_kpi_request(tmp_path: Path) -> None:
    """The record persists: a gateway restarted on the file reports the damage at once."""
    db = tmp_path / "plant.db"
    settings = settings_from_dict(config(db))
    write_hour(db, settings)
    flip_on_disk(db, FIRST + 5 * 10 * SEC)
    async with _client(db, settings) as c:
        assert (await c.get("/api/v1/kpis", params={**HOUR, "asset": ASSET})).status_code == 200
    async with _client(db, settings) as c:
        r = await c.get("/api/v1/health")
        assert r.status_code == 503
        assert [x["name"] for x in r.json()["reasons"] if x["part"] == "store"] == [STATE]


def test_store_verify_command_finds_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from api.cli import main as cli

    db = tmp_path / "plant.db"
    conf = tmp_path / "plant.yaml"
    conf.write_text(yaml.safe_dump(config(db)))
    settings = settings_from_dict(config(db))
    write_hour(db, settings)
    assert cli(["--log-level", "ERROR", "store", "verify", "--config", str(conf)]) == 0
    assert "12 chunks checked (0 without checksums" in capsys.readouterr().out
    flip_on_disk(db, FIRST + 5 * 10 * SEC)
    assert cli(["--log-level", "ERROR", "store", "verify", "--config", str(conf)]) == 1
    out = capsys.readouterr().out
    assert "; 1 damaged" in out
    assert f"damaged: {STATE} (tag id 1): {PER} samples from {iso(FIRST)} to {iso(LAST)}" in out
    assert "checksum mismatch" in out and str(tmp_path) not in out


def test_store_verify_refuses_a_remote_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from api.cli import main as cli

    conf = tmp_path / "plant.yaml"
    conf.write_text("store: {type: influx, api: v1, database: db}\n")
    assert cli(["--log-level", "ERROR", "store", "verify", "--config", str(conf)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"{conf}: store.type: 'influx': store verify checks the embedded store"
                   " (type sqlite) only")
