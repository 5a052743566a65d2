"""GET /api/v1/tags/{path}/samples returns each sample's server and gateway timestamps
(null where unknown), in process against a real SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from api.app import create_app
from config import settings_from_dict
from config.times import iso
from store import TS_UNKNOWN, Batch, SqliteStore
from tests.helpers import key_headers

SEC = 10**9
T0 = 1_700_000_000 * SEC
OPCUA_TAG = "s/a/l/m1/temp"
MODBUS_TAG = "s/a/l/m1/count"
WINDOW = {"from": iso(T0 - 60 * SEC), "to": iso(T0 + 60 * SEC)}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, SqliteStore]]:
    settings = settings_from_dict({
        "assets": [{"path": "s/a/l/m1"}],
        "devices": [
            {"protocol": "opcua", "name": "ua", "endpoint": "opc.tcp://127.0.0.1:4840",
             "enabled": False, "tags": [{"name": "temp", "asset": "s/a/l/m1", "node_id": "ns=2;s=t"}]},
            {"protocol": "modbus", "name": "plc", "host": "127.0.0.1", "enabled": False,
             "tags": [{"name": "count", "asset": "s/a/l/m1", "address": 0}]},
        ],
        "store": {"type": "sqlite", "path": str(tmp_path / "api.db")},
    })
    store = SqliteStore(tmp_path / "api.db")
    headers = key_headers(settings)  # api.auth: every test sends a key
    app = create_app(settings, store=store, collect=False)
    try:
        # the app's own lifespan (gateway, writer) around an in-process ASGI client
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://tierproof", headers=headers
        ) as c:
            yield c, store
    finally:
        store.close()


async def ids(c: httpx.AsyncClient) -> dict[str, int]:
    return {t["path"]: t["tag_id"] for t in (await c.get("/api/v1/tags")).json()}


async def test_samples_carry_server_and_gateway_timestamps(
    client: tuple[httpx.AsyncClient, SqliteStore],
) -> None:
    c, store = client
    tid = await ids(c)
    ts = T0 + np.array([0, 10, 20], np.int64) * SEC
    server = ts + 1_000_000  # 1 ms after the source
    server[1] = TS_UNKNOWN  # this sample came without a server timestamp
    gateway = ts + 5_000_000
    store.write(Batch(np.full(3, tid[OPCUA_TAG], np.int32), ts, np.array([1.0, 2.0, 3.0]),
                      np.zeros(3, np.uint8), None, server, gateway))
    store.write(Batch.of([tid[MODBUS_TAG]] * 2, ts[:2], [7.0, 8.0]))  # no such timestamps

    body = (await c.get(f"/api/v1/tags/{OPCUA_TAG}/samples", params=WINDOW)).json()
    assert body["ts"] == [iso(int(t)) for t in ts]
    assert body["server_ts"] == [iso(int(server[0])), None, iso(int(server[2]))]
    assert body["gateway_ts"] == [iso(int(g)) for g in gateway]
    assert body["server_ts"][0] != body["ts"][0] != body["gateway_ts"][0]

    plain = (await c.get(f"/api/v1/tags/{MODBUS_TAG}/samples", params=WINDOW)).json()
    assert plain["value"] == [7.0, 8.0]
    assert plain["server_ts"] == plain["gateway_ts"] == [None, None]

    # truncated to the limit: the lists stay parallel
    short = (await c.get(f"/api/v1/tags/{OPCUA_TAG}/samples",
                         params={**WINDOW, "limit": 2})).json()
    assert short["truncated"] and short["count"] == 2  # count: samples in the answer
    assert short["server_ts"] == body["server_ts"][:2] and short["gateway_ts"] == body["gateway_ts"][:2]

    empty = (await c.get(f"/api/v1/tags/{OPCUA_TAG}/samples",
                         params={"from": iso(T0 + 3600 * SEC), "to": iso(T0 + 7200 * SEC)})).json()
    assert empty["ts"] == empty["server_ts"] == empty["gateway_ts"] == []


async def test_openapi_documents_the_timestamps(
    client: tuple[httpx.AsyncClient, SqliteStore],
) -> None:
    c, _ = client
    schema = (await c.get("/openapi.json")).json()
    props = schema["components"]["schemas"]["SamplesOut"]["properties"]
    assert "ServerTimestamp" in props["server_ts"]["description"]
    assert "gateway" in props["gateway_ts"]["description"]
    assert "source" in props["ts"]["description"]
