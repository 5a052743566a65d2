"""Tags that an OPC UA browse rule discovers at connect answer on /tags/{path}/latest and
/samples like configured ones (they were listed by /tags but answered 404), in process against
a real asyncua server and a real SQLite store."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from asyncua import Server, ua

from api.app import create_app
from config import settings_from_dict
from store import SqliteStore
from tests.helpers import free_port, key_headers

URI = "urn:tierproof:test:discovered"
ASSET = "s/a/l/m1"


async def test_discovered_tag_has_latest_and_samples(tmp_path: Path) -> None:
    server = Server()
    await server.init()
    port = free_port()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/tp/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await server.register_namespace(URI)
    m1 = await server.nodes.objects.add_object(ua.NodeId("m1", ns), "m1")
    temp = await m1.add_variable(ua.NodeId("temp", ns), "Temperature", 21.5)
    settings = settings_from_dict({
        "assets": [{"path": ASSET}],
        "devices": [{"protocol": "opcua", "name": "ua", "endpoint": f"opc.tcp://127.0.0.1:{port}/tp/",
                     "publishing_interval_ms": 50, "timeout_s": 2.0, "tags": [],
                     "browse": [{"root": f"nsu={URI};s=m1", "asset": ASSET, "name_prefix": "m1."}]}],
        "store": {"type": "sqlite", "path": str(tmp_path / "api.db")},
    })
    path = f"{ASSET}/m1.Temperature"
    async with server:
        store = SqliteStore(tmp_path / "api.db")
        headers = key_headers(settings)  # api.auth: every test sends a key
        app = create_app(settings, store=store)
        try:
            async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://tierproof", headers=headers
            ) as c:
                latest: dict[str, object] = {}
                deadline = time.monotonic() + 60  # a count of polls ends early on a loaded machine
                while time.monotonic() < deadline:  # until the rule ran and the first value was written
                    listed = [t["path"] for t in (await c.get("/api/v1/tags")).json()]
                    if path in listed:
                        latest = (await c.get(f"/api/v1/tags/{path}/latest")).json()
                        if latest.get("value") is not None:
                            break
                    await asyncio.sleep(0.05)
                assert latest.get("value") == 21.5 and latest["quality"] == "good", latest
                await temp.write_value(22.5)
                body: dict[str, object] = {}
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    # an explicit end: "now" is rounded down to the second, before a sample of this second
                    end = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
                    r = await c.get(f"/api/v1/tags/{path}/samples", params={"from": "now-1h", "to": end})
                    assert r.status_code == 200, r.text
                    body = r.json()
                    if body["value"] == [21.5, 22.5]:
                        break
                    await asyncio.sleep(0.05)
                assert body["value"] == [21.5, 22.5] and body["quality"] == [0, 0]
                missing = await c.get(f"/api/v1/tags/{ASSET}/m1.NoSuch/latest")
                assert missing.status_code == 404
        finally:
            store.close()
