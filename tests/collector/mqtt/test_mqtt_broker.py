"""The MQTT collector against a real Mosquitto: acknowledgement after storage, exactly once
across a broker restart, the persistent session, TLS, authentication, bad input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from collector import MqttCollector, Supervisor
from config.errors import ConnectError, StoreError
from config.mqtt import MqttDevice
from store.batch import Batch
from store.sqlite import SqliteStore
from store.writer import Writer
from tests.helpers import FAST, health, key_headers, register, wait_until
from tests.mosquitto import Mosquitto

pytestmark = pytest.mark.mqtt

ASSET = "plant/area/L1/M1"
EVER = 2**62


def device(broker: str, subscriptions: list[dict[str, Any]], tags: list[dict[str, Any]],
           **kw: Any) -> MqttDevice:
    return MqttDevice.model_validate({
        "name": kw.pop("name", "mq"), "protocol": "mqtt", "broker": broker,
        "subscriptions": subscriptions, "tags": tags, "backoff": FAST.model_dump(), **kw,
    })


PLAIN = {"topic": "tp/+/+/+", "template": "tp/{line}/{asset}/{signal}"}
JSON = {"topic": "js/+/+", "format": "json", "template": "js/{line}/{asset}",
        "timestamp_field": "ts"}


@contextmanager
def publisher(broker: Mosquitto, client_id: str = "test-publisher") -> Iterator[mqtt.Client]:
    """A paho client on its own network thread (as a machine would publish)."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        yield c
    finally:
        c.disconnect()
        c.loop_stop()


def publish_all(c: mqtt.Client, messages: list[tuple[str, bytes | str]], qos: int = 1) -> None:
    infos = [c.publish(t, p, qos=qos) for t, p in messages]
    for info in infos:
        info.wait_for_publish(10)
        assert info.is_published()


def values(store: SqliteStore, tag_id: int) -> np.ndarray:
    return store.read(tag_id, 0, EVER, prior=False).value


# --------------------------------------------------------------------------- storage and acks


async def test_plain_and_json_values_are_stored_with_payload_times(
    mosquitto: Mosquitto, sqlite_store: SqliteStore
) -> None:
    dev = device(mosquitto.url, [PLAIN, JSON], [
        {"asset": ASSET, "name": "speed_rpm"},
        {"asset": ASSET, "name": "state", "role": "state", "field": "machine.state", "type": "int",
         "enum": {3: "Executing", 2: "NotExecuting"}},
        {"asset": ASSET, "name": "good_count", "field": "counters.good", "type": "int"},
    ])
    ids = register(sqlite_store, dev)
    writer = Writer(sqlite_store)
    async with Supervisor([dev], sqlite_store, writer, ids) as sup:
        await wait_until(lambda: health(sup).state == "connected", what="connected")
        with publisher(mosquitto) as pub:
            publish_all(pub, [
                ("tp/L1/M1/speed_rpm", "1200.5"),
                ("js/L1/M1", json.dumps({"ts": 1_700_000_000_000,
                                         "machine": {"state": 3}, "counters": {"good": 11}})),
                ("js/L1/M1", json.dumps({"ts": 1_700_000_001_000,
                                         "machine": {"state": "NotExecuting"}, "counters": {"good": 12}})),
            ])
        await wait_until(lambda: health(sup).samples_delivered >= 5, what="5 samples")
    await writer.close()
    state = sqlite_store.read(ids[f"{ASSET}/state"], 0, EVER, prior=False)
    assert state.value.tolist() == [3.0, 2.0]  # raw values; "NotExecuting" by the tag's enum
    assert state.ts_ns.tolist() == [1_700_000_000_000_000_000, 1_700_000_001_000_000_000]
    _, _, gateway = sqlite_store.read_timestamps(ids[f"{ASSET}/state"], 0, EVER)
    assert (gateway > 1_750_000_000_000_000_000).all()  # arrival time, beside the payload's
    assert values(sqlite_store, ids[f"{ASSET}/good_count"]).tolist() == [11.0, 12.0]
    assert values(sqlite_store, ids[f"{ASSET}/speed_rpm"]).tolist() == [1200.5]


async def test_broker_restart_mid_stream_stores_every_message_exactly_once(
    mosquitto: Mosquitto, sqlite_store: SqliteStore
) -> None:
    n = 6000
    dev = device(mosquitto.url, [PLAIN], [{"asset": ASSET, "name": "seq"}],
                 client_id="exactly-once", batch_max_messages=50)
    ids = register(sqlite_store, dev)
    tag = ids[f"{ASSET}/seq"]
    writer = Writer(sqlite_store)
    # a first connection creates the persistent session; then the backlog is published
    async with Supervisor([dev], sqlite_store, writer, ids) as sup:
        await wait_until(lambda: health(sup).state == "connected", what="session created")
    with publisher(mosquitto) as pub:
        publish_all(pub, [("tp/L1/M1/seq", str(i)) for i in range(n)])
    async with Supervisor([dev], sqlite_store, writer, ids) as sup:
        await wait_until(lambda: health(sup).samples_delivered > 0, timeout=30, what="the backlog flowing")
        at_restart = health(sup).samples_delivered
        await asyncio.to_thread(mosquitto.restart)  # SIGTERM: mosquitto saves the queued session
        await wait_until(lambda: len(np.unique(values(sqlite_store, tag))) >= n, timeout=60,
                         what=f"all {n} messages stored")
        # the values may all be stored before the supervisor has counted its reconnect
        await wait_until(lambda: health(sup).reconnects >= 1, timeout=60, what="the reconnect")
        await writer.flush()
    await writer.close()
    assert at_restart < n, "the restart came after the whole backlog: raise n"
    stored = values(sqlite_store, tag)
    assert len(stored) == n  # no duplicates
    assert np.array_equal(np.sort(stored), np.arange(n, dtype=np.float64))


async def test_messages_published_while_the_gateway_is_away_arrive(
    mosquitto: Mosquitto, sqlite_store: SqliteStore
) -> None:
    dev = device(mosquitto.url, [PLAIN], [{"asset": ASSET, "name": "seq"}], client_id="away")
    ids = register(sqlite_store, dev)
    tag = ids[f"{ASSET}/seq"]
    writer = Writer(sqlite_store)
    with publisher(mosquitto) as pub:
        async with Supervisor([dev], sqlite_store, writer, ids) as sup:
            await wait_until(lambda: health(sup).state == "connected", what="connected")
            publish_all(pub, [("tp/L1/M1/seq", str(i)) for i in range(10)])
            await wait_until(lambda: health(sup).samples_delivered >= 10, what="first 10")
        # the gateway is stopped: the broker queues for its persistent session
        publish_all(pub, [("tp/L1/M1/seq", str(i)) for i in range(10, 500)])
    async with Supervisor([dev], sqlite_store, writer, ids) as sup:
        await wait_until(lambda: len(values(sqlite_store, tag)) >= 500, what="the queued 490")
    await writer.close()
    assert np.array_equal(np.sort(values(sqlite_store, tag)), np.arange(500, dtype=np.float64))


async def test_a_batch_is_acknowledged_only_once_stored(mosquitto: Mosquitto) -> None:
    """Without stored() nothing is acknowledged: a new connection of the same session gets
    every message again."""
    dev = device(mosquitto.url, [PLAIN], [{"asset": ASSET, "name": "seq"}], client_id="unacked")
    ids = {f"{ASSET}/seq": 7}
    async with MqttCollector(dev, ids):
        pass  # the session exists from here on
    with publisher(mosquitto) as pub:
        publish_all(pub, [("tp/L1/M1/seq", str(i)) for i in range(5)])
    got: list[float] = []
    async with MqttCollector(dev, ids) as c:
        async for b in c.batches():  # never stored(): never acknowledged
            got += b.value.tolist()
            if len(got) >= 5:
                break
    assert sorted(got) == [0.0, 1.0, 2.0, 3.0, 4.0]
    again: list[float] = []
    async with MqttCollector(dev, ids) as c:
        async for b in c.batches():
            again += b.value.tolist()
            c.stored(b)
            if len(again) >= 5:
                break
        assert c.stats.acked == 5
    assert sorted(again) == [0.0, 1.0, 2.0, 3.0, 4.0]
    async with MqttCollector(dev, ids) as c:  # acknowledged: nothing comes a third time
        with publisher(mosquitto) as pub:
            publish_all(pub, [("tp/L1/M1/seq", "99")])
        async for b in c.batches():
            if not len(b):  # redelivered before the broker had our acks: known, not stored
                c.stored(b)
                continue
            assert b.value.tolist() == [99.0]
            c.stored(b)
            break


class FailsOnce(SqliteStore):
    """A SqliteStore whose first non-empty write fails. A fake fault on purpose: a real disk
    that fails exactly one write on demand cannot be arranged in a test."""

    failed = False

    def write(self, batch: Batch) -> None:
        if len(batch) and not self.failed:
            self.failed = True
            raise StoreError("disk I/O error (injected)")
        super().write(batch)


async def test_a_batch_the_store_refuses_is_redelivered_not_lost(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    store = FailsOnce(tmp_path / "t.db")
    try:
        dev = device(mosquitto.url, [PLAIN], [{"asset": ASSET, "name": "seq"}], client_id="refused")
        ids = register(store, dev)
        writer = Writer(store)
        async with Supervisor([dev], store, writer, ids) as sup:
            await wait_until(lambda: health(sup).state == "connected", what="connected")
            with publisher(mosquitto) as pub:
                publish_all(pub, [("tp/L1/M1/seq", str(i)) for i in range(20)])
            await wait_until(lambda: len(values(store, ids[f"{ASSET}/seq"])) >= 20,
                             what="all 20 stored after the failed write")
            assert store.failed and health(sup).reconnects >= 1
            assert "not acknowledged" in (health(sup).last_error or "")
        await writer.close()
        assert np.array_equal(np.sort(values(store, ids[f"{ASSET}/seq"])), np.arange(20.0))
    finally:
        store.close()


async def test_qos_0_collects_without_acknowledgements(
    mosquitto: Mosquitto, sqlite_store: SqliteStore
) -> None:
    dev = device(mosquitto.url, [PLAIN], [{"asset": ASSET, "name": "seq"}], qos=0)
    ids = register(sqlite_store, dev)
    writer = Writer(sqlite_store)
    async with Supervisor([dev], sqlite_store, writer, ids) as sup:
        await wait_until(lambda: health(sup).state == "connected", what="connected")
        collector = sup._collectors[dev.name]
        assert getattr(collector, "acknowledges", None) is False
        with publisher(mosquitto) as pub:
            publish_all(pub, [("tp/L1/M1/seq", str(i)) for i in range(10)], qos=0)
        await wait_until(lambda: health(sup).samples_delivered >= 10, what="10 samples")
    await writer.close()
    assert np.array_equal(np.sort(values(sqlite_store, ids[f"{ASSET}/seq"])), np.arange(10.0))


# --------------------------------------------------------------------------- bad input


async def test_bad_payloads_are_counted_and_visible_and_ingestion_goes_on(
    mosquitto: Mosquitto, sqlite_store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    dev = device(mosquitto.url, [PLAIN, JSON], [
        {"asset": ASSET, "name": "speed_rpm"},
        {"asset": ASSET, "name": "good_count", "field": "counters.good", "type": "int"},
    ])
    ids = register(sqlite_store, dev)
    writer = Writer(sqlite_store)
    async with Supervisor([dev], sqlite_store, writer, ids) as sup:
        await wait_until(lambda: health(sup).state == "connected", what="connected")
        with publisher(mosquitto) as pub:
            publish_all(pub, [
                ("tp/L1/M1/speed_rpm", "fast"),  # wrong type
                ("tp/L1/M1/speed_rpm", "fast"),
                ("tp/L1/M9/speed_rpm", "1"),  # no tag
                ("js/L1/M1", b"{not json"),
                ("js/L1/M1", json.dumps({"ts": 1_700_000_000_000, "counters": {"good": "x"}})),
                ("js/L1/M1", json.dumps({"ts": "yesterday", "counters": {"good": 1}})),
                ("js/L1/M1", json.dumps({"ts": 1_700_000_000_000, "counters": {}})),
                ("js/L1/M1", b"\xff\xfe\x00"),
                ("tp/L1/M1/speed_rpm", "7"),  # and good data still flows
            ])
        await wait_until(lambda: health(sup).samples_delivered >= 1, what="the good value")
        h = health(sup)
    await writer.close()
    assert h.dropped == {"wrong type": 3, "unknown topic": 1, "malformed json": 1,
                         "bad timestamp": 1, "missing field": 1, "not utf-8": 1}
    assert set(h.tag_errors) == {f"{ASSET}/speed_rpm", f"{ASSET}/good_count"}
    assert "'fast' is not a float" in h.tag_errors[f"{ASSET}/speed_rpm"]
    assert values(sqlite_store, ids[f"{ASSET}/speed_rpm"]).tolist() == [7.0]
    logged = [r.getMessage() for r in caplog.records if "dropped a message" in r.getMessage()]
    assert len([m for m in logged if "tp/L1/M1/speed_rpm" in m]) == 1  # once per topic and reason


# --------------------------------------------------------------------------- TLS and auth


def tls_device(b: Mosquitto, ca: Path, cert: Path | None, key: Path | None) -> MqttDevice:
    tls: dict[str, Any] = {"ca_file": str(ca)}
    if cert is not None:
        tls |= {"cert_file": str(cert), "key_file": str(key)}
    return device(f"mqtts://{b.host}:{b.tls_port}", [PLAIN], [{"asset": ASSET, "name": "x"}],
                  tls=tls, connect_timeout_s=5)


async def test_tls_with_the_ca_and_a_client_certificate(mosquitto: Mosquitto) -> None:
    b = mosquitto
    dev = tls_device(b, b.ca_file, b.client_cert, b.client_key)
    ids = {f"{ASSET}/x": 1}
    async with MqttCollector(dev, ids) as c:
        with publisher(b) as pub:  # plain listener, same broker: the message crosses over
            publish_all(pub, [("tp/L1/M1/x", "42")])
        async for batch in c.batches():
            assert batch.value.tolist() == [42.0]
            c.stored(batch)
            break


@pytest.mark.parametrize("which", ["untrusted client certificate", "wrong CA", "no client certificate"])
async def test_tls_refused(mosquitto: Mosquitto, which: str) -> None:
    b = mosquitto
    dev = {
        "untrusted client certificate": lambda: tls_device(b, b.ca_file, b.bad_client_cert, b.bad_client_key),
        "wrong CA": lambda: tls_device(b, b.untrusted_ca_file, b.client_cert, b.client_key),
        "no client certificate": lambda: tls_device(b, b.ca_file, None, None),
    }[which]()
    with pytest.raises(ConnectError) as err:
        async with MqttCollector(dev, {f"{ASSET}/x": 1}):
            pass
    msg = str(err.value)
    if which == "wrong CA":
        assert "is not trusted" in msg and "tls.ca_file" in msg
    else:
        assert "tls" in msg


async def test_username_and_password(mosquitto: Mosquitto) -> None:
    b = mosquitto
    url = f"mqtt://{b.host}:{b.auth_port}"
    good = device(url, [PLAIN], [], username=b.username, password=b.password)
    async with MqttCollector(good, {}):
        pass
    bad = device(url, [PLAIN], [], username=b.username, password="wrong")
    with pytest.raises(ConnectError, match=r"refused the connection of user 'gateway'.*check "
                                           r"devices\[mq\]\.username and password"):
        async with MqttCollector(bad, {}):
            pass
    anonymous = device(url, [PLAIN], [])
    with pytest.raises(ConnectError, match="refused the connection of anonymous access"):
        async with MqttCollector(anonymous, {}):
            pass


async def test_auth_refusal_is_retried_by_the_supervisor_with_the_reason_in_health(
    mosquitto: Mosquitto, sqlite_store: SqliteStore
) -> None:
    b = mosquitto
    dev = device(f"mqtt://{b.host}:{b.auth_port}", [PLAIN], [], username=b.username, password="no")
    async with Supervisor([dev], sqlite_store, Writer(sqlite_store), {}) as sup:
        await wait_until(lambda: health(sup).last_error is not None, what="a refusal")
        assert "refused the connection" in (health(sup).last_error or "")
        assert health(sup).state in ("backoff", "connecting")


async def test_dropped_counts_are_in_the_collector_status_endpoint(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    import httpx

    from api.app import create_app
    from config.loader import settings_from_dict

    settings = settings_from_dict({
        "assets": [{"path": ASSET}],
        "devices": [{"name": "mq", "protocol": "mqtt", "broker": mosquitto.url,
                     "subscriptions": [PLAIN], "tags": [{"asset": ASSET, "name": "speed_rpm"}]}],
        "store": {"type": "sqlite", "path": str(tmp_path / "api.db")},
    })
    headers = key_headers(settings)  # api.auth: every test sends a key
    app = create_app(settings)
    status: list[dict[str, Any]] = []

    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway", headers=headers
    ) as client:
        async def poll(check: Any, what: str) -> None:
            async def ok() -> bool:
                status[:] = (await client.get("/api/v1/collector/status")).json()
                return bool(check(status[0]))
            for _ in range(2000):
                if await ok():
                    return
                await asyncio.sleep(0.01)
            raise AssertionError(f"timed out waiting for {what}: {status}")

        await poll(lambda d: d["state"] == "connected", "connected")
        with publisher(mosquitto) as pub:
            publish_all(pub, [("tp/L1/M1/speed_rpm", "fast"), ("tp/L1/M1/speed_rpm", "3")])
        await poll(lambda d: d["samples_delivered"] >= 1, "the good value")
    (mq,) = status
    assert mq["protocol"] == "mqtt" and mq["dropped"] == {"wrong type": 1}
    assert f"{ASSET}/speed_rpm" in mq["tag_errors"]
