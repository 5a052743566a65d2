"""OPC UA events and alarms from node-opcua (npm, pinned in node/package-lock.json) as stop
reasons: a third-party server (node/opcua_events_server.js) raises a custom event type, a
BaseEventType with a message and an AlarmConditionType condition on a machine node while
its state variable stops and runs; tierproof's real supervisor, writer and SqliteStore
collect them through a ``reason_event`` tag, and ``api.losses`` (the API's code) gives each
stop the reason its event maps to.

What node-opcua 2.186 does, as found here: ``UAObject.raiseEvent`` sends the Time given (ms)
and the object's browse name as SourceName (``Press1``); a condition's ``raiseNewCondition``
sends an AlarmConditionType event whose SourceName is the condition source's *qualified*
browse name (``2:Press1``); an event subscription on an object whose EventNotifier is 1
receives the events it raises and the conditions it is the source of.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from peers import NodePeer

from api.gateway import tag_records
from api.losses import SOURCE_EVENT, asset_stops, stops_body
from api.service import KpiService
from collector import OpcUaCollector
from config.loader import settings_from_dict
from config.settings import Settings
from store.sqlite import SqliteStore
from tests.helpers import FAST, free_port, wait_until

NS = "urn:tierproof:interop:events"
ASSET = "interop/opcua/line1/press1"
END = 2**62
STOPPED, RUNNING = 1, 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodePeer, int]]:
    port = free_port()
    peer = NodePeer("opcua_events_server.js",
                    json.dumps({"port": port, "pki": str(tmp_path_factory.mktemp("pki-events"))}))
    peer.start()
    try:
        yield peer, port
    finally:
        peer.stop()


def settings_for(port: int, tmp: Any) -> Settings:
    return settings_from_dict({
        "assets": [{"path": ASSET, "default_mode": "Processing"}],
        "store": {"type": "sqlite", "path": str(tmp / "store.db")},
        "devices": [{
            "protocol": "opcua", "name": "press", "endpoint": f"opc.tcp://127.0.0.1:{port}/UA/events",
            "publishing_interval_ms": 50, "backoff": FAST.model_dump(),
            "tags": [
                {"name": "state", "asset": ASSET, "role": "state", "node_id": f"nsu={NS};s=Press1.State",
                 "enum": {1: "OutOfService", 3: "Executing"}},
                {"name": "alarms", "asset": ASSET, "role": "reason_event", "node_id": f"nsu={NS};s=Press1",
                 "events": {"map": [
                     # by the type's BrowseName (node-opcua's custom type)
                     {"event_type": "JamEventType", "reason": "jam"},
                     # by the type's node id (AlarmConditionType) and the message
                     {"event_type": "i=2915", "message": "(?i)tool", "reason": "tool_breakage"},
                     # by the message alone
                     {"message": "(?i)overload", "reason": "electrical_failure"},
                 ]}},
            ],
        }],
    })


def cmd(peer: NodePeer, **c: Any) -> int:
    """Run one command of the server; the instant it used, ns."""
    return int(peer.command(**c)["ok"]["time"]) * 1_000_000


async def scenario(peer: NodePeer, settings: Settings, store: SqliteStore) -> dict[str, Any]:
    ids = store.register_tags(tag_records(settings))
    dev = settings.devices[0]
    state_id, events_id = ids[f"{ASSET}/state"], ids[f"{ASSET}/alarms"]
    got: dict[str, Any] = {"start": time.time_ns()}

    async def step(**c: Any) -> int:
        at = await asyncio.to_thread(cmd, peer, **c)
        await asyncio.sleep(0.25)  # distinct instants, in order
        return at

    def stored_events() -> int:
        return len(store.read_text(events_id, 0, END))

    async with OpcUaCollector(dev, ids) as col:

        async def pump() -> None:  # what the supervisor's writer does: batches into the store
            async for b in col.batches():
                store.write(b)

        task = asyncio.create_task(pump())
        try:
            # the first state sample: both subscriptions (data change and events) are live
            await wait_until(lambda: len(store.read(state_id, 0, END, prior=False)) > 0,
                             what="the first state sample")
            await step(cmd="state", value=RUNNING)
            # 1. a jam event a moment before the machine stops (within event_tolerance_s)
            got["jam"] = await step(cmd="event", type="JamEventType", message="Jam at infeed")
            got["stop1"] = await step(cmd="state", value=STOPPED)
            await step(cmd="state", value=RUNNING)
            # 2. an overload event while stopped
            got["stop2"] = await step(cmd="state", value=STOPPED)
            got["overload"] = await step(cmd="event", type="BaseEventType",
                                         message="Motor overload, axis 2", severity=700)
            await step(cmd="state", value=RUNNING)
            # 3. an alarm condition while stopped, after an event nobody mapped
            got["stop3"] = await step(cmd="state", value=STOPPED)
            await step(cmd="event", type="BaseEventType", message="Door opened")
            got["tool"] = await step(cmd="alarm", message="Spindle tool broken", severity=900)
            await step(cmd="state", value=RUNNING)
            await step(cmd="clear")
            # 4. a stop no event explains
            got["stop4"] = await step(cmd="state", value=STOPPED)
            await step(cmd="state", value=RUNNING)
            got["end"] = time.time_ns()
            await wait_until(lambda: col.events.stats.received >= 5, what="five events received")
            await wait_until(lambda: stored_events() >= 3, what="three mapped events stored")
            await wait_until(lambda: len(store.read(state_id, got["stop4"], END, prior=False)) >= 2,
                             what="the last state changes stored")
            got["stats"] = col.events.stats
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    got["events_id"] = events_id
    return got


@pytest.fixture(scope="module")
def run(server: tuple[NodePeer, int], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    peer, port = server
    tmp = tmp_path_factory.mktemp("events-store")
    settings = settings_for(port, tmp)
    store = SqliteStore(tmp / "store.db")
    got = asyncio.run(scenario(peer, settings, store))
    got.update(settings=settings, store=store)
    return got


def test_node_opcua_events_are_stored_with_their_reason_and_source(run: dict[str, Any]) -> None:
    store: SqliteStore = run["store"]
    rows = [(ts, json.loads(text), q) for ts, text, q in store.read_text(run["events_id"], 0, END)]
    # the unmapped ones ("Door opened", the alarm's "cleared") are counted, not stored
    assert run["stats"].mapped == 3 and run["stats"].unmapped >= 2
    assert [d["reason"] for _, d, _ in rows] == ["jam", "electrical_failure", "tool_breakage"]
    assert [ts for ts, _, _ in rows] == [run["jam"], run["overload"], run["tool"]] or \
        all(abs(ts - run[k]) < 50_000_000 for (ts, _, _), k in zip(rows, ("jam", "overload", "tool"),
                                                                     strict=True))
    # node-opcua names a condition's source by its qualified browse name
    assert [(q, d["source_name"]) for _, d, q in rows] == [(0, "Press1"), (0, "Press1"),
                                                           (0, "2:Press1")]
    assert [d["message"] for _, d, _ in rows] == ["Jam at infeed", "Motor overload, axis 2",
                                                   "Spindle tool broken"]
    assert [d["severity"] for _, d, _ in rows] == [500, 700, 900]
    assert rows[2][1]["event_type"] == "i=2915"  # AlarmConditionType


def test_node_opcua_events_give_the_stops_their_reasons(run: dict[str, Any]) -> None:
    settings: Settings = run["settings"]
    service = KpiService(settings, run["store"], rollups=False)
    tree = settings.reasons.tree()
    with service.snapshot():
        it = asset_stops(service, settings.asset(ASSET), run["start"], run["end"] + 10**9, tree,
                         settings.reasons.small_stop_s)
    stops = stops_body([it], tree, settings.reasons.small_stop_s, {}, None, 100)["stops"]
    assert [int(s["id"].rsplit("@", 1)[1]) for s in stops] == [
        run["stop1"], run["stop2"], run["stop3"], run["stop4"]]
    assert [s["reason"] for s in stops] == ["jam", "electrical_failure", "tool_breakage", "unassigned"]
    assert [s["reason_source"] for s in stops] == [SOURCE_EVENT] * 3 + [None]
    assert [s["event_source"] for s in stops] == ["Press1", "Press1", "2:Press1", None]
    assert [s["event_message"] for s in stops] == ["Jam at infeed", "Motor overload, axis 2",
                                                   "Spindle tool broken", None]
    assert all(s["source_tag"] == f"{ASSET}/alarms" for s in stops[:3])
    assert stops[0]["loss_type"] == "small_stop"  # a jam of a quarter second
