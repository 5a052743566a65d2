"""The MQTT collector's bounded read-ahead against a real Mosquitto: a consumer slower than the
publisher (the supervisor storing into a slow store) makes the collector stop reading, so the
backlog waits in the broker, not in the gateway's memory -- and every message still arrives,
once, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest

from collector import MqttCollector
from collector.mqtt.driver import READ_AHEAD_BATCHES
from config.mqtt import MqttDevice
from tests.helpers import FAST
from tests.mosquitto import Mosquitto

pytestmark = pytest.mark.mqtt

ASSET = "plant/area/L1/M1"
BATCH = 10  # batch_max_messages: the read-ahead bound is READ_AHEAD_BATCHES x this


@pytest.fixture
def unlimited_broker() -> Iterator[Mosquitto]:
    """Mosquitto with no in-flight window (``max_inflight_messages 0``): it sends a subscriber
    everything at once, so only the collector's own bound can hold the backlog back. (Its
    default window of 20 unacknowledged messages would hide the collector's behaviour.)"""
    broker = Mosquitto(extra_config="max_inflight_messages 0\n")
    try:
        broker.start()
        yield broker
    finally:
        broker.close()


def publish_all(broker: Mosquitto, n: int) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="read-ahead-publisher")
    c.max_inflight_messages_set(1000)
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        infos = [c.publish("tp/L1/M1/seq", str(i), qos=1) for i in range(n)]
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published()
    finally:
        c.disconnect()
        c.loop_stop()


async def test_a_slow_consumer_pauses_reading_and_loses_nothing(unlimited_broker: Mosquitto) -> None:
    n = 2_000
    dev = MqttDevice.model_validate({
        "name": "slow", "protocol": "mqtt", "broker": unlimited_broker.url, "client_id": "slow",
        "subscriptions": [{"topic": "tp/+/+/+", "template": "tp/{line}/{asset}/{signal}"}],
        "tags": [{"asset": ASSET, "name": "seq"}], "backoff": FAST.model_dump(),
        "batch_max_messages": BATCH, "batch_max_ms": 0,
    })
    got: list[float] = []
    sizes: list[int] = []
    async with MqttCollector(dev, {f"{ASSET}/seq": 7}) as c:
        # every message is at the broker before the first batch is taken: without the bound
        # the collector would read all of them into its next batch
        await asyncio.to_thread(publish_all, unlimited_broker, n)
        async for b in c.batches():
            sizes.append(len(b))
            got += b.value.tolist()
            await asyncio.sleep(0.02)  # the store write of a slow store
            c.stored(b)
            if len(got) >= n:
                break
        assert c.stats.read_pauses >= 1
        assert c.stats.acked == n
    bound = READ_AHEAD_BATCHES * BATCH
    assert max(sizes) <= bound, f"a batch of {max(sizes)} messages: read ahead beyond {bound}"
    assert got == [float(i) for i in range(n)]  # each once, in order


async def test_a_backlog_larger_than_the_bound_does_not_hold_up_the_connect(
    unlimited_broker: Mosquitto,
) -> None:
    """A persistent session's backlog arrives right after CONNACK, before the SUBACK the
    connect waits for: the collector must not stop reading then (it would never see the
    SUBACK); the bound applies from the end of the connect, and the backlog drains whole."""
    n = 2_000
    dev = MqttDevice.model_validate({
        "name": "away", "protocol": "mqtt", "broker": unlimited_broker.url, "client_id": "away",
        "subscriptions": [{"topic": "tp/+/+/+", "template": "tp/{line}/{asset}/{signal}"}],
        "tags": [{"asset": ASSET, "name": "seq"}], "backoff": FAST.model_dump(),
        "batch_max_messages": BATCH, "batch_max_ms": 0, "connect_timeout_s": 10,
    })
    ids = {f"{ASSET}/seq": 7}
    async with MqttCollector(dev, ids):
        pass  # the persistent session exists from here on
    await asyncio.to_thread(publish_all, unlimited_broker, n)  # queued while we are away
    got: list[float] = []
    async with MqttCollector(dev, ids) as c:
        async for b in c.batches():
            got += b.value.tolist()
            c.stored(b)
            if len(got) >= n:
                break
    assert got == [float(i) for i in range(n)]


async def test_a_stop_while_reading_is_paused_loses_nothing(unlimited_broker: Mosquitto) -> None:
    """The gateway stops while the collector has paused reading (a batch read ahead, not
    stored): the stop is clean, and the next connection of the session gets every message
    not acknowledged -- the ones stored before the stop do not come again."""
    n = 2_000
    dev = MqttDevice.model_validate({
        "name": "stop", "protocol": "mqtt", "broker": unlimited_broker.url, "client_id": "stop",
        "clean_session": False,
        "subscriptions": [{"topic": "tp/+/+/+", "template": "tp/{line}/{asset}/{signal}"}],
        "tags": [{"asset": ASSET, "name": "seq"}], "backoff": FAST.model_dump(),
        "batch_max_messages": BATCH, "batch_max_ms": 0,
    })
    ids = {f"{ASSET}/seq": 7}
    stored: list[float] = []
    c = await MqttCollector(dev, ids).__aenter__()
    try:
        await asyncio.to_thread(publish_all, unlimited_broker, n)
        async for b in c.batches():
            stored += b.value.tolist()
            c.stored(b)
            if c.stats.read_pauses:  # paused with a batch read ahead: stop here
                break
        assert c.stats.read_pauses >= 1 and len(stored) < n
    finally:
        async with asyncio.timeout(5):  # the clean stop does not wait on the paused socket
            await c.__aexit__(None, None, None)
    async with MqttCollector(dev, ids) as c:
        async for b in c.batches():
            stored += b.value.tolist()
            c.stored(b)
            if len(stored) >= n:
                break
    assert sorted(stored) == [float(i) for i in range(n)]  # every one, once
