"""The fast lane (``api.fastlane``): the plain ``/kpis`` and ``/tags/{path}/latest`` requests,
answered without FastAPI's routing and dependency solving, give exactly the route's answer;
everything else is the app's, as before. In process, against a real SQLite store holding two
days of the simulated demo plant, compared with the same app built without the lane."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api import deps
from api.app import create_app
from api.fastlane import FastLane
from config.settings import Settings
from store.sqlite import SqliteStore
from tests.api.test_single_flight import DAY, HOUR, stored  # noqa: F401  (a fixture)
from tests.helpers import key_headers


@dataclass
class Pair:
    lane: httpx.AsyncClient  # the app as built (fast lane on)
    plain: httpx.AsyncClient  # the same app without it, over the same store
    app: FastAPI
    settings: Settings

    def answered(self) -> int:
        m: Any = self.app.middleware_stack
        while m is not None and not isinstance(m, FastLane):
            m = getattr(m, "app", None)
        assert m is not None, "the fast lane is in the app's middleware"
        return int(m.answered)


@pytest.fixture
async def pair(stored: tuple[Settings, Path], tmp_path: Path,  # noqa: F811
               monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Pair]:
    settings, db = stored
    # one 'now' for every request (api.deps): answers compared across a second's turn would
    # differ in their Age and X-KPI-As-Of, and the default window in its computation
    fixed = time.time_ns()
    monkeypatch.setattr(deps, "time_ns", lambda: fixed)
    copy = tmp_path / "copy.db"
    copy.write_bytes(db.read_bytes())
    store = SqliteStore(copy)
    headers = key_headers(settings)
    # no roll-up maintainer: its progress would show in the bodies of two computations
    lane = create_app(settings, store=store, collect=False, rollups_maintain=False)
    plain = create_app(settings, store=store, collect=False, fast_lane=False,
                       rollups_maintain=False)
    try:
        async with lane.router.lifespan_context(lane), plain.router.lifespan_context(plain), \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=lane), headers=headers,
                                  base_url="http://tierproof", timeout=120) as a, \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=plain), headers=headers,
                                  base_url="http://tierproof", timeout=120) as b:
            yield Pair(a, b, lane, settings)
    finally:
        store.close()


def _same(a: httpx.Response, b: httpx.Response) -> None:
    assert a.status_code == b.status_code
    assert a.headers.multi_items() == b.headers.multi_items()
    assert a.content == b.content


def _tags(settings: Settings) -> list[str]:
    return [t.path for _, t in settings.all_tags()]


async def test_plain_requests_are_answered_by_the_lane_exactly_as_by_the_route(pair: Pair) -> None:
    asset = pair.settings.assets[0]
    tags = _tags(pair.settings)
    state = next(p for p in tags if p.endswith("/state"))  # its value is named (state names)
    count = next(p for p in tags if p.endswith("/good_count"))
    asks: list[tuple[str, dict[str, str]]] = [
        ("/api/v1/kpis", DAY),
        ("/api/v1/kpis", {**HOUR, "asset": asset.path}),
        ("/api/v1/kpis", {**DAY, "line": asset.line}),
        (f"/api/v1/tags/{state}/latest", {}),
        (f"/api/v1/tags/{count}/latest", {}),
    ]
    for path, params in asks:
        first = await pair.lane.get(path, params=params)  # the router's: the path is learnt
        assert first.status_code == 200, first.text
        before = pair.answered()
        again = await pair.lane.get(path, params=params)
        assert pair.answered() == before + 1, f"{path} {params} answered by the lane"
        _same(again, first)
        _same(again, await pair.plain.get(path, params=params))
    # the default window (open, answered by run_recent): with its Age and X-KPI-As-Of
    first = await pair.lane.get("/api/v1/kpis")
    before = pair.answered()
    again = await pair.lane.get("/api/v1/kpis")
    assert pair.answered() == before + 1
    assert again.status_code == 200
    assert {"age", "x-kpi-as-of", "content-type", "content-length"} <= set(again.headers)
    assert again.headers["content-type"] == "application/json"
    _same(again, first)
    _same(again, await pair.plain.get("/api/v1/kpis"))
    # /metrics labels them by their route template, as the router's answers
    text = (await pair.lane.get("/metrics")).text
    assert ('tierproof_http_request_duration_seconds_count{method="GET",route="/api/v1/kpis",'
            'status="2xx"} 8.0') in text
    assert ('tierproof_http_request_duration_seconds_count{method="GET",route='
            '"/api/v1/tags/{tag_path}/latest",status="2xx"} 4.0') in text


async def test_what_the_lane_does_not_read_is_the_apps(pair: Pair) -> None:
    tag = _tags(pair.settings)[0]
    latest = f"/api/v1/tags/{tag}/latest"
    for path in ("/api/v1/kpis", latest):  # learnt
        assert (await pair.lane.get(path, params=DAY if path.endswith("kpis") else {})).status_code == 200
    before = pair.answered()
    twice = [("from", DAY["from"]), ("to", DAY["to"]), ("asset", "a"), ("asset", "b")]
    asks: list[tuple[str, Any, dict[str, str]]] = [
        ("/api/v1/kpis", {**DAY, "tz": "Europe/Berlin"}, {}),  # times in another zone
        ("/api/v1/kpis", {**DAY, "format": "csv"}, {}),
        ("/api/v1/kpis", DAY, {"Accept": "text/csv"}),
        ("/api/v1/kpis", twice, {}),  # 422: asset given twice
        ("/api/v1/kpis", {"from": "", "to": DAY["to"]}, {}),  # a blank value
        ("/api/v1/kpis", {**DAY, "from": "yesterday-ish"}, {}),  # 422 problem
        ("/api/v1/kpis", {"from": "now-900d", "to": DAY["to"]}, {}),  # over max_kpi_window_days
        ("/api/v1/kpis", {**DAY, "asset": "no/such/asset/here"}, {}),
        (latest, {"tz": "Asia/Shanghai"}, {}),
        ("/api/v1/tags/no/such/tag/state/latest", {}, {}),  # 404, never learnt
    ]
    statuses = []
    for path, params, headers in asks:
        a = await pair.lane.get(path, params=params, headers=headers)
        b = await pair.plain.get(path, params=params, headers=headers)
        statuses.append(a.status_code)
        assert a.status_code == b.status_code, (path, params, a.text)
        assert a.headers.get("content-type") == b.headers.get("content-type")
        if a.status_code >= 400:  # problems: the same but for the error's own id
            assert a.json()["detail"] == b.json()["detail"]
        else:
            assert a.content == b.content, (path, params)
    assert 422 in statuses and 404 in statuses and 200 in statuses
    # only the lane's own errors came back to the app; none was answered by the lane
    assert pair.answered() == before
    # HEAD and other methods: the app's
    assert (await pair.lane.head(latest)).status_code == (await pair.plain.head(latest)).status_code
    assert (await pair.lane.post("/api/v1/kpis")).status_code == 405
    assert pair.answered() == before
