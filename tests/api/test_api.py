"""Every API endpoint over HTTP, against the real demo command (simulated plant -> Modbus ->
collectors -> SQLite -> KPIs -> API) started as a subprocess on free ports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from config import load_settings
from tests.helpers import demo_keys, wait_for

PROBLEM = "application/problem+json"


def test_kpis_for_every_asset_right_away(demo: tuple[httpx.Client, Path]) -> None:
    client, cfg = demo
    assets = [a.path for a in load_settings(cfg).assets]
    body = client.get("/api/v1/kpis").json()
    assert sorted(body["assets"]) == sorted(assets)
    for path in assets:
        entry = body["assets"][path]
        for k in ("oee", "availability", "effectiveness", "quality_ratio"):
            assert entry[k] is not None and 0 < entry[k] <= 1.5, (path, k, entry[k])
        assert entry["oee"] == pytest.approx(
            entry["availability"] * entry["effectiveness"] * entry["quality_ratio"])
        assert entry["coverage"] > 0.99
        assert {t["role"] for t in entry["evidence"]["tags"]} >= {"state", "mode", "good_count"}
    assert set(body["lines"]) == {a.rsplit("/", 1)[0] for a in assets}
    assert len(body["lines"]) == 4
    assert body["algorithm_version"] and body["config_fingerprint"]


def test_kpi_filters(demo: tuple[httpx.Client, Path]) -> None:
    client, _ = demo
    one = client.get("/api/v1/kpis", params={"asset": "demo/machining/line2/press-01",
                                             "from": "now-2d", "to": "now"}).json()
    assert list(one["assets"]) == ["demo/machining/line2/press-01"]
    line = client.get("/api/v1/kpis", params={"line": "demo/machining/line1"}).json()
    assert len(line["assets"]) == 3 and list(line["lines"]) == ["demo/machining/line1"]
    # the line's figures are the sums of its assets' elements, not a mean of ratios:
    # availability is APT over the known part of PBT (kpi.oee.Kpis.of), which is PBT only
    # while no time is unknown (a poll the busy machine let time out makes some)
    apt = sum(a["elements"]["apt_s"] for a in line["assets"].values())
    known = sum(a["elements"]["known_s"] for a in line["assets"].values())
    assert known > 0
    assert line["lines"]["demo/machining/line1"]["availability"] == pytest.approx(apt / known, rel=1e-12)


@pytest.mark.parametrize(
    ("url", "params", "status", "mentions"),
    [
        ("/api/v1/kpis", {"asset": "demo/nowhere/x/y"}, 404, "demo/nowhere/x/y"),
        ("/api/v1/kpis", {"line": "demo/machining/line9"}, 404, "line9"),
        ("/api/v1/kpis", {"from": "last tuesday"}, 422, "from"),
        ("/api/v1/kpis", {"from": "now", "to": "now-1d"}, 422, "empty"),
        ("/api/v1/tags/demo/machining/line1/lathe-01/nope/latest", {}, 404, "nope"),
        ("/api/v1/tags/demo/machining/line1/lathe-01/state/samples", {"limit": 0}, 422, "limit"),
        ("/api/v1/nothing-here", {}, 404, "Not Found"),
    ],
)
def test_bad_requests_are_problems(
    demo: tuple[httpx.Client, Path], url: str, params: dict[str, Any], status: int, mentions: str
) -> None:
    client, _ = demo
    r = client.get(url, params=params)
    assert r.status_code == status
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and mentions in body["detail"]


def test_health_assets_tags(demo: tuple[httpx.Client, Path]) -> None:
    client, cfg = demo
    settings = load_settings(cfg)
    h = client.get("/api/v1/health").json()
    assert h["status"] == "ok" and h["store"]["points_written"] > 0
    assets = client.get("/api/v1/assets").json()
    assert [a["path"] for a in assets] == [a.path for a in settings.assets]
    assert all(a["tags"] for a in assets)
    tags = client.get("/api/v1/tags").json()
    assert sorted(t["path"] for t in tags) == sorted(t.path for _, t in settings.all_tags())
    some = client.get("/api/v1/tags", params={"asset": "demo/machining/line2/robot-01"}).json()
    assert some and {t["asset"] for t in some} == {"demo/machining/line2/robot-01"}


def test_live_collection_reaches_latest_and_samples(demo: tuple[httpx.Client, Path]) -> None:
    client, _ = demo

    def live() -> bool:
        status = client.get("/api/v1/collector/status").json()
        return sorted(d["protocol"] for d in status) == ["modbus", "modbus", "mqtt", "opcua"] and all(
            d["state"] == "connected" and d["samples_delivered"] > 0 for d in status
        )

    wait_for(live, 60, "the Modbus, OPC UA and MQTT devices to deliver")
    # one machine per protocol and MQTT payload style: live samples in the last 10 minutes
    for asset in ("machining/line1/lathe-01", "assembly/line3/assembler-01", "assembly/line4/packer-01",
                  "assembly/line4/labeler-01", "assembly/line4/palletizer-01"):
        path = f"demo/{asset}/good_count"

        def fresh(path: str = path) -> bool:
            s = client.get(f"/api/v1/tags/{path}/samples", params={"from": "now-10m"}).json()
            return bool(s["count"] >= 1)

        wait_for(fresh, 30, f"a live sample of {path}")
        latest = client.get(f"/api/v1/tags/{path}/latest").json()
        assert latest["quality"] == "good" and latest["value"] is not None and latest["ts"], path
        samples = client.get(f"/api/v1/tags/{path}/samples", params={"from": "now-10m"}).json()
        assert len(samples["ts"]) == len(samples["value"]) == samples["count"], path
        # good, but for a poll a unit did not answer in time (BAD_NOT_CONNECTED, 3): what a
        # machine busy with other work can cause now and then, and the collector records
        # (CI rehearsal /tmp/ci65: one such sample of lathe-01 while a benchmark ran beside)
        assert 0 in samples["quality"] and set(samples["quality"]) <= {0, 3}, (path, samples["quality"])


def test_openapi_and_dashboard(demo: tuple[httpx.Client, Path]) -> None:
    client, _ = demo
    spec = client.get("/openapi.json").json()
    for p in ("/api/v1/health", "/api/v1/assets", "/api/v1/tags", "/api/v1/kpis",
              "/api/v1/collector/status", "/api/v1/tags/{tag_path}/latest"):
        assert p in spec["paths"], p
    assert "swagger" in client.get("/docs").text.lower()
    page = client.get("/")
    assert page.status_code == 200 and '<script type="module" src="/static/app.js">' in page.text
    app = client.get("/static/app.js")  # the page's script, served without a key, asks the API
    assert app.status_code == 200 and "/api/v1/kpis" in app.text


#: canonical names of the raw values the demo's devices send (config/demo.yaml's enums): the
#: Modbus CNC's native codes (Executing is 2 there, 3 in OPC 40001-1), OPC UA's canonical ones
LIVE_NAMES = {
    "demo/machining/line1/lathe-01/state":
        {0.0: "NotAvailable", 1.0: "NotExecuting", 2.0: "Executing", 4.0: "OutOfService"},
    "demo/machining/line1/lathe-01/channel_mode":
        {0.0: "MDI", 1.0: "Automatic", 4.0: "Manual", 5.0: "Manual"},
    "demo/assembly/line3/assembler-01/state":
        {0.0: "NotAvailable", 1.0: "OutOfService", 2.0: "NotExecuting", 3.0: "Executing"},
}


def test_collected_states_carry_canonical_names(demo: tuple[httpx.Client, Path]) -> None:
    """States and modes of a Modbus and an OPC UA machine as the demo collects them: `name`
    is the canonical name of each raw value, in the last 10 minutes (the Modbus tags' first
    poll at connect is always stored; the OPC UA subscription's values carry a gateway time,
    the backfilled history's do not) and in latest (tests/api/test_plant_time.py checks the
    stored history and tz=)."""
    client, _ = demo

    def collected() -> dict[str, dict[str, Any]] | None:
        status = {d["name"]: d for d in client.get("/api/v1/collector/status").json()}
        got = {p: client.get(f"/api/v1/tags/{p}/samples", params={"from": "now-10m"}).json()
               for p in LIVE_NAMES}
        opcua = got["demo/assembly/line3/assembler-01/state"]["gateway_ts"]
        ok = status["line1-cnc"]["samples_stored"] > 0 and any(t is not None for t in opcua)
        return got if ok else None

    for path, s in wait_for(collected, 60, "collected state samples").items():
        assert s["count"] > 0, path
        assert s["name"] == [LIVE_NAMES[path].get(v) for v in s["value"]], (path, s)
        assert all(n is not None for n, q in zip(s["name"], s["quality"], strict=True) if q == 0)
        latest = client.get(f"/api/v1/tags/{path}/latest").json()
        assert latest["name"] == LIVE_NAMES[path][latest["value"]], (path, latest)


def test_the_demo_prints_a_read_and_an_admin_key(demo: tuple[httpx.Client, Path]) -> None:
    """``tierproof demo`` prints lines with "read key" and "admin key", and the dashboard's URL
    with the read key in its fragment; the keys work with their scopes, and no key is a 401."""
    client, cfg = demo
    log = (cfg.parent / "demo.log").read_text()
    keys = demo_keys(cfg.parent / "demo.log")
    assert f"/#key={keys['read']}" in log
    url = str(client.base_url)
    read, admin = {"X-API-Key": keys["read"]}, {"X-API-Key": keys["admin"]}
    assert httpx.get(f"{url}/api/v1/assets", headers=read).status_code == 200
    assert httpx.get(f"{url}/api/v1/assets").status_code == 401
    r = httpx.get(f"{url}/api/v1/config", headers=read)
    assert r.status_code == 403 and r.json()["needed_scope"] == "admin"
    assert httpx.get(f"{url}/api/v1/config", headers=admin).status_code == 200
    # the keys file beside the demo's store holds the two demo keys, hashed
    stored = json.loads((cfg.parent / "data" / "api_keys.json").read_text())
    assert sorted((k["name"], k["scope"]) for k in stored["keys"]) == [
        ("demo-admin", "admin"), ("demo-read", "read")]
    assert keys["read"] not in json.dumps(stored) and keys["admin"] not in json.dumps(stored)
