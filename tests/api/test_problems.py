"""Every error of the API is an RFC 9457 problem document (issue 13): out-of-range instants
and requests over the configured limits are 400s naming the parameter, 405 carries Allow,
inputs are echoed truncated, unexpected errors are 500s with an id that the log holds, no
response carries a file path, and the OpenAPI declares all of it. In process (the app's own
lifespan) over a real SQLite store."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from api.app import create_app
from api.problems import PROBLEM, scrub
from config import settings_from_dict
from config.times import iso
from store import Batch, SqliteStore
from tests.helpers import key_headers

SEC = 10**9
T0 = 1_700_000_000 * SEC
TAG = "s/a/l/m1/count"
SAMPLES = f"/api/v1/tags/{TAG}/samples"
WINDOW = {"from": iso(T0), "to": iso(T0 + 3600 * SEC)}


@pytest.fixture
async def app_store(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, SqliteStore, Path]]:
    db = tmp_path / "deep" / "dir" / "api.db"
    settings = settings_from_dict({
        "assets": [{"path": "s/a/l/m1", "ideal_cycle_time_s": 10}],
        "devices": [{"protocol": "modbus", "name": "plc", "host": "127.0.0.1", "enabled": False,
                     "tags": [{"name": "count", "asset": "s/a/l/m1", "address": 0,
                               "role": "good_count"}]}],
        "store": {"type": "sqlite", "path": str(db)},
        "api": {"max_kpi_window_days": 10, "max_samples": 50},
    })
    store = SqliteStore(db)
    headers = key_headers(settings)  # api.auth: every test sends a key
    app = create_app(settings, store=store, collect=False)
    try:
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://tierproof", headers=headers
        ) as c:
            (tid,) = [t["tag_id"] for t in (await c.get("/api/v1/tags")).json()]
            store.write(Batch.of([tid] * 100, T0 + np.arange(100) * SEC, np.arange(100.0)))
            yield c, store, tmp_path
    finally:
        store.close()


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert "Traceback" not in r.text and "/tmp" not in r.text
    return body


@pytest.mark.parametrize("value", ["9999-12-31", "0001-01-01", "now-99999999999d",
                                   "9999-12-31T23:59:59-05:00", "now+999999w", "1969-12-31"])
@pytest.mark.parametrize(("url", "param"), [
    ("/api/v1/kpis", "from"), ("/api/v1/kpis", "to"), (SAMPLES, "from"), (SAMPLES, "to"),
    ("/api/v1/tiers/assessment", "from"), ("/api/v1/kpis/deltas", "baseline_from"),
])
async def test_out_of_range_instants_are_400_naming_the_parameter(
    app_store: tuple[httpx.AsyncClient, SqliteStore, Path], url: str, param: str, value: str,
) -> None:
    c, _, _ = app_store
    params = {"from": "now-1d", "to": "now", param: value}
    if url.endswith("deltas"):
        params |= {"baseline_to": "now-2d"}
    body = _problem(await c.get(url, params=params), 400)
    assert body["parameter"] == param and f"'{param}'" in body["detail"]
    assert "1970-01-01..2262-04-11" in body["detail"]


async def test_limits_are_400_naming_the_parameter_and_the_setting(
    app_store: tuple[httpx.AsyncClient, SqliteStore, Path],
) -> None:
    c, _, _ = app_store
    body = _problem(await c.get("/api/v1/kpis", params={"from": "now-11d"}), 400)
    assert body["parameter"] == "from"
    assert body["limit"] == {"name": "api.max_kpi_window_days", "value": 10}
    assert "api.max_kpi_window_days" in body["detail"]
    body = _problem(await c.get("/api/v1/kpis/deltas", params={
        "from": "now-1d", "baseline_from": "2000-01-01", "baseline_to": "2000-02-01"}), 400)
    assert body["parameter"] == "baseline_from"
    body = _problem(await c.get("/api/v1/tiers/assessment", params={"from": "1970-01-01"}), 400)
    assert body["limit"]["name"] == "api.max_kpi_window_days"
    assert (await c.get("/api/v1/kpis", params={"from": "now-9d"})).status_code == 200

    body = _problem(await c.get(SAMPLES, params={**WINDOW, "limit": 51}), 400)
    assert body["parameter"] == "limit" and body["limit"] == {"name": "api.max_samples", "value": 50}
    page = (await c.get(SAMPLES, params={**WINDOW, "limit": 50})).json()
    assert page["count"] == 50 and page["truncated"]
    default = (await c.get(SAMPLES, params=WINDOW)).json()  # default limit: at most max_samples
    assert default["count"] == 50 and default["truncated"]
    rest = (await c.get(SAMPLES, params={"from": iso(T0 + 50 * SEC), "to": WINDOW["to"]})).json()
    assert rest["count"] == 50 and not rest["truncated"] and rest["value"][0] == 50.0


async def test_405_carries_allow(app_store: tuple[httpx.AsyncClient, SqliteStore, Path]) -> None:
    c, _, _ = app_store
    r = await c.post("/api/v1/kpis")
    _problem(r, 405)
    assert r.headers["allow"] == "GET"
    _problem(await c.delete("/api/v1/no/such/path"), 404)


async def test_echoed_input_is_truncated(app_store: tuple[httpx.AsyncClient, SqliteStore, Path]) -> None:
    c, _, _ = app_store
    huge = "x" * 50_000  # httpx refuses URLs of 64 KiB and more
    for url, params in [("/api/v1/kpis", {"from": huge}), ("/api/v1/kpis", {"asset": huge}),
                        ("/api/v1/kpis", {"line": huge}), (f"/api/v1/tags/{huge}/latest", {}),
                        ("/api/v1/tiers/assessment", {"tier": huge}),
                        (SAMPLES, {"limit": huge})]:
        r = await c.get(url, params=params)
        assert r.status_code in (404, 422), (url, r.status_code)
        body = _problem(r, r.status_code)
        assert len(r.content) < 2_000, (url, len(r.content))
        assert "x" * 40 in body["detail"] or body.get("errors"), url


async def test_unexpected_error_is_a_500_problem_whose_id_the_log_holds(
    app_store: tuple[httpx.AsyncClient, SqliteStore, Path], caplog: pytest.LogCaptureFixture,
) -> None:
    """A real fault, not a fake: a tag whose enum column holds no JSON (a damaged file) makes
    listing the tags fail inside json, an exception no handler expects. (A damaged chunk of
    samples is no longer such a fault: see the next test.)"""
    c, store, _ = app_store
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE tags SET enum = '{damaged'")
    for url in ("/api/v1/tags", "/api/v1/kpis"):  # /kpis computes in a worker thread
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="api"):
            r = await c.get(url, params=WINDOW)
        body = _problem(r, 500)
        assert body["title"] == "Internal error" and len(body["id"]) == 12
        assert body["id"] in body["detail"] and "ValueError" not in r.text
        (record,) = [rec for rec in caplog.records if body["id"] in rec.getMessage()]
        assert record.exc_info is not None and url in record.getMessage()


async def test_damaged_chunk_is_a_reported_gap_not_an_error(
    app_store: tuple[httpx.AsyncClient, SqliteStore, Path],
) -> None:
    """The fault the test above used before chunks had checksums (issue 13 item 5): a chunk
    whose ts blob lost a byte. Its samples are left out and the damage is reported: in the
    KPI evidence as a gap naming the tag, and in /health; no 500."""
    c, store, _ = app_store
    store.compact()
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE chunks SET ts = substr(ts, 1, length(ts) - 1)")
    db.close()
    r = await c.get("/api/v1/kpis", params=WINDOW)
    assert r.status_code == 200, r.text
    (gap,) = r.json()["assets"]["s/a/l/m1"]["evidence"]["gaps"]
    assert gap["tag"] == TAG and gap["reason"] == f"stored data damaged: {TAG} (checksum mismatch)"
    assert (gap["start"], gap["end"]) == (iso(T0), iso(T0 + 99 * SEC + 1))
    page = await c.get(SAMPLES, params=WINDOW)
    assert page.status_code == 200 and page.json()["count"] == 0  # the one chunk is damaged
    health = await c.get("/api/v1/health")
    assert health.status_code == 503
    assert [x["name"] for x in health.json()["reasons"] if x["part"] == "store"] == [TAG]


async def test_store_errors_name_no_file_path(
    app_store: tuple[httpx.AsyncClient, SqliteStore, Path],
) -> None:
    c, store, tmp = app_store
    store.close()  # every read now fails: "<path>: store is closed"
    body = _problem(await c.get(SAMPLES, params=WINDOW), 503)
    assert body["detail"] == "api.db: store is closed" and str(tmp) not in body["detail"]


def test_scrub_removes_paths_credentials_secrets_and_long_tokens() -> None:
    text = ("/var/lib/tierproof/data.db: open failed; see GET /api/v1/tags; "
            "http://user:hunter2@influx:8086/query said token s3cr3t-t0ken; " + "y" * 5000)
    out = scrub(text, {"s3cr3t-t0ken"})
    assert out.startswith("data.db: open failed; see GET /api/v1/tags; http://<redacted>@influx:8086")
    assert "hunter2" not in out and "s3cr3t" not in out and "<redacted>" in out
    assert "y" * 200 + "...(5000 characters)" in out and len(out) < 600


async def test_openapi_declares_every_error_as_a_problem(
    app_store: tuple[httpx.AsyncClient, SqliteStore, Path],
) -> None:
    c, _, _ = app_store
    doc = (await c.get("/openapi.json")).json()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert {"title", "status", "detail"} <= set(doc["components"]["schemas"]["Problem"]["required"])
    ops = [(p, op) for p, item in doc["paths"].items() for op in item.values()]
    assert len(ops) >= 10
    for path, op in ops:
        codes = set(op["responses"])
        assert {"405", "500", "503"} <= codes, path
        if op.get("parameters"):
            assert {"400", "422"} <= codes, path
        for code in codes - {"200"}:
            content = op["responses"][code]["content"]
            # besides the problem, only a degraded /health answers its own model (503)
            own = {PROBLEM, "application/json"} if (path, code) == ("/api/v1/health", "503") else {PROBLEM}
            assert set(content) == own, (path, code)
        assert "Allow" in op["responses"]["405"]["headers"]
    samples = doc["paths"]["/api/v1/tags/{tag_path}/samples"]["get"]["responses"]
    assert "404" in samples
