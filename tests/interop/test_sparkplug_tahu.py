"""tierproof's Sparkplug B host against Eclipse Tahu's JavaScript edge node (npm
``sparkplug-client`` 3.2.4 with ``sparkplug-payload`` 1.0.3 and mqtt.js 4.3.8, pinned in
node/package-lock.json), publishing through a real Mosquitto, collected by the real
supervisor, writer and SqliteStore. The edge node is ``node/tahu_edge.js``.

What Tahu's JavaScript client does, as found here (not as our simulator does it):

- Integer types: Int8, Int16, Int32, UInt8, UInt16 in ``int_value``, negative ones
  sign-extended to 32 bits (Int8 -5 is 0xFFFFFFFB); **UInt32**, Int64, UInt64 and DateTime in
  ``long_value`` (issue 9: tierproof refused every NBIRTH for that). 64-bit values beyond 2^53
  need a ``Long`` or a decimal string from the application.
- It writes ``datatype`` on every metric, DATA included (a metric without ``type`` makes its
  encoder throw), and a metric with a type name it does not know (``"Int128"``) with datatype
  0 and no value. It writes whatever value the application gives: an Int8 of 300 goes out as
  ``int_value`` 300. So Tahu itself can publish undecodable metrics.
- Aliases are the application's business: the client sends ``alias`` when the metric has one
  and omits ``name`` when the metric has none, so DATA by alias works as the spec describes.
- Timestamps are the application's too: a payload or metric without one is sent without one.
  A negative metric timestamp goes out as its uint64 two's complement.
- Every publish is QoS 0, births included. ``bdSeq`` is a UInt64 metric appended to the
  NBIRTH, and it is 0 in every session (the client never increments it): its Will (NDEATH,
  QoS 0, not retained) always carries bdSeq 0.
- It asks the application for births on every (re)connect and passes NCMDs up as an
  ``ncmd`` event: answering "Node Control/Rebirth" is the application's job (tahu_edge.js
  publishes its births again, as Tahu's example does).
- ``stop()`` with ``publishDeath`` publishes an NDEATH, then disconnects cleanly (no Will).
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from peers import NodePeer

from collector import Supervisor
from config.mqtt import MqttDevice
from config.signals import Quality
from store.sqlite import SqliteStore
from store.writer import Writer
from tests.helpers import FAST, health, register, wait_until
from tests.mosquitto import Mosquitto, Recorder

pytestmark = pytest.mark.mqtt

GROUP, NODE, DEV = "plant1", "tahu1", "M1"
ASSET = f"acme/assembly/L1/{NODE}"  # the template reads the edge node id as {asset}
END = 2**62


def data_ms() -> int:
    """ms, the payload time of the DATA a test sends: an hour after now, so after the births
    (Tahu stamps them with its clock, which is ours) and a tag's samples read in the order
    they were sent. Taken when a test starts, not at import: a module imported at the start of
    a suite whose test runs more than an hour later would stamp its DATA before the births."""
    return time.time_ns() // 1_000_000 + 3_600_000


# the table of tahu_edge.js (checked against what it reports): type, birth value, tag type
TYPES: list[tuple[str, Any, str]] = [
    ("Int8", -128, "int"), ("Int16", -32768, "int"), ("Int32", -2147483648, "int"),
    ("Int64", "-9223372036854775808", "int"), ("UInt8", 255, "int"), ("UInt16", 65535, "int"),
    ("UInt32", 4294967295, "int"), ("UInt64", "18446744073709551615", "int"),
    ("Float", 1.5, "float"), ("Double", 2.718281828459045, "float"), ("Boolean", True, "bool"),
    ("String", "Presse 3 ✓", "string"), ("DateTime", 1700000000000, "int"),
    ("Text", "a text", "string"), ("UUID", "6c1b4e8e-6f1a-4a55-9b7e-0d1c2b3a4f5e", "string"),
]
NODE_ALIAS, DEV_ALIAS = 100, 200  # tahu_edge.js: alias of TYPES[i] is base + i
ALIAS = {t: i for i, (t, _, _) in enumerate(TYPES)}
N_TAGS = 2 * len(TYPES)  # every type as a node (NBIRTH) and as a device (DBIRTH) metric

StartTahu = Callable[..., NodePeer]  # the ``tahu`` fixture (conftest.py)


def tag(prefix: str, t: str) -> str:
    return f"{prefix}_{t.lower()}"


def device(b: Mosquitto, extra_tags: list[dict[str, Any]] | None = None) -> MqttDevice:
    tags: list[dict[str, Any]] = []
    for prefix, metric_prefix in (("n", "node/"), ("d", "")):
        for t, _, kind in TYPES:
            tags.append({"asset": ASSET, "name": tag(prefix, t), "metric": f"{metric_prefix}{t}",
                         "type": kind})
    return MqttDevice.model_validate({
        "name": "tahu", "protocol": "mqtt", "broker": b.url, "client_id": "tierproof-interop",
        "rebirth_min_interval_s": 0, "backoff": FAST.model_dump(),
        "subscriptions": [{"format": "sparkplug", "group_id": GROUP, "template": "+/{asset}/#"}],
        "tags": tags + (extra_tags or []),
    })


def expected(value: Any) -> float:
    """What the store holds for a birth value of TYPES (64-bit integers as float64)."""
    if isinstance(value, str):
        return float(int(value))
    return float(value)


class Harness:
    def __init__(self, b: Mosquitto, store: SqliteStore,
                 extra_tags: list[dict[str, Any]] | None = None) -> None:
        self.b = b
        self.dev = device(b, extra_tags)
        self.store = store
        self.ids = register(store, self.dev)
        self.writer = Writer(store)

    def supervisor(self) -> Supervisor:
        return Supervisor([self.dev], self.store, self.writer, self.ids)

    def node_options(self, **kw: Any) -> dict[str, Any]:
        return {"serverUrl": self.b.url, "groupId": GROUP, "edgeNode": NODE, "devices": [DEV]} | kw

    def series(self, name: str) -> Any:
        return self.store.read(self.ids[f"{ASSET}/{name}"], 0, END, prior=False)

    def texts(self, name: str) -> dict[int, str]:
        """ts -> text of a string tag's text samples."""
        return {ts: text for ts, text, _ in self.store.read_text(self.ids[f"{ASSET}/{name}"], 0, END)}

    def count(self, name: str) -> int:
        return len(self.series(name))


def check_births(h: Harness, n: int = 0) -> None:
    """Sample ``n`` of every tag is the birth value of its type, good."""
    for prefix in ("n", "d"):
        for t, value, kind in TYPES:
            name = tag(prefix, t)
            s = h.series(name)
            assert s.quality[n] == Quality.GOOD, name
            if kind == "string":
                assert h.texts(name)[int(s.ts_ns[n])] == value, name
            else:
                assert s.value[n] == expected(value), name


async def test_births_of_every_type_and_data_by_alias_and_by_name(
    mosquitto: Mosquitto, sqlite_store: SqliteStore, tahu: StartTahu
) -> None:
    """NBIRTH and DBIRTH with every scalar type Tahu encodes -- UInt32 in long_value among
    them (issue 9's regression: the whole NBIRTH was refused) -- then NDATA and DDATA by
    alias and by name."""
    T = data_ms()  # this test's DATA time
    h = Harness(mosquitto, sqlite_store)
    async with h.supervisor() as sup:
        await wait_until(lambda: health(sup).state == "connected", 60, "connected")
        before = time.time_ns()
        node = tahu(**h.node_options())
        assert [(x["type"], x["value"]) for x in node.info["types"]] == [(t, v) for t, v, _ in TYPES]
        await wait_until(lambda: health(sup).samples_delivered >= N_TAGS, 60, "the births")
        after = time.time_ns()
        node.command(cmd="ddata", device=DEV, timestamp=T, metrics=[
            {"alias": DEV_ALIAS + ALIAS["UInt32"], "type": "UInt32", "value": 4_000_000_000},
            {"alias": DEV_ALIAS + ALIAS["Int8"], "type": "Int8", "value": -5},
            {"alias": DEV_ALIAS + ALIAS["String"], "type": "String", "value": "by alias"},
            {"name": "Double", "type": "Double", "value": 0.25},
            {"name": "UInt64", "type": "UInt64", "value": "12345678901234567"},
            {"alias": DEV_ALIAS + ALIAS["Float"], "type": "Float", "value": None},  # is_null
        ])
        node.command(cmd="ndata", timestamp=T + 1, metrics=[
            {"alias": NODE_ALIAS + ALIAS["UInt32"], "type": "UInt32", "value": 123},
            {"name": "node/Int64", "type": "Int64", "value": "-5"},
            {"name": "node/Boolean", "type": "Boolean", "value": False},
        ])
        await wait_until(lambda: health(sup).samples_delivered >= N_TAGS + 9, 60, "the DATA")
        status = node.command(cmd="status")
        hs = health(sup)
    await h.writer.close()
    assert hs.dropped == {} and hs.tag_errors == {}
    assert status["ncmd"] == 0  # no rebirth was asked for
    check_births(h)
    birth_ts = h.series("d_int8").ts_ns[0]
    assert before - 10**9 <= birth_ts <= after  # Tahu's birth timestamp (its clock is ours)
    for name, value in [("d_uint32", 4e9), ("d_int8", -5.0), ("d_double", 0.25),
                        ("d_uint64", 12345678901234567.0)]:
        s = h.series(name)
        assert s.value.tolist() == [s.value[0], value], name
        assert s.ts_ns[1] == T * 1_000_000, name
    assert list(h.texts("d_string").values()) == ["Presse 3 ✓", "by alias"]
    for name, value in [("n_uint32", 123.0), ("n_int64", -5.0), ("n_boolean", 0.0)]:
        s = h.series(name)
        assert s.value[1] == value and s.ts_ns[1] == (T + 1) * 1_000_000, name
    f = h.series("d_float")  # Tahu sends a null value as is_null: bad quality, no value
    assert f.quality.tolist() == [Quality.GOOD, Quality.BAD] and np.isnan(f.value[1])
    assert h.count("d_int16") == 1  # nothing else was sent


async def test_data_before_birth_gets_a_rebirth_request_that_tahu_answers(
    mosquitto: Mosquitto, sqlite_store: SqliteStore, tahu: StartTahu
) -> None:
    """The node was born before the gateway listened: its first DDATA is data before birth,
    tierproof sends NCMD "Node Control/Rebirth", Tahu's application publishes its births."""
    T = data_ms()  # this test's DATA time
    h = Harness(mosquitto, sqlite_store)
    with Recorder(mosquitto.host, mosquitto.port, [f"spBv1.0/{GROUP}/DBIRTH/{NODE}/{DEV}"]) as rec:
        node = tahu(**h.node_options())  # births published (QoS 0, not retained) to nobody else
        # READY comes when Tahu has handed its births to mqtt.js, not when they are sent
        rec.wait_for(lambda got: len(got) == 1, 30, "Tahu's DBIRTH through the broker")
    async with h.supervisor() as sup:
        await wait_until(lambda: health(sup).state == "connected", 60, "connected")
        node.command(cmd="ddata", device=DEV, timestamp=T, metrics=[
            {"alias": DEV_ALIAS + ALIAS["UInt32"], "type": "UInt32", "value": 1}])
        await wait_until(lambda: health(sup).samples_delivered >= N_TAGS, 60, "the births answering the NCMD")
        status = node.command(cmd="status")
        node.command(cmd="ddata", device=DEV, timestamp=T + 1, metrics=[
            {"alias": DEV_ALIAS + ALIAS["UInt32"], "type": "UInt32", "value": 2}])
        await wait_until(lambda: h.count("d_uint32") == 2, 60, "DDATA after the rebirth")
        hs = health(sup)
    await h.writer.close()
    assert (status["ncmd"], status["rebirths"], status["births"]) == (1, 1, 2)
    assert hs.dropped == {"sparkplug data before birth": 1}
    check_births(h)
    assert h.series("d_uint32").value.tolist() == [4294967295.0, 2.0]  # 1 came before the birth


async def test_will_on_an_unclean_disconnect_marks_stale_and_the_next_birth_closes_the_gap(
    mosquitto: Mosquitto, sqlite_store: SqliteStore, tahu: StartTahu
) -> None:
    h = Harness(mosquitto, sqlite_store)
    async with h.supervisor() as sup:
        await wait_until(lambda: health(sup).state == "connected", 60, "connected")
        node = tahu(**h.node_options())
        await wait_until(lambda: health(sup).samples_delivered >= N_TAGS, 60, "the births")
        node.stop(signal.SIGKILL)  # no DISCONNECT: Mosquitto publishes Tahu's Will (NDEATH)
        await wait_until(lambda: health(sup).bad_samples >= N_TAGS, 60, "stale marks")
        await wait_until(lambda: len(sqlite_store.gaps(None, 0, END)) == 1, 60, "a gap")
        (gap,) = sqlite_store.gaps(None, 0, END)
        assert gap.end_ns is None and "NDEATH" in gap.reason and f"{GROUP}/{NODE}" in gap.reason
        assert (gap.device, gap.asset) == (h.dev.name, ASSET)
        tahu(**h.node_options())  # the next session (Tahu's bdSeq is 0 again)
        await wait_until(lambda: sqlite_store.gaps(None, 0, END)[0].end_ns is not None, 60,
                    "the gap closed by the NBIRTH")
        await wait_until(lambda: health(sup).samples_delivered >= 3 * N_TAGS, 60, "the new births")
        hs = health(sup)
    await h.writer.close()
    assert hs.dropped == {}
    for prefix in ("n", "d"):
        for t, _, _ in TYPES:
            s = h.series(tag(prefix, t))
            assert s.quality.tolist() == [Quality.GOOD, Quality.BAD_STALE, Quality.GOOD], t
            assert np.isnan(s.value[1])
    check_births(h, 2)


async def test_ddeath_then_a_clean_stop_that_publishes_ndeath(
    mosquitto: Mosquitto, sqlite_store: SqliteStore, tahu: StartTahu
) -> None:
    """Tahu's publishDeviceDeath (DDEATH: the device's tags stale), then its stop() with
    publishDeath: an NDEATH of its own, then DISCONNECT (no Will)."""
    h = Harness(mosquitto, sqlite_store)
    n = len(TYPES)
    async with h.supervisor() as sup:
        await wait_until(lambda: health(sup).state == "connected", 60, "connected")
        node = tahu(**h.node_options(publishDeath=True))
        await wait_until(lambda: health(sup).samples_delivered >= N_TAGS, 60, "the births")
        node.command(cmd="ddeath", device=DEV)
        await wait_until(lambda: health(sup).bad_samples >= n, 60, "the device's stale marks")
        assert sqlite_store.gaps(None, 0, END) == []  # a device death is no node gap
        assert node.command(cmd="stop")["stopped"] is True
        await wait_until(lambda: health(sup).bad_samples >= n + N_TAGS, 60, "the node's stale marks")
        await wait_until(lambda: len(sqlite_store.gaps(None, 0, END)) == 1, 60, "a gap")
        hs = health(sup)
    await h.writer.close()
    assert hs.dropped == {}
    (gap,) = sqlite_store.gaps(None, 0, END)
    assert gap.asset == ASSET and "NDEATH" in gap.reason
    stale = Quality.BAD_STALE
    assert h.series("d_uint32").quality.tolist() == [Quality.GOOD, stale, stale]  # DDEATH, NDEATH
    assert h.series("n_uint32").quality.tolist() == [Quality.GOOD, stale]


async def test_values_flow_again_after_a_broker_restart(
    mosquitto: Mosquitto, sqlite_store: SqliteStore, tahu: StartTahu
) -> None:
    """Mosquitto restarts: tierproof reconnects (a gap of the whole MQTT device), mqtt.js
    reconnects and Tahu publishes its births again (bdSeq 0 again, seq from 0)."""
    T = data_ms()  # this test's DATA time
    h = Harness(mosquitto, sqlite_store)
    async with h.supervisor() as sup:
        await wait_until(lambda: health(sup).state == "connected", 60, "connected")
        node = tahu(**h.node_options())
        await wait_until(lambda: health(sup).samples_delivered >= N_TAGS, 60, "the births")
        mosquitto.restart()
        await wait_until(lambda: node.command(cmd="status")["connects"] >= 2, 60, "Tahu reconnected")
        await wait_until(lambda: health(sup).reconnects >= 1 and health(sup).state == "connected", 60,
                    "tierproof reconnected")
        # Tahu's births after its reconnect are QoS 0: if they went out before tierproof had
        # subscribed again, its next DATA is data before birth and gets a rebirth. Either way
        # DATA is stored again after a few tries.
        for k in range(1, 31):
            node.command(cmd="ddata", device=DEV, timestamp=T + k, metrics=[
                {"alias": DEV_ALIAS + ALIAS["UInt32"], "type": "UInt32", "value": 1000 + k}])
            with contextlib.suppress(AssertionError):
                await wait_until(lambda: bool((h.series("d_uint32").value > 1000).any()), 2.0,
                            "DATA after the restart")
                break
        else:
            raise AssertionError(f"no DATA stored after the restart; dropped {health(sup).dropped}")
        hs = health(sup)
    await h.writer.close()
    assert set(hs.dropped) <= {"sparkplug data before birth"}
    gaps = sqlite_store.gaps(None, 0, END)
    assert [(g.asset, g.end_ns is not None) for g in gaps] == [(None, True)]  # the broker's, closed
    check_births(h)


EXTRA = [  # tags for the metrics the undecodable-metric test adds to the DBIRTH
    {"asset": ASSET, "name": "x_big", "metric": "too big", "type": "int"},
    {"asset": ASSET, "name": "x_odd", "metric": "odd", "type": "int"},
]


async def test_an_undecodable_metric_is_dropped_alone(
    mosquitto: Mosquitto, sqlite_store: SqliteStore, tahu: StartTahu,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Bad metrics among good ones, in a DBIRTH and in DDATA, as Tahu publishes them (an
    out-of-range Int8, a type name it does not know) and as a raw protobuf from Node (a Double
    in int_value): each is dropped and counted by reason, the rest is stored, no rebirth."""
    T = data_ms()  # this test's DATA time
    h = Harness(mosquitto, sqlite_store, EXTRA)
    async with h.supervisor() as sup:
        await wait_until(lambda: health(sup).state == "connected", 60, "connected")
        node = tahu(**h.node_options())
        await wait_until(lambda: health(sup).samples_delivered >= N_TAGS, 60, "the births")
        node.command(cmd="births", extra=[
            {"name": "too big", "alias": 300, "type": "Int8", "value": 300, "timestamp": T},
            {"name": "odd", "alias": 301, "type": "Int128", "value": 1, "timestamp": T},
        ])
        await wait_until(lambda: health(sup).samples_delivered >= 2 * N_TAGS, 60, "the second births")
        node.command(cmd="ddata", device=DEV, timestamp=T + 1, metrics=[
            {"alias": 300, "type": "Int8", "value": -7},  # learnt from the bad birth metric
            {"alias": 301, "type": "Int128", "value": 2},
            {"alias": DEV_ALIAS + ALIAS["Int8"], "type": "Int8", "value": 1000},
            {"alias": DEV_ALIAS + ALIAS["Int32"], "type": "Int32", "value": -1},
        ])
        node.command(cmd="raw", device=DEV, timestamp=T + 2, metrics=[
            {"alias": DEV_ALIAS + ALIAS["Double"], "datatype": 10, "intValue": 5},
            {"alias": DEV_ALIAS + ALIAS["Float"], "datatype": 9, "floatValue": 0.5},
        ])
        await wait_until(lambda: h.count("d_float") == 3, 60, "the raw DDATA's good metric")
        status = node.command(cmd="status")
        hs = health(sup)
    await h.writer.close()
    assert hs.dropped == {
        "sparkplug metric out of range": 2,  # "too big" in the DBIRTH, Int8 1000 in DDATA
        "sparkplug metric invalid datatype": 2,  # "odd" (datatype 0) in the DBIRTH and DDATA
        "sparkplug metric wrong value field": 1,  # the Double in int_value
    }
    assert status["ncmd"] == 0  # a bad metric is no reason for a rebirth
    check_births(h, 0)
    check_births(h, 1)
    assert h.series("x_big").value.tolist() == [-7.0]
    assert h.count("x_odd") == 0
    assert h.series("d_int32").value.tolist()[2] == -1.0
    assert h.series("d_int8").value.tolist() == [-128.0, -128.0]
    assert h.series("d_double").value.tolist() == [2.718281828459045] * 2
    assert h.series("d_float").value.tolist() == [1.5, 1.5, 0.5]
    assert "value 1000 out of range for INT8" in hs.tag_errors[f"{ASSET}/d_int8"]
    assert "value 300 out of range for INT8" in hs.tag_errors[f"{ASSET}/x_big"]
    assert "invalid datatype 0" in hs.tag_errors[f"{ASSET}/x_odd"]
    logged = [r.getMessage() for r in caplog.records if "dropped metric" in r.getMessage()]
    assert any(f"'too big' of sparkplug node {GROUP}/{NODE}/{DEV}" in m for m in logged), logged


async def test_timestamps_out_of_range_fall_back(
    mosquitto: Mosquitto, sqlite_store: SqliteStore, tahu: StartTahu
) -> None:
    """A metric timestamp after 2262 or negative (sent by Tahu as its uint64 two's
    complement) is unknown: the payload's is used; without a usable one, the receive time."""
    T = data_ms()  # this test's DATA time
    h = Harness(mosquitto, sqlite_store)
    async with h.supervisor() as sup:
        await wait_until(lambda: health(sup).state == "connected", 60, "connected")
        node = tahu(**h.node_options())
        await wait_until(lambda: health(sup).samples_delivered >= N_TAGS, 60, "the births")
        node.command(cmd="ddata", device=DEV, timestamp=T, metrics=[
            {"alias": DEV_ALIAS + ALIAS["UInt8"], "type": "UInt8", "value": 1, "timestamp": 9e18},
            {"alias": DEV_ALIAS + ALIAS["UInt16"], "type": "UInt16", "value": 2, "timestamp": -1000},
        ])
        before = time.time_ns()
        node.command(cmd="ddata", device=DEV, timestamp=9e18, metrics=[
            {"alias": DEV_ALIAS + ALIAS["Int16"], "type": "Int16", "value": 3, "timestamp": -5},
        ])
        node.command(cmd="ddata", device=DEV, metrics=[  # no timestamp at all
            {"alias": DEV_ALIAS + ALIAS["Int32"], "type": "Int32", "value": 4},
        ])
        await wait_until(lambda: health(sup).samples_delivered >= N_TAGS + 4, 60, "the DATA")
        after = time.time_ns()
        hs = health(sup)
    await h.writer.close()
    assert hs.dropped == {}
    assert h.series("d_uint8").ts_ns.tolist()[1] == T * 1_000_000
    assert h.series("d_uint16").ts_ns.tolist()[1] == T * 1_000_000
    for name, value in [("d_int16", 3.0), ("d_int32", 4.0)]:
        s = h.series(name)
        assert s.value[-1] == value
        assert before <= s.ts_ns[-1] <= after, name  # the gateway's receive time
