"""OPC UA events as a stop-reason source, against the plant simulator over real sockets.

The simulator's machine emits a ``MachineStopEventType`` event at each stop piece with a
reason code (``simulators.opcua``); the collector subscribes to the machine node's events
through a ``reason_event`` tag and maps them to reasons by message. The events stored, with
the machine's state and mode history, give each stop its reason through ``api.losses`` (the
API's code): these must be the simulator's truth (``simulators.truth.stop_truth``, no code
from ``kpi/``) for every stop that began while the subscription was live.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from asyncua import ua

from api.gateway import tag_records
from api.losses import SOURCE_EVENT, asset_stops, stops_body
from api.service import KpiService
from collector import OpcUaCollector
from config.errors import ConfigError
from config.loader import settings_from_dict
from config.reasons import DEFAULT_REASONS
from config.settings import Settings
from config.times import to_ns
from simulators import Plant
from simulators.opcua import NAMESPACE_URI, serve_opcua
from simulators.truth import stop_truth
from store.batch import Batch
from store.sqlite import SqliteStore
from tests.helpers import TickingClock, one_week_demo, wait_until

NOW = datetime(2026, 11, 21, 16, 0, tzinfo=UTC)  # a Saturday in Shanghai: both shifts run
ASSET = "demo/assembly/line3/assembler-01"
STEP_NS = 300 * 1_000_000_000  # simulated time per simulator refresh
OPEN = [ua.SecurityPolicyType.NoSecurity]
SIM_SPAN = timedelta(hours=40)  # simulated time the collector listens for


def event_rules() -> list[dict[str, str]]:
    """One rule per shipped reason, by the simulator's message "<name> stopped: <id>"."""
    return [{"event_type": "MachineStopEventType", "message": f"stopped: {r.id}$", "reason": r.id}
            for r in DEFAULT_REASONS]


def event_settings(tmp: Any) -> Settings:
    """The demo plant with assembler-01's stop_reason tag replaced by a reason_event tag on
    its machine node: events are the asset's only reason source."""
    data = one_week_demo()
    data["store"] = {"type": "sqlite", "path": str(tmp / "store.db")}
    dev = next(d for d in data["devices"] if d["protocol"] == "opcua")
    dev["tags"] = [t for t in dev["tags"] if not (t["asset"] == ASSET and t.get("role") == "stop_reason")]
    dev["tags"].append({"name": "stop_events", "asset": ASSET, "role": "reason_event",
                        "node_id": f"nsu={NAMESPACE_URI};s={ASSET}",
                        "events": {"map": event_rules()}})
    return settings_from_dict(data)


async def collect_events(settings: Settings, plant: Plant, ids: dict[str, int], t0: int
                         ) -> tuple[list[Batch], int, int, int]:
    """Run the simulator from t0 on a ticking clock and the collector's event subscription
    until SIM_SPAN of simulated time passed: (event batches, first and last simulated
    instant while subscribed, events the simulator emitted meanwhile)."""
    dev = next(d for d in settings.devices if d.name == "line3-opcua")
    tag = next(t for t in dev.tags if t.role == "reason_event")
    clock = TickingClock(t0, STEP_NS)
    only = dev.model_copy(update={"tags": [tag]})
    batches: list[Batch] = []
    async with serve_opcua(plant, [ASSET], interval_s=0.01, clock=clock, security=OPEN) as sim:
        endpoint = sim.endpoint
        only = only.model_copy(update={"endpoint": endpoint})
        clock.step = 0  # the plant stands still until the subscription is live
        async with OpcUaCollector(only, ids) as col:
            it = col.batches().__aiter__()
            first = asyncio.ensure_future(it.__anext__())
            # the subscription is live once subscribe() returned: wait for its handle
            await wait_until(lambda: bool(col.events._handles), what="the event subscription")
            start, emitted0 = clock.t, sim.events_emitted
            clock.step = STEP_NS
            end = start + int(SIM_SPAN.total_seconds() * 1e9)
            pending: asyncio.Future[Batch] = first
            while clock.t < end:
                done, _ = await asyncio.wait({pending}, timeout=0.5)
                if done:
                    batches.append(pending.result())
                    pending = asyncio.ensure_future(it.__anext__())
            clock.step = 0  # and again while what was emitted arrives: no stop after stop_at
            stop_at, emitted = clock.t, sim.events_emitted - emitted0
            # what was emitted before stop_at arrives within a few publishing intervals
            deadline = asyncio.get_running_loop().time() + 5
            while sum(len(b) for b in batches) < emitted and asyncio.get_running_loop().time() < deadline:
                done, _ = await asyncio.wait({pending}, timeout=0.5)
                if done:
                    batches.append(pending.result())
                    pending = asyncio.ensure_future(it.__anext__())
            pending.cancel()
            assert col.events.stats.unmapped == 0
    return batches, start, stop_at, emitted


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("opcua-events")
    settings = event_settings(tmp)
    plant = Plant(settings, now=NOW)
    store = SqliteStore(tmp / "store.db")
    ids = store.register_tags(tag_records(settings))
    t0 = to_ns(NOW - timedelta(hours=41))
    batches, start, stop_at, emitted = asyncio.run(collect_events(settings, plant, ids, t0))
    # the state and mode history of the same span, as collectors would have stored it
    history = {p: i for p, i in ids.items() if p.startswith(ASSET + "/") and not p.endswith("/stop_events")}
    for b in plant.history_batches(history, t0 - 90_000 * 10**9, stop_at + 3_600 * 10**9):
        store.write(b)
    for b in batches:
        store.write(b)
    return {"settings": settings, "store": store, "plant": plant, "start": start,
            "stop_at": stop_at, "emitted": emitted, "batches": batches,
            "tag_id": ids[f"{ASSET}/stop_events"]}


def test_every_emitted_event_is_stored_with_its_reason_and_source(collected: dict[str, Any]) -> None:
    store: SqliteStore = collected["store"]
    texts = store.read_text(collected["tag_id"], 0, 2**62)
    assert collected["emitted"] >= 5, "too few stops in the span to test anything"
    assert len(texts) == collected["emitted"]
    reasons = {r.id for r in DEFAULT_REASONS}
    for ts, text, q in texts:
        doc = json.loads(text)
        assert q == 0 and doc["reason"] in reasons
        assert doc["source_name"] == "assembler-01"
        assert doc["message"] == f"assembler-01 stopped: {doc['reason']}"
        assert doc["severity"] == 500
        assert doc["event_type"].endswith(tuple("0123456789"))  # a node id
        assert collected["start"] - STEP_NS <= ts <= collected["stop_at"]


def test_event_sourced_reasons_equal_the_truth(collected: dict[str, Any]) -> None:
    settings: Settings = collected["settings"]
    store: SqliteStore = collected["store"]
    # the stops that began while the subscription was live (one refresh of margin)
    a, b = collected["start"] + STEP_NS, collected["stop_at"] - STEP_NS
    service = KpiService(settings, store, rollups=False)
    asset = settings.asset(ASSET)
    tree = settings.reasons.tree()
    with service.snapshot():
        it = asset_stops(service, asset, a, b, tree, settings.reasons.small_stop_s)
    truth = stop_truth(collected["plant"], ASSET, a, b, settings)
    want = {e["start_ns"]: e for e in truth["events"]}
    rows = stops_body([it], tree, settings.reasons.small_stop_s, {}, None, 10**6)["stops"]
    got = {int(r["id"].rsplit("@", 1)[1]): r for r in rows}
    assert len(want) >= 5
    # the first stop may have begun before the window (its event unseen): skip it
    starts = sorted(s for s in want if s > a)
    assert [s for s in sorted(got) if s > a] == starts
    by_event = 0
    for s in starts:
        w, r = want[s], got[s]
        assert r["reason"] == w["reason"], (s, r, w)
        assert r["loss_type"] == w["loss_type"]
        if w["reason"] != "unassigned":
            by_event += 1
            assert r["reason_source"] == SOURCE_EVENT
            assert r["source_tag"] == f"{ASSET}/stop_events"
            assert r["event_source"] == "assembler-01"
            assert r["event_message"] == f"assembler-01 stopped: {w['reason']}"
            assert r["event_time"] is not None
        else:
            assert r["reason_source"] is None
    assert by_event >= 5
    # seconds per reason, as the loss analysis sums them, equal the truth's
    got_s: dict[str, float] = {}
    for r in rows:
        if int(r["id"].rsplit("@", 1)[1]) > a:
            got_s[r["reason"]] = got_s.get(r["reason"], 0.0) + r["duration_s"]
    want_s: dict[str, float] = {}
    for s in starts:
        e = want[s]
        want_s[e["reason"]] = want_s.get(e["reason"], 0.0) + (e["end_ns"] - e["start_ns"]) / 1e9
    assert got_s.keys() == want_s.keys()
    for k in want_s:
        assert np.isclose(got_s[k], want_s[k], rtol=0, atol=1e-6), k


def test_event_mapping_config_names_the_field() -> None:
    data = one_week_demo()
    dev = next(d for d in data["devices"] if d["protocol"] == "opcua")
    i = len(dev["tags"])
    dev["tags"].append({"name": "stop_events", "asset": ASSET, "role": "reason_event",
                        "node_id": f"nsu={NAMESPACE_URI};s={ASSET}",
                        "events": {"map": [{"message": "jam", "reason": "jammed"}]}})
    di = data["devices"].index(dev)
    with pytest.raises(ConfigError) as exc:
        settings_from_dict(data)
    assert f"devices[{di}].tags[{i}].events.map[0].reason" in str(exc.value)
    assert "no reason 'jammed'" in str(exc.value)
    dev["tags"][-1]["events"]["map"][0] = {"message": "([", "reason": "jam"}
    with pytest.raises(ConfigError) as exc:
        settings_from_dict(data)
    assert f"devices[{di}].tags[{i}].events.map[0].message" in str(exc.value)
    dev["tags"][-1]["events"]["map"][0] = {"reason": "jam"}
    with pytest.raises(ConfigError, match="needs event_type, message or both"):
        settings_from_dict(data)
    dev["tags"][-1].pop("events")
    with pytest.raises(ConfigError, match="needs events"):
        settings_from_dict(data)
    dev["tags"].pop()
    dev["mode"] = "poll"
    dev["tags"].append({"name": "stop_events", "asset": ASSET, "role": "reason_event",
                        "node_id": f"nsu={NAMESPACE_URI};s={ASSET}",
                        "events": {"map": [{"message": "jam", "reason": "jam"}]}})
    with pytest.raises(ConfigError, match="needs mode: subscribe"):
        settings_from_dict(data)
