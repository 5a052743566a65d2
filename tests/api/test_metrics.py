"""``GET /metrics`` (issue 15 item 7) over real HTTP (uvicorn on a free port, the server
``tierproof run`` builds) with real collectors: a Modbus simulator over a real socket and an
MQTT device on a real Mosquitto. The exposition is parsed with prometheus_client's own parser.

* after polls, a lost and regained connection and MQTT messages, every per-device counter
  equals ``/api/v1/collector/status``'s figure, and the store's points written equal
  ``/api/v1/health``'s;
* oversize MQTT payloads increment the drop counter under ``reason="payload_too_large"`` by
  exactly their number (and it keeps counting across a reconnect to a restarted broker), and a
  malformed one under its own reason;
* the latency histogram counts each request once under its route **template** (two tag paths:
  one series), 404s under ``unmatched``, and labels never carry a tag path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.cli import _listen, _uvicorn_server
from api.metrics import GatewayCollector, HttpStats, exposition
from config.loader import settings_from_dict
from simulators.modbus import RegisterImage
from simulators.modbus.server import ModbusSimServer
from tests.collector.mqtt.test_mqtt_broker import PLAIN, publish_all, publisher
from tests.helpers import free_port, key_headers
from tests.mosquitto import Mosquitto

pytestmark = pytest.mark.mqtt

PLC_ASSET = "site/area/line1/m1"
MQ_ASSET = "plant/area/L1/M1"
MAX_PAYLOAD = 1000
#: (family, sample name) -> {labels (sorted tuple): value}
Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient
    plc: ModbusSimServer
    broker: Mosquitto


@pytest.fixture
async def api(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[Api]:
    """The gateway's app served by uvicorn on a free port, collecting a Modbus simulator and an
    MQTT broker; the one place a client is built (an API key goes here once auth lands)."""
    image = RegisterImage()
    image.holding[0] = 7
    plc = ModbusSimServer(units={1: image})
    await plc.start()
    port = free_port()
    settings = settings_from_dict({
        "assets": [{"path": PLC_ASSET}, {"path": MQ_ASSET}],
        "devices": [
            {"protocol": "modbus", "name": "plc1", "host": "127.0.0.1", "port": plc.port,
             "poll_interval_s": 0.05, "timeout_s": 1.0, "backoff": {"initial_s": 0.05, "max_s": 0.3},
             "tags": [{"asset": PLC_ASSET, "name": "count", "address": 0, "type": "uint16"}]},
            {"protocol": "mqtt", "name": "mq", "broker": mosquitto.url, "subscriptions": [PLAIN],
             "max_payload_bytes": MAX_PAYLOAD, "backoff": {"initial_s": 0.05, "max_s": 0.3},
             "tags": [{"asset": MQ_ASSET, "name": "speed_rpm"}]},
        ],
        "store": {"type": "sqlite", "path": str(tmp_path / "gw.db")},
        "api": {"host": "127.0.0.1", "port": port},
    })
    app = create_app(settings)
    try:
        async with serve(app, port) as c:
            yield Api(app, c, plc, mosquitto)
    finally:
        if plc.running:
            await plc.stop()


@asynccontextmanager
async def serve(app: FastAPI, port: int) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` (its lifespan, then uvicorn as ``tierproof run`` builds it) on ``port``, and a
    client of it, sending a read key (made before the app starts: no key, no start)."""
    headers = key_headers(app.state.settings, "read")
    sock = _listen("127.0.0.1", port)
    try:
        async with app.router.lifespan_context(app):
            server = _uvicorn_server(app, "127.0.0.1", port)
            task = asyncio.create_task(server.serve(sockets=[sock]))
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                             headers=headers) as c:
                    await until(lambda: _served(c), "the API to answer")
                    yield c
            finally:
                server.should_exit = True
                await task
    finally:
        sock.close()


async def _served(c: httpx.AsyncClient) -> bool:
    try:
        return (await c.get("/api/v1/collector/status")).status_code == 200
    except httpx.TransportError:
        return False


async def until(cond: Callable[[], Awaitable[Any]], what: str, timeout: float = 30.0) -> Any:
    """Poll ``cond`` until it is truthy (a generous deadline, not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        got = await cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def scrape(c: httpx.AsyncClient) -> Samples:
    r = await c.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        assert family.name.startswith("tierproof_"), family.name
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def one(samples: Samples, name: str, **labels: str) -> float:
    want = tuple(sorted(labels.items()))
    assert want in samples.get(name, {}), (name, labels, samples.get(name))
    return samples[name][want]


async def status(c: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in (await c.get("/api/v1/collector/status")).json()}


async def test_counters_match_the_collector_status(api: Api) -> None:
    c = api.client

    async def both_deliver() -> bool:
        s = await status(c)
        return s["plc1"]["state"] == "connected" and s["plc1"]["samples_delivered"] >= 10 \
            and s["mq"]["state"] == "connected"

    await until(both_deliver, "both devices to connect and the PLC to be polled")
    with publisher(api.broker) as pub:
        publish_all(pub, [("tp/L1/M1/speed_rpm", str(v)) for v in (1, 2, 3)]
                    + [("tp/L1/M1/speed_rpm", "fast")])  # not a number: dropped, wrong type
    # a lost connection (a gap), regained (a reconnect), lost again: the PLC's counters stop
    # (a busy machine may have made it reconnect already: counted from here)
    plc0 = (await status(c))["plc1"]
    await api.plc.stop()
    await until(lambda: _state(c, "plc1", "backoff"), "the PLC to be seen down")
    await api.plc.start()

    async def back() -> bool:
        s = (await status(c))["plc1"]
        return s["state"] == "connected" and s["reconnects"] > plc0["reconnects"] \
            and s["gap_open_since"] is None

    await until(back, "the PLC to be back")
    await api.plc.stop()
    await until(lambda: _state(c, "plc1", "backoff"), "the PLC to be seen down again")

    async def settled() -> dict[str, dict[str, Any]] | None:  # nothing moves any more
        first = await status(c)
        await asyncio.sleep(0.2)
        again = await status(c)
        h = (await c.get("/api/v1/health")).json()
        keys = ("samples_delivered", "samples_stored", "bad_samples", "dropped", "gaps", "state",
                "reconnects", "gap_open_since")
        same = all(first[n][k] == again[n][k] for n in first for k in keys)
        return again if same and again["mq"]["samples_delivered"] == 3 and h else None

    await until(settled, "the counters to settle")

    async def consistent() -> tuple[Samples, dict[str, dict[str, Any]]] | None:
        # a stall of the loaded machine can still record a gap: a scrape between two equal
        # statuses
        before = await status(c)
        m = await scrape(c)
        after = await status(c)
        same = {n: _counts(d) for n, d in after.items()} == {n: _counts(d) for n, d in before.items()}
        return (m, after) if same else None

    m, after = await until(consistent, "a scrape between two equal statuses")
    for name, d in after.items():
        key = {"device": name, "protocol": d["protocol"]}
        assert one(m, "tierproof_device_points_received_total", **key) == d["samples_delivered"] > 0
        assert one(m, "tierproof_device_points_stored_total", **key) == d["samples_stored"]
        assert one(m, "tierproof_device_points_bad_quality_total", **key) == d["bad_samples"]
        assert one(m, "tierproof_device_points_non_finite_total", **key) == d["non_finite"]
        assert one(m, "tierproof_device_reconnects_total", **key) == d["reconnects"]
        assert one(m, "tierproof_device_gaps_total", **key) == d["gaps"]
        assert one(m, "tierproof_device_stalls_total", **key) == d["stalls"]
        for state in ("connecting", "connected", "backoff", "stopped", "disabled"):
            assert one(m, "tierproof_device_state", **key, state=state) == (d["state"] == state)
        assert one(m, "tierproof_device_gap_open", **key) == (d["gap_open_since"] is not None)
        assert one(m, "tierproof_device_tag_errors", **key) == len(d["tag_errors"])
        for reason, n in d["dropped"].items():
            assert one(m, "tierproof_device_drops_total", **key,
                       reason=reason.replace(" ", "_")) == n
    plc, mq = after["plc1"], after["mq"]
    # two lost connections, and any stall the loaded machine had meanwhile (each a gap too)
    assert plc["reconnects"] == plc0["reconnects"] + 1
    assert plc["gaps"] == plc0["gaps"] + 2 + plc["stalls"] - plc0["stalls"]
    assert plc["gap_open_since"] is not None
    assert one(m, "tierproof_device_gap_open_seconds", device="plc1", protocol="modbus") > 0
    assert mq["dropped"] == {"wrong type": 1} and mq["samples_delivered"] == 3
    assert one(m, "tierproof_device_drops_total", device="mq", protocol="mqtt",
               reason="wrong_type") == 1
    # what the writer wrote is what the store counted (health reads the store's own counter)
    health = (await c.get("/api/v1/health")).json()
    assert one(m, "tierproof_store_points_written_total") == health["store"]["points_written"]
    assert one(m, "tierproof_store_points_written_total") == sum(
        d["samples_stored"] for d in after.values())
    assert one(m, "tierproof_store_pending_batches") == 0
    assert one(m, "tierproof_build_info", version=health["version"], store="sqlite") == 1
    # the lean writer writes what prometheus_client's own does, byte for byte (a fixed clock:
    # the open gap's age would differ between two collections otherwise)
    reg = CollectorRegistry()
    reg.register(GatewayCollector(api.app.state, clock_ns=lambda: 1_800_000_000 * 10**9))
    reg.register(_Http(api.app.state.http_stats))
    assert exposition(reg) == generate_latest(reg)
    assert b'reason="wrong_type"' in exposition(reg)


class _Http:
    def __init__(self, stats: HttpStats) -> None:
        self.stats = stats

    def collect(self) -> Any:
        return self.stats.collect()


def test_the_lean_writer_escapes_label_values_as_prometheus_client_does() -> None:
    reg = CollectorRegistry()
    odd = ['plain', 'quote " in it', "back\\slash", "new\nline", "ünïcode", ""]
    c = CounterMetricFamily("tierproof_x", "help with \\ and \n", labels=["device", "reason"])
    g = GaugeMetricFamily("tierproof_y", "a gauge", labels=["device"])
    for i, v in enumerate(odd):
        c.add_metric([v, "r"], i)
        g.add_metric([v], 1e21 + i if i % 2 else 0.1 * i)
    reg.register(_Fixed([c, g]))
    assert exposition(reg) == generate_latest(reg)
    assert 'device="quote \\" in it"' in exposition(reg).decode()


class _Fixed:
    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> Any:
        return iter(self.families)


def _counts(d: dict[str, Any]) -> tuple[Any, ...]:
    return (d["samples_delivered"], d["samples_stored"], d["reconnects"], d["gaps"], d["dropped"],
            d["stalls"], d["state"])


async def _state(c: httpx.AsyncClient, name: str, state: str) -> bool:
    return bool((await status(c))[name]["state"] == state)


async def test_an_oversize_payload_increments_the_drop_counter_with_its_reason(api: Api) -> None:
    c = api.client
    key = {"device": "mq", "protocol": "mqtt"}
    await until(lambda: _state(c, "mq", "connected"), "the MQTT device to connect")
    m0 = await scrape(c)
    assert ("reason", "payload_too_large") not in dict(
        k for labels in m0.get("tierproof_device_drops_total", {}) for k in labels)
    received0 = one(m0, "tierproof_device_points_received_total", **key)
    with publisher(api.broker) as pub:
        publish_all(pub, [("tp/L1/M1/speed_rpm", "9" * (MAX_PAYLOAD + 1)),
                          ("tp/L1/M1/speed_rpm", "1" * (10 * MAX_PAYLOAD)),
                          ("tp/L1/M1/speed_rpm", "42")])  # after them: still collected

    async def handled() -> Samples | None:
        m = await scrape(c)
        return m if one(m, "tierproof_device_points_received_total", **key) > received0 else None

    m = await until(handled, "the good message after the oversize ones")
    assert one(m, "tierproof_device_drops_total", **key, reason="payload_too_large") == 2
    assert one(m, "tierproof_device_points_received_total", **key) == received0 + 1
    assert (await status(c))["mq"]["dropped"] == {"payload too large": 2}
    # a reconnect makes a new collector: the counts go on from where they were (a counter)
    reconnects = (await status(c))["mq"]["reconnects"]
    await asyncio.to_thread(api.broker.restart)

    async def reconnected() -> bool:
        s = (await status(c))["mq"]
        return s["state"] == "connected" and s["reconnects"] > reconnects

    await until(reconnected, "the MQTT device to reconnect")
    m = await scrape(c)
    assert one(m, "tierproof_device_drops_total", **key, reason="payload_too_large") == 2
    assert (await status(c))["mq"]["dropped"] == {"payload too large": 2}


async def test_the_latency_histogram_counts_requests_by_route_template(api: Api) -> None:
    c = api.client
    base = await scrape(c)
    hist = "tierproof_http_request_duration_seconds"
    latest = "/api/v1/tags/{tag_path}/latest"

    def count(m: Samples, route: str, status: str) -> float:
        return m.get(f"{hist}_count", {}).get(
            (("method", "GET"), ("route", route), ("status", status)), 0.0)

    async def ok_latest() -> bool:  # both tags have a value
        rs = [await c.get(f"/api/v1/tags/{p}/latest")
              for p in (f"{PLC_ASSET}/count", f"{MQ_ASSET}/speed_rpm")]
        return all(r.status_code == 200 for r in rs)

    with publisher(api.broker) as pub:
        publish_all(pub, [("tp/L1/M1/speed_rpm", "5")])
    await until(ok_latest, "a latest value of both tags")
    mid = await scrape(c)
    n_ok = count(mid, latest, "2xx")
    assert n_ok >= 2 and n_ok % 2 == 0  # one series for both tag paths
    for _ in range(3):
        assert (await c.get(f"/api/v1/tags/{PLC_ASSET}/count/latest")).status_code == 200
    assert (await c.get(f"/api/v1/tags/{PLC_ASSET}/nope/latest")).status_code == 404
    assert (await c.get("/no/such/path")).status_code == 404
    m = await scrape(c)
    assert count(m, latest, "2xx") == n_ok + 3
    assert count(m, latest, "4xx") == count(base, latest, "4xx") + 1
    assert count(m, "unmatched", "4xx") == count(base, "unmatched", "4xx") + 1
    # each scrape before this one is counted under its own route
    assert count(m, "/metrics", "2xx") == count(base, "/metrics", "2xx") + 2
    # the buckets are cumulative and end with every request
    key = (("method", "GET"), ("route", latest), ("status", "2xx"))
    buckets = sorted(((float(dict(k)["le"]), v) for k, v in m[f"{hist}_bucket"].items()
                      if tuple(x for x in k if x[0] != "le") == key))
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)
    assert buckets[-1] == (float("inf"), n_ok + 3)
    assert m[f"{hist}_sum"][key] > 0
    assert one(m, "tierproof_http_requests_in_flight") == 1  # the scrape itself
    # no label carries a tag path: the route is a template
    text = (await c.get("/metrics")).text
    assert PLC_ASSET not in text and "nope" not in text and "/no/such/path" not in text


async def test_metrics_is_in_the_openapi_as_prometheus_text(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    op = spec["paths"]["/metrics"]["get"]
    assert "text/plain; version=0.0.4; charset=utf-8" in op["responses"]["200"]["content"]
    assert op["operationId"].startswith("get_metrics")
    assert op["summary"]
