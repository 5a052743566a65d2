"""The demo's embedded broker (amqtt) carries MQTT between paho clients and the simulator."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest

from config import load_settings, shipped_config
from simulators import Plant, datetime_ns, embedded_broker, serve_mqtt
from tests.helpers import free_port
from tests.mosquitto import Recorder


async def test_paho_publish_subscribe_through_it() -> None:
    async with embedded_broker() as url:
        u = urlsplit(url)
        assert u.scheme == "mqtt" and u.hostname == "127.0.0.1" and u.port
        # the broker runs on this event loop: every paho wait goes to a thread
        async with Recorder(u.hostname, u.port, ["plant/#"]) as rec:
            pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="demo-pub")
            await asyncio.to_thread(pub.connect, u.hostname, u.port)
            pub.loop_start()
            pub.publish("plant/a", b"1", qos=0)
            await asyncio.to_thread(pub.publish("plant/b", b"2", qos=1).wait_for_publish, 5)
            got = await rec.until(lambda ms: len(ms) == 2, 30, "both messages")
            pub.disconnect()
            await asyncio.to_thread(pub.loop_stop)
    assert sorted((m.topic, m.payload) for m in got) == [("plant/a", b"1"), ("plant/b", b"2")]


async def test_the_simulator_publishes_through_it() -> None:
    now = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    plant = Plant(load_settings(shipped_config("demo.yaml")), now=now)
    asset = "demo/machining/line2/press-01"
    async with embedded_broker() as url:
        u = urlsplit(url)
        assert u.hostname and u.port
        async with (
            Recorder(u.hostname, u.port, ["tierproof/line2/press-01/total_count"]) as rec,
            serve_mqtt(plant, u.hostname, u.port, style="plain", assets=[asset],
                       clock=lambda: datetime_ns(now), interval_s=3600),
        ):
            got = await rec.until(lambda ms: len(ms) == 1, 30, "the counter")
    assert int(got[0].payload) == plant.machine_values(asset, datetime_ns(now)).total


async def test_given_port_and_busy_port() -> None:
    port = free_port()
    async with embedded_broker(port=port) as url:
        assert url == f"mqtt://127.0.0.1:{port}"
        with pytest.raises(OSError, match=f"embedded MQTT broker cannot listen on 127.0.0.1:{port}"):
            async with embedded_broker(port=port):
                pass
