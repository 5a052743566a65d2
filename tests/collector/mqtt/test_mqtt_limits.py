"""Issue 13 item 8 against a real Mosquitto: payload and text size limits (dropped and counted,
the rest of the device's data stored), non-finite numbers stored with bad quality, and log
lines about bad input that stay bounded without going silent after 10,000 (topic, reason)
pairs."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import numpy as np
import pytest
from pydantic import ValidationError

from collector import MqttCollector, Supervisor
from config.base import DeviceBase
from config.signals import Quality
from store.sqlite import SqliteStore
from store.writer import Writer
from tests.collector.mqtt.test_mqtt_broker import (
    ASSET,
    EVER,
    JSON,
    PLAIN,
    device,
    publish_all,
    publisher,
)
from tests.helpers import health, register, wait_until
from tests.mosquitto import Mosquitto

pytestmark = pytest.mark.mqtt


async def test_oversize_payloads_and_texts_are_dropped_and_counted_the_rest_stored(
    mosquitto: Mosquitto, sqlite_store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    dev = device(mosquitto.url, [PLAIN, JSON], [
        {"asset": ASSET, "name": "speed_rpm"},
        {"asset": ASSET, "name": "note", "type": "string", "role": "status"},
        {"asset": ASSET, "name": "label", "field": "label", "type": "string", "role": "status"},
        {"asset": ASSET, "name": "good_count", "field": "good", "type": "int"},
    ], max_payload_bytes=100_000, max_text_bytes=1000)
    ids = register(sqlite_store, dev)
    writer = Writer(sqlite_store)
    huge = "x" * 5_000_000  # 5 MB: over the payload limit
    async with Supervisor([dev], sqlite_store, writer, ids) as sup:
        await wait_until(lambda: health(sup).state == "connected", what="connected")
        with publisher(mosquitto) as pub:
            publish_all(pub, [
                ("tp/L1/M1/note", huge),  # payload too large (a string tag: the 100 MB finding)
                ("tp/L1/M1/speed_rpm", "1" * 200_000),  # payload too large on a number tag
                ("tp/L1/M1/note", "y" * 1001),  # text too long (plain)
                ("js/L1/M1", json.dumps({"ts": 1_700_000_000_000, "label": "é" * 501, "good": 5})),
                ("tp/L1/M1/note", "y" * 1000),  # at the limit: stored
                ("js/L1/M1", json.dumps({"ts": 1_700_000_001_000, "label": "ok", "good": 6})),
                ("tp/L1/M1/speed_rpm", "7"),
            ])
        await wait_until(lambda: sum(health(sup).dropped.values()) >= 4
                         and health(sup).samples_delivered >= 5, what="every message handled")
        h = health(sup)
    await writer.close()
    # "é" is 2 UTF-8 bytes: 501 of them are 1002 bytes, over 1000 (bytes, not characters)
    assert h.dropped == {"payload too large": 2, "text too long": 2}
    assert "text too long" in h.tag_errors[f"{ASSET}/note"]
    assert "1,002 bytes" in h.tag_errors[f"{ASSET}/label"]
    # nothing else of the device is lost: the JSON document's other field, later messages
    assert sqlite_store.read(ids[f"{ASSET}/good_count"], 0, EVER, prior=False).value.tolist() == [5, 6]
    assert sqlite_store.read(ids[f"{ASSET}/speed_rpm"], 0, EVER, prior=False).value.tolist() == [7]
    notes = sqlite_store.read_text(ids[f"{ASSET}/note"], 0, EVER)
    assert [t for _, t, _ in notes] == ["y" * 1000]
    assert [t for _, t, _ in sqlite_store.read_text(ids[f"{ASSET}/label"], 0, EVER)] == ["ok"]
    logged = [r.getMessage() for r in caplog.records if "payload too large" in r.getMessage()]
    assert logged and "5,000,000 bytes, more than max_payload_bytes (100,000)" in logged[0]
    assert all(len(m) < 1000 for m in logged)  # the payload itself is never logged


NON_FINITE = [
    ("tp/L1/M1/speed_rpm", "NaN"),
    ("tp/L1/M1/speed_rpm", "inf"),
    ("tp/L1/M1/speed_rpm", "-Infinity"),
    ("tp/L1/M1/speed_rpm", "1e999"),  # parsed as inf
    ("js/L1/M1", '{"ts": 1700000000000, "temp": NaN}'),  # Python's json takes these tokens
    ("js/L1/M1", '{"ts": 1700000001000, "temp": Infinity}'),
    ("js/L1/M1", '{"ts": 1700000002000, "temp": -1e999}'),
]


async def test_non_finite_numbers_are_stored_with_bad_quality(
    mosquitto: Mosquitto, sqlite_store: SqliteStore
) -> None:
    dev = device(mosquitto.url, [PLAIN, JSON], [
        {"asset": ASSET, "name": "speed_rpm"},
        {"asset": ASSET, "name": "temp", "field": "temp"},
        {"asset": ASSET, "name": "note", "type": "string", "role": "status"},
    ])
    ids = register(sqlite_store, dev)
    writer = Writer(sqlite_store)
    async with Supervisor([dev], sqlite_store, writer, ids) as sup:
        await wait_until(lambda: health(sup).state == "connected", what="connected")
        with publisher(mosquitto) as pub:
            publish_all(pub, [
                *NON_FINITE,
                ("tp/L1/M1/note", "a text is NaN-valued, and good"),
                ("tp/L1/M1/speed_rpm", "12.5"),
                ("js/L1/M1", '{"ts": 1700000003000, "temp": 21.5}'),
            ])
        await wait_until(lambda: health(sup).samples_delivered >= len(NON_FINITE) + 3, what="all samples")
        h = health(sup)
    await writer.close()
    assert h.non_finite == len(NON_FINITE) and h.bad_samples == len(NON_FINITE)
    assert h.dropped == {}  # stored, not dropped: the source did send a sample then
    speed = sqlite_store.read(ids[f"{ASSET}/speed_rpm"], 0, EVER, prior=False)
    temp = sqlite_store.read(ids[f"{ASSET}/temp"], 0, EVER, prior=False)
    for s, n in ((speed, 4), (temp, 3)):
        assert s.quality[:n].tolist() == [Quality.BAD] * n
        assert not np.isfinite(s.value[:n]).any()
        assert s.quality[n] == Quality.GOOD and math.isfinite(s.value[n])
    assert temp.value[3] == 21.5 and speed.value[4] == 12.5
    note = sqlite_store.latest([ids[f"{ASSET}/note"]])[ids[f"{ASSET}/note"]]
    assert note.quality == Quality.GOOD and note.text == "a text is NaN-valued, and good"


async def test_ten_thousand_bad_topics_leave_the_log_bounded_and_new_reasons_logged(
    mosquitto: Mosquitto, sqlite_store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    dev = device(mosquitto.url, [PLAIN, JSON], [
        {"asset": ASSET, "name": "speed_rpm"},
        {"asset": ASSET, "name": "temp", "field": "temp"},
    ], qos=0)
    ids = register(sqlite_store, dev)
    writer = Writer(sqlite_store)
    n = 10_500
    async with Supervisor([dev], sqlite_store, writer, ids) as sup:
        await wait_until(lambda: health(sup).state == "connected", what="connected")
        with publisher(mosquitto) as pub:
            # 10,500 distinct (topic, reason) pairs: no tag on these topics
            publish_all(pub, [(f"tp/L1/M{k}/x", "1") for k in range(n)], qos=1)
            await wait_until(lambda: health(sup).dropped.get("unknown topic", 0) >= n, 60,
                             what="every unknown topic counted")
            # then a reason never seen: logged at once, not lost behind the 10,500 pairs
            publish_all(pub, [("js/L1/M1", b"{not json"), ("tp/L1/M1/speed_rpm", "3")])
            await wait_until(lambda: health(sup).dropped.get("malformed json", 0) == 1,
                             what="the malformed document counted")
            await wait_until(lambda: any("malformed json" in r.getMessage() for r in caplog.records),
                             what="the malformed document logged")
        await wait_until(lambda: health(sup).samples_delivered >= 1, what="the good value")
    await writer.close()
    mine = [r.getMessage() for r in caplog.records if r.name == "tierproof.collector.mqtt"]
    full = [m for m in mine if "dropped a message" in m]
    summaries = [m for m in mine if " more of " in m]
    assert len(full) <= 1 + 20 + 1  # the reason, the burst of new places, the new reason
    assert any("malformed json" in m for m in full)
    # closing said what was only counted: every unknown topic is in a line, bounded in number
    assert 1 <= len(summaries) <= 11
    said = len([m for m in full if "unknown topic" in m]) + sum(int(m.split()[1]) for m in summaries)
    assert said == n
    assert sqlite_store.read(ids[f"{ASSET}/speed_rpm"], 0, EVER, prior=False).value.tolist() == [3]


async def test_the_brokers_message_size_limit_keeps_a_huge_message_off_the_wire(
    sqlite_store: SqliteStore,
) -> None:
    """What collector/mqtt/README.md recommends: Mosquitto's message_size_limit drops a too
    large PUBLISH at the broker (the publisher stays connected), so the gateway never reads
    it -- and, the price of that, never counts it either."""
    broker = Mosquitto(extra_config="message_size_limit 10000")
    broker.start()
    try:
        dev = device(broker.url, [PLAIN], [{"asset": ASSET, "name": "note", "type": "string",
                                              "role": "status"}])
        ids = register(sqlite_store, dev)
        writer = Writer(sqlite_store)
        async with Supervisor([dev], sqlite_store, writer, ids) as sup:
            await wait_until(lambda: health(sup).state == "connected", what="connected")
            with publisher(broker) as pub:
                publish_all(pub, [("tp/L1/M1/note", "z" * 50_000), ("tp/L1/M1/note", "small")])
            await wait_until(lambda: health(sup).samples_delivered >= 1, what="the small message")
            h = health(sup)
        await writer.close()
    finally:
        broker.close()
    assert h.dropped == {} and h.samples_delivered == 1
    assert [t for _, t, _ in sqlite_store.read_text(ids[f"{ASSET}/note"], 0, EVER)] == ["small"]


async def test_a_summary_comes_on_time_when_the_bad_messages_stop(
    mosquitto: Mosquitto, sqlite_store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The summary of what was only counted is written when its interval ends even if no
    message follows (the collector wakes up for it); the interval is 0.5 s here, 60 s by
    default."""
    dev = device(mosquitto.url, [PLAIN], [{"asset": ASSET, "name": "speed_rpm"}])
    ids = register(sqlite_store, dev)

    def make(d: DeviceBase, tag_ids: Mapping[str, int]) -> MqttCollector:
        c = MqttCollector(d, tag_ids)
        c.logs.interval_s = 0.5
        return c

    writer = Writer(sqlite_store)
    async with Supervisor([dev], sqlite_store, writer, ids, factories={"mqtt": make}) as sup:
        await wait_until(lambda: health(sup).state == "connected", what="connected")
        with publisher(mosquitto) as pub:
            publish_all(pub, [("tp/L1/M1/speed_rpm", "fast")] * 6)
        await wait_until(lambda: any("5 more of wrong type on 'tp/L1/M1/speed_rpm'" in r.getMessage()
                                     for r in caplog.records), what="the summary, with no message after")
        assert health(sup).state == "connected"
    await writer.close()


@pytest.mark.parametrize(("field", "value"), [
    ("max_payload_bytes", 0), ("max_payload_bytes", 268_435_456), ("max_text_bytes", -1),
    ("max_text_bytes", 1.5),
])
def test_limits_out_of_range_are_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as err:
        device("mqtt://127.0.0.1:1883", [PLAIN], [], **{field: value})
    assert [e["loc"] for e in err.value.errors()] == [(field,)]


def test_limit_defaults() -> None:
    d = device("mqtt://127.0.0.1:1883", [PLAIN], [])
    assert (d.max_payload_bytes, d.max_text_bytes) == (1024 * 1024, 64 * 1024)
