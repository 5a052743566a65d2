"""The Sparkplug B host through a real Mosquitto: births and aliases, rebirth on a ``seq`` gap
and on data before a birth, NDEATH (the MQTT Will) marks tags stale and records a gap."""

from __future__ import annotations

import socket
import time
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from collector import Supervisor
from collector.mqtt.sparkplug import (
    REBIRTH_METRIC,
    DataType,
    Metric,
    decode_payload,
    encode_payload,
    format_topic,
)
from config.mqtt import MqttDevice
from config.signals import Quality
from store.sqlite import SqliteStore
from store.writer import Writer
from tests.helpers import FAST, health, register, wait_until
from tests.mosquitto import Mosquitto, Recorder

pytestmark = pytest.mark.mqtt

GROUP, NODE, DEV = "tierproof", "L1", "M1"
ASSET = f"plant/area/{NODE}/{DEV}"
EVER = 2**62
T0 = 1_700_000_000_000  # ms


def device(b: Mosquitto) -> MqttDevice:
    return MqttDevice.model_validate({
        "name": "sp", "protocol": "mqtt", "broker": b.url, "client_id": "sp-host",
        "rebirth_min_interval_s": 0, "backoff": FAST.model_dump(),
        "subscriptions": [{"format": "sparkplug", "group_id": GROUP, "template": "+/{line}/{asset}"}],
        "tags": [
            {"asset": ASSET, "name": "speed_rpm", "format": "sparkplug"},
            {"asset": ASSET, "name": "state", "role": "state", "format": "sparkplug", "type": "int",
             "enum": {3: "Executing", 2: "NotExecuting"}},
            {"asset": ASSET, "name": "count", "metric": "good_count", "type": "int"},
        ],
    })


class Node:
    """A hand-driven Sparkplug edge node with one device (raw publishes, exact seq control)."""

    def __init__(self, b: Mosquitto, bd_seq: int = 0) -> None:
        self.bd_seq = bd_seq
        self.seq = 0
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"node-{NODE}")
        death = encode_payload([Metric("bdSeq", None, DataType.INT64, bd_seq, T0)], None, T0)
        self.c.will_set(format_topic(GROUP, "NDEATH", NODE), death, qos=1)
        self.c.connect(b.host, b.port, keepalive=30)
        self.c.loop_start()

    def send(self, mtype: str, metrics: list[Metric], *, seq: int | None = None) -> None:
        s = self.seq if seq is None else seq
        self.seq = (s + 1) % 256
        topic = format_topic(GROUP, mtype, NODE, DEV if mtype.startswith("D") else None)
        self.c.publish(topic, encode_payload(metrics, s, T0), qos=1).wait_for_publish(5)

    def births(self, t_ms: int = T0, speed: float = 1000.0, state: int = 3) -> None:
        self.seq = 0
        self.send("NBIRTH", [Metric("bdSeq", None, DataType.INT64, self.bd_seq, t_ms)])
        self.send("DBIRTH", [
            Metric("speed_rpm", 1, DataType.DOUBLE, speed, t_ms),
            Metric("state", 2, DataType.INT32, state, t_ms),
            Metric("good_count", 3, DataType.UINT64, 0, t_ms),
            Metric("unmapped", 4, DataType.STRING, "x", t_ms),
        ])

    def data(self, t_ms: int, *, speed: float | None = None, count: int | None = None,
             seq: int | None = None) -> None:
        metrics = []
        if speed is not None:
            metrics.append(Metric(None, 1, DataType.DOUBLE, speed, t_ms))
        if count is not None:
            metrics.append(Metric(None, 3, DataType.UINT64, count, t_ms))
        self.send("DDATA", metrics, seq=seq)

    def crash(self) -> None:
        """Drop the TCP connection without DISCONNECT: the broker publishes the Will."""
        sock = self.c.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        self.c.loop_stop()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def series(store: SqliteStore, ids: dict[str, int], name: str) -> Any:
    return store.read(ids[f"{ASSET}/{name}"], 0, EVER, prior=False)


def rebirths(rec: Recorder) -> int:
    n = 0
    for m in rec.messages:
        p = decode_payload(m.payload)
        assert [(x.name, x.value) for x in p.metrics] == [(REBIRTH_METRIC, True)]
        n += 1
    return n


async def test_births_aliases_and_timestamps(mosquitto: Mosquitto, sqlite_store: SqliteStore) -> None:
    dev = device(mosquitto)
    ids = register(sqlite_store, dev)
    writer = Writer(sqlite_store)
    async with Supervisor([dev], sqlite_store, writer, ids) as sup:
        await wait_until(lambda: health(sup).state == "connected", what="connected")
        node = Node(mosquitto)
        try:
            node.births()
            node.data(T0 + 1000, speed=1100.0, count=5)
            node.data(T0 + 2000, count=6)
            await wait_until(lambda: health(sup).samples_delivered >= 6, what="6 samples")
        finally:
            node.close()
    await writer.close()
    speed = series(sqlite_store, ids, "speed_rpm")
    assert speed.value.tolist() == [1000.0, 1100.0]
    assert speed.ts_ns.tolist() == [T0 * 1_000_000, (T0 + 1000) * 1_000_000]  # metric times
    assert series(sqlite_store, ids, "count").value.tolist() == [0.0, 5.0, 6.0]
    assert series(sqlite_store, ids, "state").value.tolist() == [3.0]
    assert health(sup).dropped == {}


async def test_seq_gap_requests_a_rebirth_and_data_waits_for_it(
    mosquitto: Mosquitto, sqlite_store: SqliteStore
) -> None:
    dev = device(mosquitto)
    ids = register(sqlite_store, dev)
    writer = Writer(sqlite_store)
    with Recorder(mosquitto.host, mosquitto.port, [f"spBv1.0/{GROUP}/NCMD/{NODE}"]) as rec:
        async with Supervisor([dev], sqlite_store, writer, ids) as sup:
            await wait_until(lambda: health(sup).state == "connected", what="connected")
            node = Node(mosquitto)
            try:
                node.births()
                node.data(T0 + 1000, count=1)
                node.data(T0 + 2000, count=2, seq=node.seq + 1)  # one message lost
                await wait_until(lambda: rebirths(rec) >= 1, what="a rebirth request")
                node.data(T0 + 3000, count=3)  # in sequence again, but before the rebirth
                await wait_until(lambda: health(sup).dropped.get("sparkplug data before birth") == 1,
                                 what="data before the rebirth dropped")
                node.births(T0 + 3500)  # the node answers the NCMD
                node.data(T0 + 4000, count=4)
                await wait_until(lambda: 4.0 in series(sqlite_store, ids, "count").value,
                                 what="data after the rebirth")
                h = health(sup)
            finally:
                node.close()
    await writer.close()
    assert h.dropped == {"sparkplug seq gap": 1, "sparkplug data before birth": 1}
    counts = series(sqlite_store, ids, "count").value.tolist()
    assert counts == [0.0, 1.0, 0.0, 4.0]  # 2 (after the gap) and 3 (before the rebirth) ignored


async def test_data_before_any_birth_requests_a_rebirth(
    mosquitto: Mosquitto, sqlite_store: SqliteStore
) -> None:
    dev = device(mosquitto)
    ids = register(sqlite_store, dev)
    writer = Writer(sqlite_store)
    node = Node(mosquitto)
    try:
        node.births()  # before the host is there: it never sees these
        with Recorder(mosquitto.host, mosquitto.port, [f"spBv1.0/{GROUP}/NCMD/{NODE}"]) as rec:
            async with Supervisor([dev], sqlite_store, writer, ids) as sup:
                await wait_until(lambda: health(sup).state == "connected", what="connected")
                node.data(T0 + 1000, count=1)
                await wait_until(lambda: rebirths(rec) == 1, what="a rebirth request")
                node.births(T0 + 2000)
                await wait_until(lambda: health(sup).samples_delivered >= 3, what="the births")
    finally:
        node.close()
    await writer.close()
    count = series(sqlite_store, ids, "count")
    assert count.value.tolist() == [0.0] and count.ts_ns.tolist() == [(T0 + 2000) * 1_000_000]


async def test_ndeath_marks_the_tags_stale_and_records_a_gap(
    mosquitto: Mosquitto, sqlite_store: SqliteStore
) -> None:
    dev = device(mosquitto)
    ids = register(sqlite_store, dev)
    writer = Writer(sqlite_store)
    async with Supervisor([dev], sqlite_store, writer, ids) as sup:
        await wait_until(lambda: health(sup).state == "connected", what="connected")
        node = Node(mosquitto, bd_seq=7)
        node.births(time.time_ns() // 1_000_000 - 1000)
        await wait_until(lambda: health(sup).samples_delivered >= 3, what="the births")
        node.crash()  # the broker publishes the NDEATH Will
        await wait_until(lambda: health(sup).bad_samples >= 3, what="stale marks")
        await wait_until(lambda: len(sqlite_store.gaps(None, 0, EVER)) == 1, what="a gap")
        (gap,) = sqlite_store.gaps(None, 0, EVER)
        assert gap.end_ns is None and "NDEATH" in gap.reason and f"{GROUP}/{NODE}" in gap.reason
        # the gap is the node's machine's, not the whole MQTT device's
        (asset,) = {t.asset for t in dev.tags}
        assert (gap.device, gap.asset) == (dev.name, asset)
        node2 = Node(mosquitto, bd_seq=8)  # the node's next session
        try:
            node2.births(time.time_ns() // 1_000_000 + 1000)
            await wait_until(lambda: sqlite_store.gaps(None, 0, EVER)[0].end_ns is not None,
                             what="the gap closed by the NBIRTH")
            await wait_until(lambda: len(series(sqlite_store, ids, "count")) == 3, what="the DBIRTH")
        finally:
            node2.close()
    await writer.close()
    for name in ("speed_rpm", "state", "count"):
        assert series(sqlite_store, ids, name).quality.tolist() == [
            Quality.GOOD, Quality.BAD_STALE, Quality.GOOD], name
    speed = series(sqlite_store, ids, "speed_rpm")
    assert speed.quality.tolist() == [Quality.GOOD, Quality.BAD_STALE, Quality.GOOD]
    assert np.isnan(speed.value[1])


async def test_ddeath_and_a_stale_ndeath(mosquitto: Mosquitto, sqlite_store: SqliteStore) -> None:
    """DDEATH marks that device's tags stale; an NDEATH whose bdSeq is not the birth's (the
    Will of an older session arriving late) changes nothing."""
    dev = device(mosquitto)
    ids = register(sqlite_store, dev)
    writer = Writer(sqlite_store)
    now_ms = time.time_ns() // 1_000_000
    async with Supervisor([dev], sqlite_store, writer, ids) as sup:
        await wait_until(lambda: health(sup).state == "connected", what="connected")
        node = Node(mosquitto, bd_seq=3)
        try:
            node.births(now_ms - 5000)
            await wait_until(lambda: health(sup).samples_delivered >= 3, what="the births")
            old = encode_payload([Metric("bdSeq", None, DataType.INT64, 2, now_ms)], None, now_ms)
            node.c.publish(format_topic(GROUP, "NDEATH", NODE), old, qos=1).wait_for_publish(5)
            node.send("DDEATH", [])
            await wait_until(lambda: health(sup).bad_samples >= 3, what="the device's stale marks")
            node.data(now_ms, count=9)  # the device is dead until its DBIRTH: data is refused
            await wait_until(lambda: health(sup).dropped.get("sparkplug data before birth") == 1,
                             what="DDATA of a dead device refused")
        finally:
            node.close()
        h = health(sup)
    await writer.close()
    assert h.bad_samples == 3  # the DDEATH only: the stale NDEATH marked nothing
    assert sqlite_store.gaps(None, 0, EVER) == []
    assert series(sqlite_store, ids, "count").quality.tolist() == [Quality.GOOD, Quality.BAD_STALE]
