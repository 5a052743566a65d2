"""GET /api/v1/evidence over real HTTP (uvicorn on a free port, a real SQLite store of the demo
plant's two-day history): the zip a read key downloads unzips into a pack that verifies, its
assessment is the one /api/v1/tiers/assessment answers, and a declared item supplied through
the API is in declared.json with who supplied it and when."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import yaml

from api.app import create_app
from api.evidence import layout as L
from api.evidence import verify_pack
from api.evidence.verify import first_difference
from config import load_settings
from config.loader import shipped_config
from tests.api.series_server import serve
from tests.helpers import api_key, two_day_plant

WHO = "plant controller"


def test_the_zip_route_serves_a_pack_that_verifies(tmp_path: Path) -> None:
    cfg, _ = two_day_plant(tmp_path, yaml.safe_load(shipped_config("demo.yaml").read_text()))
    settings = load_settings(cfg)
    admin = {"X-API-Key": api_key(settings, "admin", WHO)}
    zone = ZoneInfo(settings.calendar.timezone)
    now = datetime.now(UTC)
    months = sorted({(now - timedelta(hours=h)).astimezone(zone).strftime("%Y-%m") for h in range(0, 50)})
    app = create_app(settings, collect=False)
    with serve(app, timeout=300) as client:
        assert httpx.get(f"{client.base_url}/api/v1/evidence").status_code == 401  # no key
        r = client.put("/api/v1/declared/labour-hours", headers=admin, json={
            "value": [{"period": m, "amount": 1800.0, "unit": "h", "source": "MES labour report"}
                      for m in months],
            "reason": "the month's labour hours"})
        assert r.status_code == 200, r.text
        r = client.get("/api/v1/evidence", params={"tier": "excellence"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/zip"
        assert r.headers["content-disposition"].startswith('attachment; filename="tierproof-evidence-')
        api = client.get("/api/v1/tiers/assessment", params={"tier": "excellence"})
        assert api.status_code == 200, api.text
        missing = client.get("/api/v1/evidence", params={"tier": "platinum"})
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert "no tier 'platinum'" in missing.json()["detail"]
    pack = tmp_path / "pack"
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        z.extractall(pack)
    assert "every SHA-256 matches" in str(verify_pack(pack))
    found = json.loads((pack / L.ASSESSMENT).read_text())
    # the same document as the assessment route's (within the last digits: the app's roll-up
    # maintainer may add rows between the two requests, docs/kpis.md)
    answered = api.json()
    for doc in (answered, found):  # how many hours came from roll-up rows: bookkeeping, not KPIs
        for entry in doc["assets"].values():
            entry.pop("rollups", None)
    assert first_difference(answered, found, "") is None
    labour = found["figures"]["production_efficiency_labour"]
    assert labour["missing"] is None and labour["value"]["labour_hours"] > 0
    declared = json.loads((pack / L.DECLARED).read_text())
    item = declared["items"]["labour-hours"]
    assert (item["version"], item["supplied_by"], item["source"]) == (1, WHO, "api")
    assert [(a["item"], a["version"], a["supplied_by"]) for a in declared["audit"]] == [
        ("labour-hours", 1, WHO)]
    assert found["declared_versions"]["labour-hours"]["version"] == 1
