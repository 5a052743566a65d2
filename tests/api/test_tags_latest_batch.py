"""GET /api/v1/tags/latest over HTTP against a real SQLite store of the demo plant's simulated
history: every entry is exactly what GET /api/v1/tags/{path}/latest answers for that tag,
selected by asset, path prefix and role, in the order of /tags; a selection of no tag is a
404 naming it, a repeated parameter a 422."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from api.app import create_app
from api.gateway import tag_records
from config import Settings
from config.times import to_ns
from simulators import Plant
from store import SqliteStore
from tests.api.series_server import serve
from tests.helpers import one_week_demo

NOW = datetime(2026, 11, 21, 16, 0, tzinfo=UTC)
LINE = "demo/machining/line1"
ASSET = "demo/machining/line1/lathe-01"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    tmp = tmp_path_factory.mktemp("latest")
    data = one_week_demo()
    data["store"] = {"type": "sqlite", "path": str(tmp / "store.db")}
    settings = Settings.model_validate(data)
    store = SqliteStore(tmp / "store.db")
    ids = store.register_tags(tag_records(settings))
    for batch in Plant(settings, now=NOW).history_batches(
            ids, to_ns(NOW - timedelta(hours=6)), to_ns(NOW)):
        store.write(batch)
    app = create_app(settings, store=store, collect=False, rollups_maintain=False)
    try:
        with serve(app, timeout=120) as c:
            yield c
    finally:
        store.close()


def one_by_one(client: httpx.Client, paths: list[str]) -> list[dict[str, object]]:
    return [client.get(f"/api/v1/tags/{p}/latest").raise_for_status().json() for p in paths]


@pytest.mark.parametrize(("query", "select"), [
    ({"asset": ASSET}, lambda t: t["asset"] == ASSET),
    ({"prefix": LINE}, lambda t: t["path"].startswith(LINE + "/")),
    ({"prefix": LINE + "/"}, lambda t: t["path"].startswith(LINE + "/")),
    ({"role": "state"}, lambda t: t["role"] == "state"),
    ({"prefix": LINE, "role": "mode"}, lambda t: t["path"].startswith(LINE + "/") and t["role"] == "mode"),
    ({}, lambda t: True),
])
def test_batch_equals_each_tags_latest(client: httpx.Client, query: dict[str, str], select: object) -> None:
    tags = client.get("/api/v1/tags").raise_for_status().json()
    paths = [t["path"] for t in tags if select(t)]  # type: ignore[operator]
    assert paths, query
    got = client.get("/api/v1/tags/latest", params=query).raise_for_status().json()
    assert [x["path"] for x in got] == paths
    assert got == one_by_one(client, paths)
    if query.get("role") == "state":  # names as the KPIs read them, not raw codes only
        assert {x["name"] for x in got} <= {"Executing", "NotExecuting", "OutOfService", "NotAvailable"}
        assert all(x["ts"] and x["quality"] == "good" for x in got), got


def test_prefix_is_a_whole_path_segment(client: httpx.Client) -> None:
    # "demo/machining/line" is a prefix of line1's paths as text, but no line's path
    r = client.get("/api/v1/tags/latest", params={"prefix": "demo/machining/line"})
    assert r.status_code == 404, r.text
    assert "prefix 'demo/machining/line'" in r.json()["detail"]


def test_unknown_asset_and_repeated_parameter(client: httpx.Client) -> None:
    r = client.get("/api/v1/tags/latest", params={"asset": "demo/nowhere/x"})
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    assert "asset 'demo/nowhere/x'" in r.json()["detail"], r.text
    r = client.get("/api/v1/tags/latest", params=[("asset", ASSET), ("asset", ASSET)])
    assert r.status_code == 422 and "asset" in r.text, r.text
    # a role no tag has selects nothing (not an error: the plant may simply have no such tag)
    assert client.get("/api/v1/tags/latest", params={"role": "nonesuch"}).json() == []
