"""GET /api/v1/kpis/series over HTTP against a real SQLite store of the demo plant's simulated
history (with its hourly roll-ups built): every bucket equals a separate /kpis call for that
bucket's window; buckets follow the plant's clock, DST days included; the bucket limit."""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest

from api.app import create_app
from api.gateway import tag_records
from api.rollups import RollupMaintainer
from api.service import KpiService
from config import Settings, settings_from_dict
from config.times import iso, to_ns
from simulators import Plant
from store import Batch, SqliteStore
from tests.api.series_server import serve
from tests.helpers import one_week_demo

# a fixed now: a Saturday in Shanghai (both shifts run), whole hours to the minute
NOW = datetime(2026, 11, 21, 16, 0, tzinfo=UTC)
LINE = "demo/machining/line1"
ASSET = "demo/machining/line1/lathe-01"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    tmp = tmp_path_factory.mktemp("series")
    data = one_week_demo()
    data["simulation"]["history_days"] = 2
    data["store"] = {"type": "sqlite", "path": str(tmp / "store.db")}
    settings = Settings.model_validate(data)
    store = SqliteStore(tmp / "store.db")
    ids = store.register_tags(tag_records(settings))
    for batch in Plant(settings, now=NOW).history_batches(
            ids, to_ns(NOW - timedelta(days=2)), to_ns(NOW)):
        store.write(batch)
    # every closed hour rolled up, as the gateway's maintainer does in the background
    RollupMaintainer(KpiService(settings, store), backfill_days=None,
                     clock_ns=lambda: to_ns(NOW)).run_once()
    app = create_app(settings, store=store, collect=False, rollups_maintain=False)
    try:
        with serve(app, timeout=120) as c:
            yield c
    finally:
        store.close()


def close(a: Any, b: Any, where: str) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (where, a, b)
    else:
        assert a == b, (where, a, b)


FIGURES = ("oee", "availability", "effectiveness", "quality_ratio", "coverage", "elements")


@pytest.mark.parametrize(("select", "bucket", "hours"), [
    ({}, "1h", 10),  # the plant total, hour by hour
    ({"line": LINE}, "1d", 40),  # local days (Shanghai), the first and last cut to the window
    ({"asset": ASSET}, "shift", 30),  # the calendar's shifts, named
])
def test_every_bucket_equals_kpis_of_its_window(client: httpx.Client, select: dict[str, str],
                                                bucket: str, hours: int) -> None:
    start, end = NOW - timedelta(hours=hours, minutes=7), NOW - timedelta(minutes=7)
    r = client.get("/api/v1/kpis/series", params={
        **select, "from": start.isoformat(), "to": end.isoformat(), "bucket": bucket})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["window"] == {"from": iso(to_ns(start)), "to": iso(to_ns(end))}
    got = body["buckets"]
    assert got[0]["from"] == body["window"]["from"] and got[-1]["to"] <= body["window"]["to"]
    if bucket != "shift":  # contiguous: the buckets tile the window
        assert got[-1]["to"] == body["window"]["to"]
        assert all(a["to"] == b["from"] for a, b in itertools.pairwise(got))
    else:
        assert {b["shift"] for b in got} == {"early", "late"} and all(b["date"] for b in got)
    if bucket == "1h":
        assert len(got) == hours + 1  # cut to the window at both ends (7 minutes off the hour)
    if bucket == "1d":  # Shanghai midnight is 16:00 UTC
        assert all(b["from"].endswith("T16:00:00Z") for b in got[1:])
    assert any(b["oee"] is not None for b in got)
    for b in got:
        k = client.get("/api/v1/kpis", params={**select, "from": b["from"], "to": b["to"]}).json()
        entry = (k["assets"][ASSET] if "asset" in select
                 else k["lines"][LINE] if "line" in select else k["total"])
        for f in FIGURES:
            close(b[f], entry[f], f"{b['from']} {f}")
        close({k: v for k, v in b.items() if k not in ("from", "to", "shift", "date")},
              {k: v for k, v in entry.items() if k not in ("evidence", "rollups")}, b["from"])


def test_series_csv_round_trip(client: httpx.Client) -> None:
    params = {"line": LINE, "from": (NOW - timedelta(hours=5)).isoformat(),
              "to": NOW.isoformat(), "bucket": "1h"}
    js = client.get("/api/v1/kpis/series", params=params).json()["buckets"]
    r = client.get("/api/v1/kpis/series", params=params, headers={"Accept": "text/csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == len(js) == 5
    for row, b in zip(rows, js, strict=True):
        assert row["from"] == b["from"] and row["to"] == b["to"]
        for k, v in b.items():
            if isinstance(v, float):
                assert float(row[k]) == v, k  # full precision: the same float
            elif v is None:
                assert row[k] == "", k
        for k, v in b["elements"].items():
            want = "" if v is None else v
            assert (float(row[f"elements.{k}"]) if want != "" else "") == want, k


def test_bucket_limit_and_bad_selection(client: httpx.Client) -> None:
    r = client.get("/api/v1/kpis/series", params={"from": "2026-01-01T00:00:00Z",
                                                  "to": "2026-06-01T00:00:00Z", "bucket": "1h"})
    assert r.status_code == 400
    p = r.json()
    assert p["parameter"] == "bucket" and p["limit"] == {"name": "api.max_series_buckets",
                                                         "value": 1500}
    assert client.get("/api/v1/kpis/series", params={"bucket": "2h"}).status_code == 422
    r = client.get("/api/v1/kpis/series", params={"asset": "no/such/asset/x"})
    assert r.status_code == 404 and "no/such/asset/x" in r.json()["detail"]


# ---------------------------------------------------------------------------- DST

BERLIN = {
    "calendar": {"timezone": "Europe/Berlin",
                 "shifts": [{"name": "night", "start": "22:00", "end": "06:00"},
                            {"name": "day", "start": "06:00", "end": "22:00"}]},
    "assets": [{"path": "s/a/l/m1", "ideal_cycle_time_s": 10}],
    "devices": [{"protocol": "modbus", "name": "plc", "host": "127.0.0.1", "enabled": False,
                 "tags": [{"name": "state", "asset": "s/a/l/m1", "address": 0, "role": "state",
                           "enum": {0: "Executing", 1: "NotExecuting"}},
                          {"name": "mode", "asset": "s/a/l/m1", "address": 1, "role": "mode",
                           "enum": {0: "Processing"}},
                          {"name": "total", "asset": "s/a/l/m1", "address": 2,
                           "role": "total_count"},
                          {"name": "good", "asset": "s/a/l/m1", "address": 3,
                           "role": "good_count"}]}],
}
# 2026-10-25: the clocks go back at 03:00 CEST (01:00 UTC); 2026-03-29 forward at 02:00 CET
DAY_BACK = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)  # 2026-10-25T00:00+02:00
DAY_FWD = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)  # 2026-03-29T00:00+01:00


@pytest.fixture(scope="module")
def berlin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    tmp = tmp_path_factory.mktemp("berlin")
    settings = settings_from_dict({**BERLIN, "store": {"type": "sqlite",
                                                       "path": str(tmp / "b.db")}})
    store = SqliteStore(tmp / "b.db")
    ids = store.register_tags(tag_records(settings))
    rng = np.random.default_rng(7)
    for day in (DAY_FWD, DAY_BACK):  # a part every ~10-20 s, the state flipping now and then
        start = to_ns(day - timedelta(hours=2))
        t = start + np.cumsum(rng.integers(10, 20, 9000)).astype(np.int64) * 10**9
        n = np.arange(1, len(t) + 1, dtype=np.float64)
        state = (rng.random(len(t)) < 0.1).astype(np.float64)
        tag = ids["s/a/l/m1/total"], ids["s/a/l/m1/good"], ids["s/a/l/m1/state"], ids["s/a/l/m1/mode"]
        store.write(Batch.of([tag[0]] * len(t), t, n))
        store.write(Batch.of([tag[1]] * len(t), t, n - (n // 50)))
        store.write(Batch.of([tag[2]] * len(t), t, state))
        store.write(Batch.of([tag[3]], [start], [0.0]))
    app = create_app(settings, store=store, collect=False, rollups_maintain=False)
    try:
        with serve(app, timeout=60) as c:
            yield c
    finally:
        store.close()


@pytest.mark.parametrize(("day", "hours"), [(DAY_BACK, 25), (DAY_FWD, 23)])
def test_dst_days_and_hours_follow_the_plant_clock(berlin: httpx.Client, day: datetime,
                                                   hours: int) -> None:
    window = {"from": (day - timedelta(hours=3)).isoformat(),
              "to": (day + timedelta(hours=hours + 1)).isoformat()}
    days = berlin.get("/api/v1/kpis/series", params={**window, "bucket": "1d"}).json()["buckets"]
    # 3 hours of the previous day, the DST day (local midnight to midnight), an hour after
    assert [(b["from"], b["to"]) for b in days][1] == (
        iso(to_ns(day)), iso(to_ns(day + timedelta(hours=hours))))
    assert [b["elements"]["window_s"] for b in days] == [3 * 3600.0, hours * 3600.0, 3600.0]
    got = berlin.get("/api/v1/kpis/series", params={**window, "bucket": "1h"}).json()["buckets"]
    assert len(got) == hours + 4  # every real hour once: the hour read twice is two buckets
    assert all(b["elements"]["window_s"] == 3600.0 for b in got)
    shifts = berlin.get("/api/v1/kpis/series", params={**window, "bucket": "shift"}).json()
    assert [b["shift"] for b in shifts["buckets"]] == ["day", "night", "day", "night"]
    night = shifts["buckets"][1]
    # the night shift crossing midnight into the DST day: 22:00 -> 06:00 local, 8 hours of
    # the clock, 9 real hours when the clocks go back and 7 when they go forward
    assert night["date"] == (day - timedelta(hours=3)).date().isoformat()
    assert night["elements"]["window_s"] == (8 + hours - 24) * 3600.0
    for b in days + got[:4] + shifts["buckets"]:
        k = berlin.get("/api/v1/kpis", params={"from": b["from"], "to": b["to"]}).json()["total"]
        close({f: b[f] for f in FIGURES}, {f: k[f] for f in FIGURES}, b["from"])
    assert any(b["oee"] for b in got)
