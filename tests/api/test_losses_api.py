"""GET /api/v1/losses and /api/v1/stops over real HTTP, on the SQLite store holding the
simulated demo plant's history (stop_reason tags over Modbus, OPC UA and MQTT as the demo
configures them), against the simulator's own truth (simulators.truth.stop_truth, no code
from kpi/)."""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.gateway import tag_records
from api.loss_models import LossesOut, StopsOut
from config.settings import Settings
from config.times import to_ns
from simulators import Plant
from simulators.truth import stop_truth
from store.sqlite import SqliteStore
from tests.api.series_server import serve
from tests.helpers import one_week_demo

# a fixed now: a Saturday in Shanghai (both shifts run)
NOW = datetime(2026, 11, 21, 16, 0, tzinfo=UTC)
START, END = NOW - timedelta(days=2), NOW
WINDOW = {"from": START.isoformat(), "to": END.isoformat()}
ASSET = "demo/machining/line1/lathe-01"
LINE = "demo/machining/line1"
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def plant_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Any]]:
    tmp = tmp_path_factory.mktemp("losses")
    data = one_week_demo()
    data["simulation"]["history_days"] = 2
    data["store"] = {"type": "sqlite", "path": str(tmp / "store.db")}
    settings = Settings.model_validate(data)
    store = SqliteStore(tmp / "store.db")
    ids = store.register_tags(tag_records(settings))
    for batch in Plant(settings, now=NOW).history_batches(ids, to_ns(START), to_ns(END)):
        store.write(batch)
    try:
        yield settings, store
    finally:
        store.close()


@pytest.fixture(scope="module")
def client(plant_settings: tuple[Settings, Any]) -> Iterator[httpx.Client]:
    settings, store = plant_settings
    app = create_app(settings, store=store, collect=False, rollups_maintain=False)
    with serve(app, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def losses(client: httpx.Client) -> dict[str, Any]:
    r = client.get("/api/v1/losses", params=WINDOW)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    LossesOut.model_validate(body)  # every field it carries is declared
    return body


def test_loss_hours_per_reason_are_the_simulators_truth(
        losses: dict[str, Any], plant_settings: tuple[Settings, Any]) -> None:
    settings = plant_settings[0]
    plant = Plant(settings, now=NOW)
    seen_reasons: set[str] = set()
    for a in settings.assets:
        got = losses["assets"][a.path]
        pbt = got["known_s"] + got["unknown_s"]
        assert pbt > 0 and got["unknown_s"] < 1e-6  # the history store knows every instant
        truth = stop_truth(plant, a.path, to_ns(START), to_ns(END), settings)
        mine = {r["reason"]: r["seconds"] for r in got["reasons"]}
        for reason in set(mine) | set(truth["reasons"]):
            assert abs(mine.get(reason, 0.0) - truth["reasons"].get(reason, 0.0)) <= 1e-3 * pbt, (
                a.path, reason)
        for lt in got["loss_types"][:4]:  # the stop loss types
            assert abs(lt["seconds"] - truth["loss_types"].get(lt["loss_type"], 0.0)) <= 1e-3 * pbt
        assert got["stops"] == len(truth["events"])
        seen_reasons |= set(mine)
    # the demo's machines give the Pareto something to rank: failures, setups, small stops
    # and stops no signal explains
    assert {"mechanical_failure", "changeover", "jam", "unassigned"} <= seen_reasons


def test_losses_sum_to_one_minus_oee(losses: dict[str, Any], client: httpx.Client) -> None:
    kpis = client.get("/api/v1/kpis", params=WINDOW).json()
    for path, got in losses["assets"].items():
        total = sum(lt["seconds"] for lt in got["loss_types"])
        assert math.isclose(total, got["loss_s"], rel_tol=1e-12)
        oee = kpis["assets"][path]["oee"]
        assert oee is not None and got["kpi_oee"] is not None
        # in time: the losses are known x (1 - OEE), to 1e-9 of the window's known time
        assert abs(total / got["known_s"] - (1 - oee)) < 1e-9, path
        assert abs(got["oee"] - oee) < 1e-9
        # availability loss is the stop time by reason: known - APT
        stops = sum(r["seconds"] for r in got["reasons"])
        assert abs(stops - (got["known_s"] - got["apt_s"])) < 1e-6
    # a selection sums its assets' seconds
    whole = losses
    assert math.isclose(whole["loss_s"], sum(a["loss_s"] for a in losses["assets"].values()),
                        rel_tol=1e-12)
    assert whole["kpi_oee"] is None and whole["units"] == len(losses["assets"])


def test_pareto_is_sorted_with_cumulative_share(losses: dict[str, Any]) -> None:
    p = losses["pareto"]
    assert p and all(a["seconds"] >= b["seconds"] for a, b in itertools.pairwise(p))
    assert math.isclose(p[-1]["cumulative_share"], 1.0, rel_tol=1e-12)
    assert math.isclose(sum(x["share"] for x in p), 1.0, rel_tol=1e-12)
    keys = {x["key"] for x in p}
    assert {"speed_loss", "scrap_rework"} <= keys
    # every positive loss is in it: reasons + speed + scrap = the total
    positive = sum(lt["seconds"] for lt in losses["loss_types"] if lt["seconds"] > 0)
    assert math.isclose(sum(x["seconds"] for x in p), positive, rel_tol=1e-12)


def test_asset_and_line_selections(client: httpx.Client, losses: dict[str, Any]) -> None:
    one = client.get("/api/v1/losses", params={**WINDOW, "asset": ASSET}).json()
    assert list(one["assets"]) == [ASSET]
    assert one["loss_s"] == losses["assets"][ASSET]["loss_s"]
    line = client.get("/api/v1/losses", params={**WINDOW, "line": LINE}).json()
    assert all(p.startswith(LINE + "/") for p in line["assets"]) and len(line["assets"]) == 3
    r = client.get("/api/v1/losses", params={**WINDOW, "asset": "no/such/asset/x"})
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)


def test_stops_are_the_truths_events(client: httpx.Client,
                                     plant_settings: tuple[Settings, Any]) -> None:
    settings = plant_settings[0]
    r = client.get("/api/v1/stops", params={**WINDOW, "asset": ASSET})
    assert r.status_code == 200, r.text
    body = r.json()
    StopsOut.model_validate(body)
    truth = stop_truth(Plant(settings, now=NOW), ASSET, to_ns(START), to_ns(END), settings)
    assert body["count"] == len(truth["events"]) and not body["truncated"]
    for got, want in zip(body["stops"], truth["events"], strict=True):
        assert got["reason"] == want["reason"] and got["loss_type"] == want["loss_type"]
        assert to_ns(datetime.fromisoformat(got["start"])) == want["start_ns"]
        assert to_ns(datetime.fromisoformat(got["end"])) == want["end_ns"]
        assert got["reason_source"] == (None if want["reason"] == "unassigned" else "tag")
    short = [s for s in body["stops"] if s["duration_s"] < settings.reasons.small_stop_s]
    assert short and all(s["loss_type"] in ("small_stop", "changeover_setup") for s in short)


def test_stops_filter_limit_and_csv(client: httpx.Client) -> None:
    every = client.get("/api/v1/stops", params=WINDOW).json()
    starts = [s["start"] for s in every["stops"]]
    assert starts == sorted(starts)
    jams = client.get("/api/v1/stops", params={**WINDOW, "reason": "jam"}).json()
    assert jams["count"] == sum(s["reason"] == "jam" for s in every["stops"]) > 0
    cut = client.get("/api/v1/stops", params={**WINDOW, "limit": 3}).json()
    assert cut["truncated"] and cut["stops"] == every["stops"][:3] and cut["count"] == every["count"]
    r = client.get("/api/v1/stops", params={**WINDOW, "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == every["count"]
    for row, s in zip(rows, every["stops"], strict=True):
        assert row["asset"] == s["asset"] and row["start"] == s["start"]
        assert float(row["duration_s"]) == s["duration_s"] and row["reason"] == s["reason"]
        assert row["source_tag"] == (s["source_tag"] or "")
    bad = client.get("/api/v1/stops", params={**WINDOW, "reason": "gremlins"})
    assert bad.status_code == 404 and "gremlins" in bad.json()["detail"]
    too_many = client.get("/api/v1/stops", params={**WINDOW, "limit": 10**7})
    assert too_many.status_code == 400 and too_many.json()["parameter"] == "limit"


def test_a_reason_tags_samples_are_named_by_reason_id(client: httpx.Client) -> None:
    r = client.get(f"/api/v1/tags/{ASSET}/stop_reason/samples", params=WINDOW)
    assert r.status_code == 200, r.text
    body = r.json()
    named = dict(zip(body["value"], body["name"], strict=True))
    assert named[0.0] is None  # no reason
    assert {n for n in named.values() if n} >= {"mechanical_failure", "jam"}
    assert all(n in ("mechanical_failure", "electrical_failure", "tool_breakage", "changeover",
                     "adjustment", "jam", "blocked", "sensor_trip", "material_shortage",
                     "no_operator", None) for n in named.values())
