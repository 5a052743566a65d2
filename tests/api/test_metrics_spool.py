"""``/metrics`` with the InfluxDB store and its spool (issue 15 item 7): the spool's gauges and
counters equal ``/api/v1/store/spool``'s figures while InfluxDB is unreachable. The outage is
real: the store's URL is a port nothing listens on (connection refused), and a real Modbus
simulator feeds the gateway over a socket, so every point goes to the spool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from config.loader import settings_from_dict
from simulators.modbus import RegisterImage
from simulators.modbus.server import ModbusSimServer
from tests.api.test_metrics import one, scrape, serve, until
from tests.helpers import free_port

ASSET = "site/area/line1/m1"


@dataclass
class Api:
    client: httpx.AsyncClient
    plc: ModbusSimServer


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """The gateway over an unreachable InfluxDB (spooling), served on a free port; the one
    place a client is built (an API key goes here once auth lands)."""
    image = RegisterImage()
    plc = ModbusSimServer(units={1: image})
    await plc.start()
    port = free_port()
    settings = settings_from_dict({
        "assets": [{"path": ASSET}],
        "devices": [{"protocol": "modbus", "name": "plc1", "host": "127.0.0.1", "port": plc.port,
                     "poll_interval_s": 0.05, "timeout_s": 1.0, "storage": {"mode": "every_poll"},
                     "backoff": {"initial_s": 0.05, "max_s": 0.3},
                     "tags": [{"asset": ASSET, "name": "count", "address": 0, "type": "uint16"}]}],
        "store": {"type": "influx", "api": "v1", "database": "tierproof",
                  "url": f"http://127.0.0.1:{free_port()}", "meta_path": str(tmp_path / "meta.db"),
                  "spool": {"path": str(tmp_path / "spool")}},
        "api": {"host": "127.0.0.1", "port": port},
    })
    app = create_app(settings)
    try:
        async with serve(app, port) as c:
            yield Api(c, plc)
    finally:
        if plc.running:
            await plc.stop()


async def test_spool_metrics_match_the_spool_status(api: Api) -> None:
    c = api.client

    async def spooling() -> bool:
        s = (await c.get("/api/v1/store/spool")).json()
        return bool(s["points"] >= 20 and s["status"] != "ok")

    await until(spooling, "points to wait in the spool")
    await api.plc.stop()  # nothing new arrives, nothing drains: the figures stand still

    async def settled() -> dict[str, Any] | None:
        first = (await c.get("/api/v1/store/spool")).json()
        await asyncio.sleep(0.3)
        again = (await c.get("/api/v1/store/spool")).json()
        keys = ("points", "batches", "bytes", "spooled_points", "direct_points")
        return again if all(first[k] == again[k] for k in keys) else None

    spool = await until(settled, "the spool to stand still")
    m = await scrape(c)
    assert one(m, "tierproof_spool_points") == spool["points"] > 0
    assert one(m, "tierproof_spool_batches") == spool["batches"] > 0
    assert one(m, "tierproof_spool_bytes") == spool["bytes"] > 0
    assert one(m, "tierproof_spool_max_bytes") == spool["max_bytes"]
    assert one(m, "tierproof_spool_spooled_points_total") == spool["spooled_points"] == spool["points"]
    assert one(m, "tierproof_sink_direct_points_total") == spool["direct_points"] == 0
    assert one(m, "tierproof_spool_drained_points_total") == 0
    assert one(m, "tierproof_spool_oldest_age_seconds") > 0
    assert one(m, "tierproof_sink_state", state="unavailable") == 1
    assert one(m, "tierproof_sink_state", state="ok") == 0
    for reason in ("drop_oldest", "refuse_newest", "quarantine_full", "partial_write"):
        assert one(m, "tierproof_spool_dropped_points_total", reason=reason) == 0
    # every point the device delivered went into the spool
    (dev,) = (await c.get("/api/v1/collector/status")).json()
    assert one(m, "tierproof_device_points_stored_total", device="plc1", protocol="modbus") \
        == dev["samples_stored"] == spool["points"]
    assert one(m, "tierproof_build_info", version=(await c.get("/api/v1/health")).json()["version"],
               store="influx") == 1
