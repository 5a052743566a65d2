"""/api/v1/health never lies (issue 13, item 7): ``ok`` (200) only while every device is
connected; a device that is down makes it ``degraded`` (503) naming the device and why, and it is
``ok`` again once the device is back. Real Modbus simulator over a real socket, the real app.
No absolute path of the host appears in the answer (the database path was shown before)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from api.app import create_app
from api.healthcheck import check
from config.loader import settings_from_dict
from simulators.modbus import RegisterImage
from simulators.modbus.server import ModbusSimServer
from tests.helpers import key_headers

ASSET = "site/area/line1/m1"


async def poll(client: httpx.AsyncClient, want: str, what: str) -> httpx.Response:
    r: httpx.Response | None = None
    for _ in range(600):  # up to ~30 s: reconnect backoff and polls are a few tens of ms here
        r = await client.get("/api/v1/health")
        if r.json()["status"] == want:
            return r
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: {r.text if r else None}")


async def test_device_down_is_degraded_503_with_the_reason_then_ok_again(tmp_path: Path) -> None:
    image = RegisterImage()
    image.holding[0] = 7
    server = ModbusSimServer(units={1: image})
    await server.start()
    settings = settings_from_dict({
        "assets": [{"path": ASSET}],
        "devices": [{"protocol": "modbus", "name": "plc1", "host": "127.0.0.1", "port": server.port,
                     "poll_interval_s": 0.05, "timeout_s": 0.3,
                     "backoff": {"initial_s": 0.05, "max_s": 0.3},
                     "tags": [{"asset": ASSET, "name": "count", "address": 0, "type": "uint16"}]}],
        "store": {"type": "sqlite", "path": str(tmp_path / "gw.db")},
    })
    headers = key_headers(settings)  # api.auth: every test sends a key
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway", headers=headers
        ) as client:
            ok = await poll(client, "ok", "the device to connect")
            body: dict[str, Any] = ok.json()
            assert ok.status_code == 200 and body["reasons"] == []
            assert body["devices"] == {"total": 1, "connected": 1}
            assert str(tmp_path) not in ok.text and "gw.db" not in ok.text  # no file locations

            await server.stop()
            down = await poll(client, "degraded", "the device to be seen down")
            assert down.status_code == 503
            (reason,) = down.json()["reasons"]
            assert (reason["part"], reason["name"]) == ("device", "plc1")
            assert reason["reason"].split(":")[0] in ("connecting", "not connected, waiting to retry")
            assert str(tmp_path) not in down.text

            await server.start()  # same port
            back = await poll(client, "ok", "the device to be back")
            assert back.status_code == 200 and back.json()["reasons"] == []
    finally:
        if server.running:
            await server.stop()


def test_docker_healthcheck_takes_degraded_as_alive_and_no_answer_as_dead(
    tmp_path: Path, capsys: Any
) -> None:
    """api.healthcheck (the image's HEALTHCHECK) against real HTTP servers answering 200, 503
    and 500, and a port where nothing listens."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    answers = {"/ok": (200, {"status": "ok", "reasons": []}),
               "/degraded": (503, {"status": "degraded", "reasons": [
                   {"part": "sink", "name": "influx", "reason": "InfluxDB unavailable"}]}),
               "/broken": (500, {"detail": "bug"})}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, doc = answers[self.path]
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        assert check(f"{base}/ok") == 0
        assert check(f"{base}/degraded") == 0
        assert "degraded: sink influx: InfluxDB unavailable" in capsys.readouterr().out
        assert check(f"{base}/broken") == 1
    finally:
        srv.shutdown()
        srv.server_close()
    assert check(f"{base}/ok", timeout=1.0) == 1  # nothing listens any more
