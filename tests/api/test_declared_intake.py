"""Declared-evidence intake (issue 15 item 6) over HTTP: uvicorn in a subprocess on a free
port, serving a real SQLite store of the demo plant's simulated history (three days, not
collecting, roll-ups computed beforehand). Every item is read and supplied; errors name the
field by its configuration path; the audit trail gives old -> new; versions survive a restart
(a new process on the same data directory); a new labour-hours figure changes the assessment's
output per labour hour and is recorded in ``declared_versions``; a new calendar changes the
planned busy time of /kpis at once (no cached result, no roll-up row of the old calendar)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from api.declared import ITEMS
from api.gateway import tag_records
from api.rollups import RollupMaintainer, keyed_rows
from api.service import KpiService
from config import Settings, load_settings
from config.times import Calendar, iso, to_ns
from simulators import Plant
from store import SqliteStore
from store.declared import DeclaredRegistry, declared_path
from tests.helpers import api_key, free_port, one_week_demo, wait_for

ROOT = Path(__file__).resolve().parents[2]
SERVER = """
import sys, uvicorn
from api.app import create_app
from config import load_settings
app = create_app(load_settings(sys.argv[1]), collect=False, rollups_maintain=False)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""
#: who supplies: sent as X-Supplied-By (with an API key, the key of this name)
WHO = "mes-sync"
TZ = ZoneInfo("Asia/Shanghai")  # the demo's calendar
NOW = datetime.now(UTC).replace(microsecond=0)


def _day() -> tuple[datetime, datetime]:
    """The latest whole local day before today that is not a Sunday (the demo's day off)."""
    d = NOW.astimezone(TZ).date() - timedelta(days=1)
    if d.weekday() == 6:
        d -= timedelta(days=1)
    lo = datetime(d.year, d.month, d.day, tzinfo=TZ)
    return lo, lo + timedelta(days=1)


DAY = _day()
WINDOW = {"from": iso(to_ns(DAY[0])), "to": iso(to_ns(DAY[1]))}


class Api:
    """The gateway's API in a subprocess; ``restart`` starts a new one on the same files."""

    def __init__(self, cfg: Path, log: Path, key: str) -> None:
        self.cfg, self.log = cfg, log
        self.proc: subprocess.Popen[bytes] | None = None
        # a write key named WHO: the name the audit trail records as who supplied a value
        self.client = httpx.Client(timeout=120, headers={"X-Supplied-By": WHO, "X-API-Key": key})
        self.start()

    def start(self) -> None:
        port = free_port()
        with self.log.open("a") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", SERVER, str(self.cfg), str(port)],
                                         stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.client.base_url = httpx.URL(f"http://127.0.0.1:{port}")
        proc = self.proc
        wait_for(lambda: proc.poll() is None
                 and self.client.get("/api/v1/health").status_code in (200, 503), 60, "the API")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("declared")
    data = one_week_demo()
    data["simulation"]["history_days"] = 3
    data["kpi"].update(baseline=None, current={"start": WINDOW["from"], "end": WINDOW["to"]})
    data["store"] = {"type": "sqlite", "path": str(tmp / "data" / "store.db")}
    cfg = tmp / "plant.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    settings = load_settings(cfg)
    (tmp / "data").mkdir()
    with SqliteStore(tmp / "data" / "store.db") as store:
        ids = store.register_tags(tag_records(settings))
        for batch in Plant(settings, now=NOW).history_batches(
                ids, to_ns(NOW - timedelta(days=3)), to_ns(NOW)):
            store.write(batch)
        RollupMaintainer(KpiService(settings, store), backfill_days=None).run_once()
    server = Api(cfg, tmp / "server.log", api_key(settings, "admin", WHO))  # admin: /config too
    try:
        yield server
    finally:
        server.stop()
        server.client.close()
        print((tmp / "server.log").read_text()[-5000:])


def _months() -> list[str]:
    a, b = DAY[0], DAY[1] - timedelta(seconds=1)
    return sorted({f"{a.year:04d}-{a.month:02d}", f"{b.year:04d}-{b.month:02d}"})


def _labour(amount: float) -> list[dict[str, Any]]:
    return [{"period": m, "amount": amount, "unit": "h", "source": "MES labour report"}
            for m in _months()]


def _put(api: Api, item: str, value: Any, reason: str = "test") -> httpx.Response:
    return api.client.put(f"/api/v1/declared/{item}", json={"value": value, "reason": reason})


def _assess(api: Api) -> dict[str, Any]:
    r = api.client.get("/api/v1/tiers/assessment", params={**WINDOW, "tier": "excellence"})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_every_item_reads_as_the_configuration_until_supplied(api: Api) -> None:
    r = api.client.get("/api/v1/declared")
    assert r.status_code == 200, r.text
    got = {e["item"]: e for e in r.json()}
    assert set(got) == set(ITEMS)
    settings = Settings.model_validate(one_week_demo())
    assert got["assets"]["value"] == [a.model_dump(mode="json") for a in settings.assets]
    assert got["planned-downtime"]["value"] == [
        s.model_dump(mode="json") for s in settings.calendar.planned_stops]
    assert "planned_stops" not in got["calendar"]["value"]
    assert got["calendar"]["value"]["timezone"] == "Asia/Shanghai"
    assert got["labour-hours"]["value"] == [] and got["maturity"]["value"] is None
    for e in got.values():
        assert e["version"]["version"] == 0 and e["version"]["supplied_by"] == "config"
        assert e["config_path"] == ITEMS[e["item"]].path


# one valid value per item: (item, value, what the value in force must then hold)
VALID: list[tuple[str, Any, dict[str, Any]]] = [
    ("operating-cost", [{"period": "2026-11", "amount": 1.25e6, "unit": "CNY", "source": "ERP"}],
     {"0.amount": 1.25e6, "0.supplied_by": WHO}),
    ("ai-scenarios", {"source": "inventory v2", "scenarios": [
        {"name": "vision inspection", "applies_ai": True}, {"name": "AGV", "applies_ai": False}]},
     {"scenarios.0.name": "vision inspection", "supplied_by": WHO}),
    ("maturity", {"level": 3, "assessor": "CESI", "assessed_on": "2026-10-20",
                  "source": "report R-118", "supplied_by": "quality manager",
                  "supplied_at": "2026-10-21"},
     {"level": 3, "supplied_by": "quality manager", "supplied_at": "2026-10-21"}),
    ("energy-benchmark", {"value": 15.8, "unit": "kWh/standard h", "source": "industry average"},
     {"value": 15.8}),
    ("emission-factor", {"value": 0.5703, "unit": "kg CO2/kWh", "source": "grid factor 2025"},
     {"value": 0.5703}),
    ("references", {"provincial_automation_rate": {"value": 0.4, "unit": "fraction",
                                                   "source": "provincial statistics"}},
     {"provincial_automation_rate.value": 0.4}),
    ("planned-downtime", [{"name": "lunch", "start": "12:00", "end": "12:30"}],
     {"0.start": "12:00:00", "0.days.6": "sun"}),
]


def _at(value: Any, path: str) -> Any:
    for p in path.split("."):
        value = value[int(p)] if isinstance(value, list) else value[p]
    return value


@pytest.mark.parametrize(("item", "value", "want"), VALID, ids=[v[0] for v in VALID])
def test_put_then_get_each_item(api: Api, item: str, value: Any, want: dict[str, Any]) -> None:
    before = api.client.get(f"/api/v1/declared/{item}").json()["version"]["version"]
    day = datetime.now(TZ).date().isoformat()  # the plant's date as the PUT starts
    r = _put(api, item, value, reason=f"supplying {item}")
    assert r.status_code == 200, r.text
    got = api.client.get(f"/api/v1/declared/{item}").json()
    assert got == r.json()
    assert got["version"]["version"] == before + 1 and got["version"]["source"] == "api"
    assert got["version"]["supplied_by"] == WHO and got["version"]["reason"] == f"supplying {item}"
    for path, v in want.items():
        assert _at(got["value"], path) == v, path
    if ITEMS[item].entries is not None and "supplied_by" not in json.dumps(value):
        # filled in: the caller, the plant's date (the PUT may have crossed the plant's midnight)
        days = {day, datetime.now(TZ).date().isoformat()}
        assert any(d in json.dumps(got["value"]) for d in days), (days, got["value"])


# (item, value, the field path named, a word of the reason)
INVALID: list[tuple[str, Any, str, str]] = [
    ("labour-hours", [*_labour(100.0), {"period": "2025-01", "amount": 1, "unit": "h", "source": "x"},
                      {"period": "2025-02", "amount": -5, "unit": "h", "source": "x"}],
     "declared.labour_hours[{n}].amount", "greater than or equal to 0"),
    ("labour-hours", [{"period": "2026-13", "amount": 1, "unit": "h", "source": "x"}],
     "declared.labour_hours[0].period", "YYYY-MM"),
    ("labour-hours", [{"period": "2026-11", "amount": 1, "unit": "h", "source": "x"}] * 2,
     "declared.labour_hours", "one figure per period"),
    ("labour-hours", [{"period": "2026-11", "amount": 1, "unit": "h"}],
     "declared.labour_hours[0].source", "required"),
    ("maturity", {"level": 6, "assessor": "x", "assessed_on": "2026-01-01", "source": "x"},
     "declared.maturity.level", "less than or equal to 5"),
    ("calendar", {"timezone": "Mars/Olympus_Mons"}, "calendar.timezone", "unknown time zone"),
    ("calendar", {"timezone": "UTC", "planned_stops": []}, "calendar.planned_stops",
     "planned-downtime"),
    ("planned-downtime", [{"start": 1200, "end": "13:00"}], "calendar.planned_stops[0].start",
     "HH:MM"),
    ("assets", [{"path": "not/a/path"}], "assets[0].path", "site/area/line/asset"),
    ("ai-scenarios", {"source": "x", "scenarios": [{"name": "a", "applies_ai": True}] * 2},
     "declared.ai_scenarios", "unique"),
]


@pytest.mark.parametrize(("item", "value", "field", "why"), INVALID,
                         ids=[f"{v[0]}-{v[2]}" for v in INVALID])
def test_invalid_values_name_the_field_and_change_nothing(
        api: Api, item: str, value: Any, field: str, why: str) -> None:
    field = field.format(n=len(_labour(1.0)) + 1)
    before = api.client.get(f"/api/v1/declared/{item}").json()
    r = _put(api, item, value)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert field in [e["parameter"] for e in problem["errors"]], problem
    assert why in problem["detail"], problem
    assert api.client.get(f"/api/v1/declared/{item}").json() == before


def test_an_asset_register_without_a_tag_s_asset_is_refused(api: Api) -> None:
    assets = api.client.get("/api/v1/declared/assets").json()["value"]
    r = _put(api, "assets", assets[1:])
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert errors and all(e["parameter"].startswith("devices[") and e["parameter"].endswith(".asset")
                          for e in errors)
    assert f"no asset {assets[0]['path']!r}" in errors[0]["reason"]


def test_who_supplies_is_required(api: Api) -> None:
    # no API key (whose name is recorded as who supplied a value): a 401, and nothing recorded
    r = httpx.put(f"{api.client.base_url}/api/v1/declared/labour-hours",
                  json={"value": _labour(1.0), "reason": "anonymous"},
                  headers={"X-Supplied-By": "someone"})
    assert r.status_code == 401, r.text
    got = api.client.get("/api/v1/declared/labour-hours").json()
    assert got["version"]["version"] == 0, got


def test_labour_hours_change_the_assessment_and_are_recorded(api: Api) -> None:
    first = _assess(api)
    entry = first["figures"]["production_efficiency_labour"]
    assert first["declared_versions"]["labour-hours"]["version"] == 0
    assert "needs declared.labour_hours" in entry["missing"]
    assert set(first["declared_versions"]) == set(ITEMS)

    r = _put(api, "labour-hours", _labour(2000.0), reason="November's figure from the MES")
    assert r.status_code == 200, r.text
    v1 = r.json()["version"]
    second = _assess(api)
    got = second["figures"]["production_efficiency_labour"]
    assert got["missing"] is None, got
    value = got["value"]
    assert value["point"] == pytest.approx(value["standard_hours"] / value["labour_hours"], rel=1e-12)
    assert value["labour_hours"] == pytest.approx(2000.0 * sum(value["month_shares"].values()))
    assert second["declared_versions"]["labour-hours"] == {
        "version": v1["version"], "supplied_by": WHO, "supplied_at": v1["supplied_at"],
        "source": "api", "reason": "November's figure from the MES"}
    assert second["config_fingerprint"] != first["config_fingerprint"]

    r = _put(api, "labour-hours", _labour(4000.0), reason="corrected: twice the hours")
    assert r.status_code == 200, r.text
    third = _assess(api)["figures"]["production_efficiency_labour"]["value"]
    assert third["point"] == pytest.approx(value["point"] / 2, rel=1e-12)
    assert third["standard_hours"] == pytest.approx(value["standard_hours"], rel=1e-12)


def test_the_audit_trail_gives_old_and_new(api: Api) -> None:
    _put(api, "labour-hours", _labour(1000.0), reason="first")
    mark = datetime.now(UTC)
    _put(api, "labour-hours", _labour(1500.0), reason="second")
    r = api.client.get("/api/v1/declared/audit", params={"item": "labour-hours"})
    assert r.status_code == 200, r.text
    rows = r.json()
    assert [r["version"] for r in rows] == list(range(1, len(rows) + 1))
    last, before = rows[-1], rows[-2]
    assert (last["old_version"], last["reason"], last["supplied_by"]) == (last["version"] - 1,
                                                                          "second", WHO)
    assert [p["amount"] for p in json.loads(last["old"])] == [1000.0] * len(_months())
    assert [p["amount"] for p in json.loads(last["new"])] == [1500.0] * len(_months())
    assert last["old"] == before["new"]
    assert json.loads(rows[0]["old"]) == []  # version 0: the configuration has none
    # bounded by the time of supply
    since = api.client.get("/api/v1/declared/audit", params={
        "item": "labour-hours", "from": iso(to_ns(mark))}).json()
    assert [r["reason"] for r in since] == ["second"]
    until = api.client.get("/api/v1/declared/audit", params={
        "item": "labour-hours", "to": iso(to_ns(mark))}).json()
    assert until == rows[:-1]
    # an earlier version stays readable
    old = api.client.get("/api/v1/declared/labour-hours", params={"version": before["version"]})
    assert old.status_code == 200 and old.json()["in_force"] is False
    assert old.json()["value"] == json.loads(before["new"])
    assert api.client.get("/api/v1/declared/labour-hours", params={"version": 10**6}).status_code == 404


def _kpis(api: Api) -> dict[str, Any]:
    r = api.client.get("/api/v1/kpis", params=WINDOW)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _back_to_the_file(api: Api, *items: str) -> None:
    for item in items:
        r = api.client.delete(f"/api/v1/declared/{item}", params={"reason": "back to the file"})
        assert r.status_code == 200 and r.json()["version"]["version"] == 0, r.text


def test_a_new_calendar_changes_the_kpis_at_once(api: Api) -> None:
    _back_to_the_file(api, "calendar", "planned-downtime")  # the file's: its roll-up rows
    before = _kpis(api)
    assert _kpis(api) == before  # a closed window: cached from here on
    # hours whose rows reach back before the window's start come from raw samples (api.rollups)
    assert sum(a["rollups"]["from_rollups"] for a in before["assets"].values()) > 0
    cal = {"timezone": "Asia/Shanghai", "shifts": [{"name": "day", "start": "08:00", "end": "16:00"}]}
    assert _put(api, "calendar", cal, reason="one day shift").status_code == 200
    assert _put(api, "planned-downtime", [], reason="no breaks").status_code == 200
    after = _kpis(api)
    for path, a in after["assets"].items():
        assert a["elements"]["pbt_s"] == 8 * 3600, path  # the new calendar, every day of the week
        # the rows of the old calendar are not used (their key is of the old calendar)
        assert a["rollups"]["from_rollups"] == 0, path
    assert after["config_fingerprint"] != before["config_fingerprint"]
    cfg = api.client.get("/api/v1/config").json()
    assert Calendar.model_validate(cfg["calendar"]).shifts[0].name == "day"
    # back to the file's calendar: the same KPIs as before, from the same roll-up rows
    _back_to_the_file(api, "calendar", "planned-downtime")
    assert _kpis(api) == before


def test_assets_can_be_updated(api: Api) -> None:
    assets = api.client.get("/api/v1/declared/assets").json()["value"]
    assets[0]["ideal_cycle_time_s"] = 99.5
    assets[0]["description"] = "retooled"
    assert _put(api, "assets", assets, reason="new tooling").status_code == 200
    got = {a["path"]: a for a in api.client.get("/api/v1/assets").json()}
    assert got[assets[0]["path"]]["ideal_cycle_time_s"] == 99.5
    assert got[assets[0]["path"]]["description"] == "retooled"


def test_a_stored_version_the_model_no_longer_takes_is_a_precise_problem(api: Api) -> None:
    """Answers are typed per item, so a stored version that no longer fits the item's model
    is a 422 naming the version and the field, not a 500. The API never stores such a value:
    one stored by an earlier, laxer release is made here by writing the registry file directly
    (its own class, on the server's file)."""
    item = "emission-factor"
    good = {"value": 0.61, "unit": "kg CO2/kWh", "source": "grid factor 2026"}
    assert _put(api, item, good, reason="a version first").status_code == 200  # the file is open
    with DeclaredRegistry(declared_path(load_settings(api.cfg).store)) as registry:
        stale = registry.put(item, {"value": 0.61, "unit": "", "source": "old release",
                                    "supplied_by": "x", "supplied_at": "2026-01-05"},
                             "old-release", "stored before the unit was required")
    r = api.client.get(f"/api/v1/declared/{item}", params={"version": stale.version})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    detail = r.json()["detail"]
    assert f"version {stale.version} of declared {item}" in detail, detail
    assert "declared.emission_factor.unit" in detail, detail
    # nothing else is lost: the audit trail lists it (as JSON text), a new version supersedes it
    audit = api.client.get("/api/v1/declared/audit", params={"item": item}).json()
    assert audit[-1]["version"] == stale.version and json.loads(audit[-1]["new"])["unit"] == ""
    r = _put(api, item, good, reason="the unit given")
    assert r.status_code == 200 and r.json()["version"]["version"] == stale.version + 1, r.text
    assert api.client.get(f"/api/v1/declared/{item}").json()["value"]["unit"] == "kg CO2/kWh"


def test_a_version_asked_for_twice_is_refused(api: Api) -> None:
    """Not the last one silently (what FastAPI would take): a 422 naming the parameter (the
    app-wide api.query check)."""
    r = api.client.get("/api/v1/declared/labour-hours", params=[("version", "1"), ("version", "0")])
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["parameter"] == "query.version", r.text


def test_versions_survive_a_restart(api: Api) -> None:
    before = api.client.get("/api/v1/declared").json()
    audit = api.client.get("/api/v1/declared/audit").json()
    versions = _assess(api)["declared_versions"]
    assert versions["labour-hours"]["version"] >= 3
    api.restart()
    assert api.client.get("/api/v1/declared").json() == before
    assert api.client.get("/api/v1/declared/audit").json() == audit
    assert _assess(api)["declared_versions"] == versions
    r = _put(api, "labour-hours", _labour(10.0), reason="after the restart")
    assert r.json()["version"]["version"] == versions["labour-hours"]["version"] + 1


def test_retarget_computes_rows_of_the_new_calendar(tmp_path: Path) -> None:
    """The roll-up maintainer of the running app is moved to the new settings (api.routes.declared
    ``_apply``): its next pass computes rows under the new keys."""
    data = one_week_demo()
    data["store"] = {"type": "sqlite", "path": str(tmp_path / "s.db")}
    settings = Settings.model_validate(data)
    now = NOW.replace(minute=0, second=0)
    with SqliteStore(tmp_path / "s.db") as store:
        ids = store.register_tags(tag_records(settings))
        for batch in Plant(settings, now=now).history_batches(
                ids, to_ns(now - timedelta(hours=4)), to_ns(now)):
            store.write(batch)
        old = KpiService(settings, store)
        m = RollupMaintainer(old, backfill_days=1, settle_s=0)
        assert m.run_once() > 0
        other = settings.model_copy(update={"calendar": Calendar(timezone="UTC")})
        new = KpiService(other, store)
        asset = settings.assets[0]
        tags = new._tags_by_asset()[asset.path]
        key = new.rollup_key(asset, tags)
        assert key != old.rollup_key(asset, tags)
        assert not keyed_rows(store, {asset.path: key}, 0, to_ns(now))
        m.retarget(new)
        assert m.run_once() > 0
        assert keyed_rows(store, {asset.path: key}, 0, to_ns(now))


def test_tierproof_assess_uses_the_supplied_versions(api: Api) -> None:
    """``tierproof assess`` (the store read without the API) overlays the same versions."""
    served = _assess(api)
    r = subprocess.run([sys.executable, "-m", "api.cli", "assess", "--config", str(api.cfg),
                        "--from", WINDOW["from"], "--to", WINDOW["to"], "--tier", "excellence",
                        "--format", "json"], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["declared_versions"] == served["declared_versions"]
    assert got["declared_versions"]["labour-hours"]["version"] >= 1
    assert got["config_fingerprint"] == served["config_fingerprint"]
    assert (got["figures"]["production_efficiency_labour"]["value"]["labour_hours"]
            == served["figures"]["production_efficiency_labour"]["value"]["labour_hours"])


def test_a_body_over_the_bound_is_refused_unread(api: Api) -> None:
    from api.routes.declared import MAX_BODY_BYTES

    before = api.client.get("/api/v1/declared/references").json()
    big = {"value": {"x": {"value": 1, "unit": "u", "source": "s" * MAX_BODY_BYTES}}, "reason": "big"}
    r = _put(api, "references", big["value"])
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert api.client.get("/api/v1/declared/references").json() == before
