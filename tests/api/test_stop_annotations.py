"""Operators' reasons for stops over real HTTP: POST /api/v1/stops/{id}/reason (scope write),
who and when recorded, a machine-given reason never overwritten silently, the audit, and the
annotated reasons in /stops and /losses (on the simulated demo plant's stored history)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.gateway import tag_records
from api.loss_models import AnnotationOut, AnnotationsOut, StopsOut
from config.settings import Settings
from config.times import to_ns
from simulators import Plant
from store.sqlite import SqliteStore
from tests.api.series_server import serve
from tests.helpers import api_key, one_week_demo

NOW = datetime(2026, 11, 21, 16, 0, tzinfo=UTC)
START, END = NOW - timedelta(days=1), NOW
WINDOW = {"from": START.isoformat(), "to": END.isoformat()}
ASSET = "demo/machining/line2/press-01"
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("annotations")
    data = one_week_demo()
    data["simulation"]["history_days"] = 1
    data["store"] = {"type": "sqlite", "path": str(tmp / "store.db")}
    settings = Settings.model_validate(data)
    store = SqliteStore(tmp / "store.db")
    ids = store.register_tags(tag_records(settings))
    for batch in Plant(settings, now=NOW).history_batches(ids, to_ns(START), to_ns(END)):
        store.write(batch)
    write = {"X-API-Key": api_key(settings, "write", "shift-lead")}  # before the app starts
    app = create_app(settings, store=store, collect=False, rollups_maintain=False)
    try:
        with serve(app, timeout=120) as c:
            yield c, write
    finally:
        store.close()


def stops(c: httpx.Client) -> list[dict[str, Any]]:
    r = c.get("/api/v1/stops", params={**WINDOW, "asset": ASSET})
    assert r.status_code == 200, r.text
    StopsOut.model_validate(r.json())
    got: list[dict[str, Any]] = r.json()["stops"]
    return got


def reasons(c: httpx.Client) -> dict[str, float]:
    body = c.get("/api/v1/losses", params={**WINDOW, "asset": ASSET}).json()
    return {r["reason"]: r["seconds"] for r in body["reasons"]}


def annotate(c: httpx.Client, headers: dict[str, str], stop: str, **body: Any) -> httpx.Response:
    return c.post(f"/api/v1/stops/{stop}/reason", json=body, headers=headers)


def test_annotations(clients: tuple[httpx.Client, dict[str, str]]) -> None:
    c, write = clients
    before = stops(c)
    loss_before = c.get("/api/v1/losses", params={**WINDOW, "asset": ASSET}).json()
    by_reason = reasons(c)
    free = next(s for s in before if s["reason"] == "unassigned")
    given = next(s for s in before if s["reason_source"] == "tag")
    assert free["machine_reason"] is None and given["machine_reason"] == given["reason"]

    # reading is not writing: a read key cannot annotate
    r = annotate(c, {}, free["id"], reason="material_shortage")
    assert r.status_code == 403 and r.headers["content-type"].startswith(PROBLEM)

    # a stop no signal explains gets the operator's reason, with who and when
    r = annotate(c, write, free["id"], reason="material_shortage", note="no blanks")
    assert r.status_code == 200, r.text
    made = AnnotationOut.model_validate(r.json())
    assert (made.annotated_by, made.reason, made.note) == ("shift-lead", "material_shortage", "no blanks")
    assert made.replaced_reason is None and made.stop_id == free["id"]
    after = {s["id"]: s for s in stops(c)}
    now_free = after[free["id"]]
    assert now_free["reason"] == "material_shortage" and now_free["reason_source"] == "operator"
    assert now_free["annotated_by"] == "shift-lead" and now_free["note"] == "no blanks"
    # the losses move the stop's seconds from unassigned to the reason; the total stays
    moved = reasons(c)
    assert moved.get("unassigned", 0.0) == pytest.approx(by_reason["unassigned"] - free["duration_s"])
    assert moved["material_shortage"] == pytest.approx(
        by_reason.get("material_shortage", 0.0) + free["duration_s"])
    loss_after = c.get("/api/v1/losses", params={**WINDOW, "asset": ASSET}).json()
    assert loss_after["loss_s"] == pytest.approx(loss_before["loss_s"], rel=1e-12)

    # a machine-given reason is never overwritten silently: 409 without override
    r = annotate(c, write, given["id"], reason="tool_breakage")
    assert r.status_code == 409 and r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["reason"] == given["reason"] and r.json()["reason_source"] == "tag"
    assert {s["id"]: s for s in stops(c)}[given["id"]]["reason"] == given["reason"]
    r = annotate(c, write, given["id"], reason="tool_breakage", note="insert broke",
                 override=True)
    assert r.status_code == 200, r.text
    assert (r.json()["replaced_reason"], r.json()["replaced_source"]) == (given["reason"], "tag")
    now_given = {s["id"]: s for s in stops(c)}[given["id"]]
    assert now_given["reason"] == "tool_breakage" and now_given["machine_reason"] == given["reason"]
    assert now_given["source_tag"] == f"{ASSET}/stop_reason"
    # nor is an earlier annotation
    r = annotate(c, write, free["id"], reason="no_operator")
    assert r.status_code == 409 and r.json()["reason_source"] == "operator"

    # the audit: every annotation, in order, with who, when and what it replaced
    audit = c.get("/api/v1/stops/annotations", params=WINDOW)
    assert audit.status_code == 200, audit.text
    rows = AnnotationsOut.model_validate(audit.json()).annotations
    assert [(a.stop_id, a.reason, a.replaced_reason) for a in rows] == [
        (free["id"], "material_shortage", None), (given["id"], "tool_breakage", given["reason"])]
    assert all(a.annotated_by == "shift-lead" for a in rows)


@pytest.mark.parametrize(("stop", "body", "status", "says"), [
    (f"{ASSET}@1", {"reason": "jam"}, 404, "no stop"),
    ("not-a-stop-id", {"reason": "jam"}, 404, "not a stop id"),
    ("no/such/asset/x@1763640000000000000", {"reason": "jam"}, 404, "no asset"),
    (None, {"reason": "gremlins"}, 422, "no reason 'gremlins'"),
    (None, {"reason": "unassigned"}, 422, "no reason 'unassigned'"),
    (None, {"reason": "jam", "colour": "red"}, 422, "colour"),
])
def test_bad_annotations_are_problems(clients: tuple[httpx.Client, dict[str, str]],
                                      stop: str | None, body: dict[str, Any], status: int,
                                      says: str) -> None:
    c, write = clients
    target = stop or stops(c)[0]["id"]
    r = annotate(c, write, target, **body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM) and says in r.text
