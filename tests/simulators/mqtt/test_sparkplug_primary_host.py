"""Sparkplug 3.0 primary host through a real Mosquitto: the gateway's MQTT collector with
``primary_host_id`` publishes its retained STATE online once subscribed and offline at a
clean stop; the simulated edge node configured with that primary host publishes nothing
before it is online, then births before data. So a gateway that starts after the simulator
drops nothing and asks for no rebirth (issue 18: every demo start dropped one DDATA)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from collector import Supervisor
from collector.mqtt.sparkplug import parse_topic
from config.mqtt import MqttDevice
from config.settings import Settings
from simulators import Plant
from simulators.mqtt import serve_mqtt
from store.sqlite import SqliteStore
from store.writer import Writer
from tests.helpers import FAST, health, register, wait_until
from tests.mosquitto import Mosquitto, Recorder

pytestmark = pytest.mark.mqtt

NOW = datetime(2026, 11, 20, 10, 17, 3, tzinfo=UTC)
ASSET = "demo/assembly/line4/palletizer-01"
HOST = "tierproof"


def _device(settings: Settings, b: Mosquitto) -> MqttDevice:
    (d,) = [d for d in settings.devices if d.name == "line4-mqtt"]
    data = d.model_dump(mode="json", exclude={"password"})
    data.update(broker=b.url, client_id="gw-primary-host", backoff=FAST.model_dump(),
                subscriptions=[s for s in data["subscriptions"] if s["format"] == "sparkplug"],
                tags=[t for t in data["tags"] if t["asset"] == ASSET])
    dev = MqttDevice.model_validate(data)
    assert dev.primary_host_id == HOST  # as the shipped demo configures it
    return dev


async def test_the_edge_node_births_once_the_primary_host_is_online(
    mosquitto: Mosquitto, sqlite_store: SqliteStore, settings: Settings
) -> None:
    plant = Plant(settings, now=NOW)
    dev = _device(settings, mosquitto)
    ids = register(sqlite_store, dev)
    async with (
        Recorder(mosquitto.host, mosquitto.port, ["spBv1.0/#"]) as rec,
        serve_mqtt(plant, mosquitto.host, mosquitto.port, style="sparkplug", assets=[ASSET],
                   primary_host=HOST, interval_s=0.05) as pub,
    ):
        # connected and ticking (it would have sent NBIRTH at once without a primary host)
        await wait_until(lambda: all(s.connected for s in pub.sessions), what="connected")
        await asyncio.sleep(0.5)
        assert [m.topic for m in rec.messages] == [], "nothing before the host is online"
        assert pub.published == 0

        writer = Writer(sqlite_store)
        async with Supervisor([dev], sqlite_store, writer, ids) as sup:
            await wait_until(lambda: health(sup).samples_delivered >= 20, what="samples")
            h = health(sup)
            assert h.dropped == {} and h.last_error is None, h
        node = [parse_topic(m.topic).message_type for m in rec.messages
                if "/STATE/" not in m.topic]
        assert node[:2] == ["NBIRTH", "DBIRTH"], node
        assert "DDATA" in node and pub.rebirths == 0

        def states() -> list[dict[str, object]]:
            return [json.loads(m.payload) for m in rec.messages
                    if m.topic == f"spBv1.0/STATE/{HOST}"]

        await wait_until(lambda: len(states()) >= 2, what="the gateway's offline STATE")
        # online after subscribing, offline (the same session's timestamp) at the clean stop
        assert [s["online"] for s in states()] == [True, False], states()
        assert states()[0]["timestamp"] == states()[1]["timestamp"]
        await wait_until(lambda: not pub.sessions[0].host_online, what="the node to see it")
        sent = pub.published
        await asyncio.sleep(0.3)
        assert pub.published == sent, "silent while the primary host is offline"
    series = sqlite_store.read(ids[f"{ASSET}/state"], 0, 2**62, prior=False)
    assert len(series.value) >= 1


async def test_a_bad_primary_host_id_is_refused() -> None:
    with pytest.raises(ValueError, match="primary_host_id"):
        MqttDevice.model_validate({"name": "m", "protocol": "mqtt", "broker": "mqtt://h",
                                   "primary_host_id": "a/b",
                                   "subscriptions": [{"format": "sparkplug"}]})
