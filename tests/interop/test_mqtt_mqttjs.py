"""Plain and JSON MQTT from a publisher nobody here wrote: mqtt.js 4.3.8 (the client under
Eclipse Tahu's ``sparkplug-client``, pinned in node/package-lock.json; node/tahu_edge.js's
``publish`` command) through a real Mosquitto, collected by the real supervisor, writer and
SqliteStore.

Regression of issue 9 for the JSON path: a payload time before 1970 or after 2262 (or not
finite) is unknown -- the sample takes the gateway's receive time -- and never costs the
message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from peers import NodePeer

from collector import DeviceHealth, Supervisor
from config.mqtt import MqttDevice
from store.sqlite import SqliteStore
from store.writer import Writer
from tests.helpers import FAST, register, wait_until
from tests.mosquitto import Mosquitto

pytestmark = pytest.mark.mqtt

ASSET = "acme/assembly/L1/M1"
END = 2**62


def device(b: Mosquitto) -> MqttDevice:
    return MqttDevice.model_validate({
        "name": "mqttjs", "protocol": "mqtt", "broker": b.url, "backoff": FAST.model_dump(),
        "subscriptions": [
            {"topic": "tp/+/+/+", "template": "tp/{line}/{asset}/{signal}"},
            {"topic": "js/+/+", "format": "json", "template": "js/{line}/{asset}",
             "timestamp_field": "ts"},
            {"topic": "iso/+/+", "format": "json", "template": "iso/{line}/{asset}",
             "timestamp_field": "ts", "timestamp_format": "iso8601"},
        ],
        "tags": [
            {"asset": ASSET, "name": "count", "type": "int", "format": "plain"},
            {"asset": ASSET, "name": "speed", "field": "speed"},
        ],
    })


async def test_json_times_out_of_range_take_the_receive_time(
    mosquitto: Mosquitto, sqlite_store: SqliteStore, tahu: Callable[..., NodePeer]
) -> None:
    dev = device(mosquitto)
    ids = register(sqlite_store, dev)
    writer = Writer(sqlite_store)
    client = tahu(serverUrl=mosquitto.url, groupId="unused", edgeNode="mqttjs", devices=[])

    def publish(topic: str, payload: Any) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        client.command(cmd="publish", topic=topic, payload=text, qos=1)

    async with Supervisor([dev], sqlite_store, writer, ids) as sup:
        await wait_until(lambda: sup.status()[0].state == "connected", 60, "connected")
        before = time.time_ns()
        # ms: a valid payload time, after the others (taken now: the suite may run for long)
        t_ms = before // 1_000_000 + 3_600_000
        publish("js/L1/M1", {"ts": -1, "speed": 1})  # before 1970
        publish("js/L1/M1", '{"ts": 1e300, "speed": 2}')  # absurd
        publish("js/L1/M1", {"ts": 10**17, "speed": 3})  # ms after 2262
        publish("iso/L1/M1", {"ts": "1601-01-01T00:00:00Z", "speed": 4})  # OPC UA's null date
        publish("iso/L1/M1", {"ts": "2300-01-01T00:00:00+00:00", "speed": 5})
        publish("tp/L1/M1/count", "6")  # plain: always the receive time
        publish("js/L1/M1", {"ts": t_ms, "speed": 7})
        await wait_until(lambda: sup.status()[0].samples_delivered >= 7, 60, "seven samples")
        after = time.time_ns()
        h: DeviceHealth = sup.status()[0]
    await writer.close()
    assert h.dropped == {}
    speed = sqlite_store.read(ids[f"{ASSET}/speed"], 0, END, prior=False)
    assert sorted(speed.value.tolist()[:5]) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert all(before <= ts <= after for ts in speed.ts_ns[:5])  # the receive times
    assert (speed.value[5], speed.ts_ns[5]) == (7.0, t_ms * 1_000_000)
    _, _, gateway = sqlite_store.read_timestamps(ids[f"{ASSET}/speed"], 0, END)
    assert all(before <= ts <= after for ts in gateway)
    count = sqlite_store.read(ids[f"{ASSET}/count"], 0, END, prior=False)
    assert count.value.tolist() == [6.0] and before <= count.ts_ns[0] <= after
