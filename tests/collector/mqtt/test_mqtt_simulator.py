"""End to end: the simulated plant published in each style (simulators.mqtt.publisher)
through a real Mosquitto, collected by the MQTT collector into the SqliteStore; the stored
values are the plant's ground truth."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from collector import Supervisor
from config.mqtt import MqttDevice
from config.signals import Quality
from simulators import Plant, datetime_ns
from simulators.mqtt import MQTT_SIGNALS, serve_mqtt
from store.sqlite import SqliteStore
from store.writer import Writer
from tests.helpers import FAST, health, register, wait_until
from tests.mosquitto import Mosquitto

pytestmark = pytest.mark.mqtt

NOW = datetime(2026, 11, 20, 10, 17, 3, 123000, tzinfo=UTC)
LINE1 = ["demo/machining/line1/lathe-01", "demo/machining/line1/mill-01"]
LINE2 = ["demo/machining/line2/press-01"]  # a second Sparkplug edge node (the node id is the line)
FIELDS = {  # the JSON layout of the publisher, as the README documents it
    "state": "machine.state", "mode": "machine.mode", "channel_mode": "machine.channel_mode",
    "stop_reason": "machine.stop_reason",
    "total_count": "counters.total", "good_count": "counters.good", "reject_count": "counters.reject",
    "energy_kwh": "energy.kwh", "power_kw": "energy.power_kw", "speed_rpm": "process.speed_rpm",
    "temperature_c": "process.temperature_c",
}
#: signal -> MachineValues field, where the names differ
TRUTH = {"total_count": "total", "good_count": "good", "reject_count": "reject"}
SUBSCRIPTIONS: dict[str, dict[str, Any]] = {
    "plain": {"topic": "tierproof/+/+/+", "template": "tierproof/{line}/{asset}/{signal}"},
    "json": {"topic": "tierproof/+/+", "format": "json", "template": "tierproof/{line}/{asset}",
             "timestamp_field": "ts"},
    "sparkplug": {"format": "sparkplug", "group_id": "tierproof"},
}


def device(broker: str, style: str, assets: list[str] = LINE1) -> MqttDevice:
    tags = []
    for asset in assets:
        for signal in MQTT_SIGNALS:
            tag: dict[str, Any] = {"asset": asset, "name": signal}
            if style == "json":
                tag["field"] = FIELDS[signal]
            tags.append(tag)
    return MqttDevice.model_validate({
        "name": f"sim-{style}", "protocol": "mqtt", "broker": broker, "client_id": f"gw-{style}",
        "subscriptions": [SUBSCRIPTIONS[style]], "tags": tags, "rebirth_min_interval_s": 0,
        "backoff": FAST.model_dump(),
    })


@pytest.mark.parametrize("style", ["plain", "json", "sparkplug"])
async def test_every_signal_arrives_with_the_ground_truth(
    mosquitto: Mosquitto, sqlite_store: SqliteStore, plant: Plant, style: str
) -> None:
    t = datetime_ns(NOW)
    dev = device(mosquitto.url, style)
    ids = register(sqlite_store, dev)
    writer = Writer(sqlite_store)
    async with Supervisor([dev], sqlite_store, writer, ids) as sup:
        await wait_until(lambda: health(sup).state == "connected", what="connected")
        async with serve_mqtt(plant, mosquitto.host, mosquitto.port, style=style,  # type: ignore[arg-type]
                              assets=LINE1, clock=lambda: t, interval_s=0.05):
            await wait_until(lambda: len(sqlite_store.latest(list(ids.values()))) == len(ids),
                             what="every tag stored")
            # read while the machines are served: the Sparkplug simulator's DEATH as it stops
            # marks every tag stale (NaN, bad quality), and a CI rehearsal stored it in time
            latest = sqlite_store.latest(list(ids.values()))
        h = health(sup)
    await writer.close()
    assert h.dropped == {} and h.tag_errors == {}
    for asset in LINE1:
        truth = plant.machine_values(asset, t)
        for signal in MQTT_SIGNALS:
            s = latest[ids[f"{asset}/{signal}"]]
            want = float(getattr(truth, TRUTH.get(signal, signal)))
            assert s.value == pytest.approx(want, rel=1e-12), (asset, signal)
            assert s.quality == Quality.GOOD
            if style != "plain":  # payload times: the simulated instant
                assert s.ts_ns == t // 1_000_000 * 1_000_000, (asset, signal)


async def test_sparkplug_seq_gap_and_death_with_the_simulator(
    mosquitto: Mosquitto, sqlite_store: SqliteStore, plant: Plant
) -> None:
    t = [datetime_ns(NOW)]
    dev = device(mosquitto.url, "sparkplug", LINE1 + LINE2)
    ids = register(sqlite_store, dev)
    writer = Writer(sqlite_store)
    state = ids[f"{LINE1[0]}/state"]
    other = ids[f"{LINE2[0]}/state"]
    async with Supervisor([dev], sqlite_store, writer, ids) as sup:
        await wait_until(lambda: health(sup).state == "connected", what="connected")
        async with serve_mqtt(plant, mosquitto.host, mosquitto.port, style="sparkplug",
                              assets=LINE1 + LINE2, clock=lambda: t[0], interval_s=0.05) as pub:
            await wait_until(lambda: len(sqlite_store.latest(list(ids.values()))) == len(ids),
                             what="the births")
            pub.skip_seq()
            t[0] += 600 * 1_000_000_000  # the machines move on: DDATA flows, one seq skipped
            await wait_until(lambda: pub.rebirths >= 1, what="the node rebirthing on request")
            assert health(sup).dropped.get("sparkplug seq gap", 0) >= 1
            # the rebirth's DBIRTHs of both line 1 machines are stored (they carry the new
            # time): only then does the host know both belong to the node that dies next
            line1_states = [ids[f"{a}/state"] for a in LINE1]
            await wait_until(lambda: all(v.ts_ns >= t[0] - 10**6 for v in
                                         sqlite_store.latest(line1_states).values()),
                             what="line 1's rebirth stored")
            pub.die("line1")
            await wait_until(lambda: sqlite_store.latest([state])[state].quality == Quality.BAD_STALE,
                             what="stale marks after NDEATH")
            # the gap covers the dead node's machines only; line 2's node still reports
            await wait_until(lambda: len(sqlite_store.gaps(None, 0, 2**62)) == len(LINE1),
                             what="a gap per machine of the dead node")
            gaps = sqlite_store.gaps(None, 0, 2**62)
            assert {(g.device, g.asset) for g in gaps} == {(dev.name, a) for a in LINE1}
            assert all("NDEATH" in g.reason and g.end_ns is None for g in gaps)
            assert sqlite_store.latest([other])[other].quality == Quality.GOOD
    await writer.close()


@pytest.mark.parametrize("style", ["plain", "json", "sparkplug"])
async def test_the_demos_embedded_broker_carries_every_style(
    sqlite_store: SqliteStore, plant: Plant, style: str
) -> None:
    """amqtt (the demo's broker, in this process and event loop) instead of Mosquitto."""
    from simulators.mqtt import embedded_broker

    t = datetime_ns(NOW)
    async with embedded_broker() as url:
        host, port = url.removeprefix("mqtt://").split(":")
        dev = device(url, style)
        ids = register(sqlite_store, dev)
        writer = Writer(sqlite_store)
        async with Supervisor([dev], sqlite_store, writer, ids) as sup:
            await wait_until(lambda: health(sup).state == "connected", what="connected")
            async with serve_mqtt(plant, host, int(port), style=style,  # type: ignore[arg-type]
                                  assets=LINE1, clock=lambda: t, interval_s=0.05):
                await wait_until(lambda: len(sqlite_store.latest(list(ids.values()))) == len(ids),
                                 what="every tag stored")
            h = health(sup)
        await writer.close()
    assert h.dropped == {} and h.tag_errors == {}
