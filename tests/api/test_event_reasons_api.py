"""Event-given stop reasons over real HTTP: /stops (JSON and CSV) shows the reasons OPC UA
events gave (``reason_source: opcua_event``, with the event's SourceName, Time and Message),
and an operator replaces one only with ``override: true``, the event's reason kept beside
the annotation (on the simulated demo plant's stored history, assembler-01's reasons coming
from the events its OPC UA simulator emits, restated from the model's timeline)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest

from api.app import create_app
from api.gateway import tag_records
from api.loss_models import StopsOut
from collector.opcua.events import event_text
from config.reasons import DEFAULT_REASONS
from config.settings import Settings
from config.times import to_ns
from simulators import Plant
from simulators.model import NATIVE_CODES
from simulators.opcua import NAMESPACE_URI, stop_message
from store.batch import Batch
from store.sqlite import SqliteStore
from tests.api.series_server import serve
from tests.helpers import api_key, one_week_demo

NOW = datetime(2026, 11, 21, 16, 0, tzinfo=UTC)
START, END = NOW - timedelta(days=1), NOW
WINDOW = {"from": START.isoformat(), "to": END.isoformat()}
ASSET = "demo/assembly/line3/assembler-01"
REASON_OF = {code: rid for rid, code in NATIVE_CODES["stop_reason"].items()}


def settings_with_events(data: dict[str, Any]) -> dict[str, Any]:
    dev = next(d for d in data["devices"] if d["protocol"] == "opcua")
    dev["tags"] = [t for t in dev["tags"] if not (t["asset"] == ASSET and t.get("role") == "stop_reason")]
    dev["tags"].append({"name": "stop_events", "asset": ASSET, "role": "reason_event",
                        "node_id": f"nsu={NAMESPACE_URI};s={ASSET}",
                        "events": {"map": [{"message": f"stopped: {r.id}$", "reason": r.id}
                                           for r in DEFAULT_REASONS]}})
    return data


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("event-reasons")
    data = settings_with_events(one_week_demo())
    data["simulation"]["history_days"] = 2
    data["store"] = {"type": "sqlite", "path": str(tmp / "store.db")}
    settings = Settings.model_validate(data)
    store = SqliteStore(tmp / "store.db")
    ids = store.register_tags(tag_records(settings))
    plant = Plant(settings, now=NOW)
    for batch in plant.history_batches(ids, to_ns(START - timedelta(days=1)), to_ns(END)):
        store.write(batch)
    # the events the OPC UA simulator emits: one per stop piece with a reason code
    tl = plant.timeline(ASSET, to_ns(START - timedelta(days=1)), to_ns(END))
    st, md, rs = (x.astype(np.int64) for x in (tl.state, tl.mode, tl.reason))
    j = np.flatnonzero(((rs[1:] != rs[:-1]) | (st[1:] != st[:-1]) | (md[1:] != md[:-1])) & (rs[1:] != 0)) + 1
    texts = [event_text(REASON_OF[int(rs[k])], "assembler-01", "ns=2;i=1",
                        stop_message("assembler-01", int(rs[k])), 500) for k in j.tolist()]
    store.write(Batch(np.full(j.size, ids[f"{ASSET}/stop_events"], np.int32), tl.seg_ns[j].astype(np.int64),
                      np.full(j.size, np.nan), np.zeros(j.size, np.uint8), np.array(texts, object)))
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


def test_event_reasons_in_stops_and_an_override_to_replace_one(
        clients: tuple[httpx.Client, dict[str, str]]) -> None:
    c, write = clients
    before = stops(c)
    ev = [s for s in before if s["reason_source"] == "opcua_event"]
    assert len(ev) >= 3
    for s in ev:
        assert s["machine_reason"] == s["reason"] and s["source_tag"] == f"{ASSET}/stop_events"
        assert s["event_source"] == "assembler-01"
        assert s["event_message"] == f"assembler-01 stopped: {s['reason']}"
        assert s["event_time"] is not None and s["event_time"] <= s["start"]
    assert all(s["reason_source"] in ("opcua_event", None) for s in before)  # no stop_reason tag
    r = c.get("/api/v1/stops", params={**WINDOW, "asset": ASSET, "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [x["event_source"] for x in rows] == [s["event_source"] or "" for s in before]

    target = ev[0]
    other = next(r.id for r in DEFAULT_REASONS if r.id != target["reason"])
    r = c.post(f"/api/v1/stops/{target['id']}/reason", json={"reason": other}, headers=write)
    assert r.status_code == 409, r.text
    assert "OPC UA event" in r.json()["detail"] and r.json()["reason_source"] == "opcua_event"
    r = c.post(f"/api/v1/stops/{target['id']}/reason", json={"reason": other, "override": True},
               headers=write)
    assert r.status_code == 200, r.text
    assert r.json()["replaced_reason"] == target["reason"]
    assert r.json()["replaced_source"] == "opcua_event"
    after = {s["id"]: s for s in stops(c)}[target["id"]]
    assert after["reason"] == other and after["reason_source"] == "operator"
    # the event's reason and who sent it stay beside the annotation
    assert after["machine_reason"] == target["reason"] and after["event_source"] == "assembler-01"
    assert after["annotated_by"] == "shift-lead"
