"""The plant over MQTT, through the real Mosquitto, read back with paho."""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import UTC, datetime
from signal import SIGCONT, SIGSTOP

import paho.mqtt.client as mqtt
import pytest

from collector.mqtt.sparkplug import DataType, Metric, decode_payload, encode_payload, parse_topic
from config.signals import Role
from simulators import Plant
from simulators.mqtt import MQTT_SIGNALS, plain_number, serve_mqtt
from tests.helpers import Clock, wait_until
from tests.mosquitto import Mosquitto, Received, Recorder

pytestmark = pytest.mark.mqtt

NOW = datetime(2026, 11, 20, 10, 17, 3, 123456, tzinfo=UTC)
S = 1_000_000_000
# a long interval: the tests tick the publisher themselves, so what it sends is known
SLOW = 3600.0

# the documented layout, written out independently of the code: signal -> (MachineValues
# field, json group, json key, Sparkplug datatype)
EXPECTED = {
    "state": ("state", "machine", "state", DataType.INT32),
    "mode": ("mode", "machine", "mode", DataType.INT32),
    "channel_mode": ("channel_mode", "machine", "channel_mode", DataType.INT32),
    "stop_reason": ("stop_reason", "machine", "stop_reason", DataType.INT32),
    "total_count": ("total", "counters", "total", DataType.UINT64),
    "good_count": ("good", "counters", "good", DataType.UINT64),
    "reject_count": ("reject", "counters", "reject", DataType.UINT64),
    "energy_kwh": ("energy_kwh", "energy", "kwh", DataType.DOUBLE),
    "power_kw": ("power_kw", "energy", "power_kw", DataType.DOUBLE),
    "speed_rpm": ("speed_rpm", "process", "speed_rpm", DataType.DOUBLE),
    "temperature_c": ("temperature_c", "process", "temperature_c", DataType.DOUBLE),
}
LINE1 = ["demo/machining/line1/lathe-01", "demo/machining/line1/mill-01"]
LINE2 = ["demo/machining/line2/press-01"]


def expected(plant: Plant, asset: str, t: int) -> dict[str, int | float]:
    v = plant.machine_values(asset, t)
    return {signal: getattr(v, field) for signal, (field, *_) in EXPECTED.items()}


def changed(plant: Plant, asset: str, t0: int, t1: int) -> set[str]:
    a, b = expected(plant, asset, t0), expected(plant, asset, t1)
    return {k for k in a if a[k] != b[k]}


def test_signal_table() -> None:
    assert set(MQTT_SIGNALS) == set(EXPECTED)
    assert MQTT_SIGNALS["state"] is Role.STATE
    assert MQTT_SIGNALS["energy_kwh"] is Role.ENERGY_KWH
    assert MQTT_SIGNALS["temperature_c"] is Role.ANALOG


def test_topics_document_lists_every_signal() -> None:
    from pathlib import Path

    import simulators.mqtt

    doc = (Path(simulators.mqtt.__file__).parent / "TOPICS.md").read_text()
    for signal in MQTT_SIGNALS:
        assert f"| `{signal}` | {MQTT_SIGNALS[signal].value} |" in doc


@pytest.mark.parametrize(
    ("value", "text"), [(3, "3"), (1234, "1234"), (56.125, "56.125"), (12.0, "12.0"), (3e-05, "0.00003")]
)
def test_plain_numbers_are_positional_decimals(value: float, text: str) -> None:
    assert plain_number(value) == text


# --------------------------------------------------------------------------- plain


async def test_plain_topics_and_values(mosquitto: Mosquitto, plant: Plant, clock: Clock) -> None:
    assets = LINE1 + LINE2
    with Recorder(mosquitto.host, mosquitto.port, ["tierproof/#"]) as rec:
        async with serve_mqtt(plant, mosquitto.host, mosquitto.port, style="plain", assets=assets,
                              clock=clock, interval_s=SLOW) as pub:
            n = len(assets) * len(EXPECTED)
            got = await rec.until(lambda ms: len(ms) >= n, 30, f"{n} plain messages")
            assert pub.published == n
            seen = {m.topic: m for m in got}
            assert len(seen) == n
            for asset in assets:
                line, name = asset.split("/")[2:]
                for signal, value in expected(plant, asset, clock.t).items():
                    msg = seen[f"tierproof/{line}/{name}/{signal}"]
                    assert (msg.qos, msg.retain) == (1, False)  # retain flag is off for live delivery
                    text = msg.payload.decode("ascii")
                    assert (int(text) if isinstance(value, int) else float(text)) == value, (asset, signal)

            # unchanged values are not sent again
            pub.tick()
            assert pub.published == n
            # one simulated second later: exactly the signals that changed
            t0, clock.t = clock.t, clock.t + 7 * S
            diff = {(a, s) for a in assets for s in changed(plant, a, t0, clock.t)}
            assert diff, "the plant should move within 7 s"
            pub.tick()
            assert pub.published == n + len(diff)
            more = (await rec.until(lambda ms: len(ms) >= n + len(diff), 30, "the changes"))[n:]
            assert {m.topic for m in more} == {pub.topic(a, s) for a, s in diff}


async def test_plain_messages_are_retained_for_late_subscribers(
    mosquitto: Mosquitto, plant: Plant, clock: Clock
) -> None:
    async with serve_mqtt(plant, mosquitto.host, mosquitto.port, style="plain", assets=LINE2,
                          clock=clock, interval_s=SLOW) as pub:
        # late: once the broker has acknowledged (so retained) the first messages; they are
        # only handed to paho when serve_mqtt yields, and a subscriber that came before them
        # got them live, not retained (seen at load ~15)
        await wait_until(lambda: pub.unacked == 0, 30, "the broker's PUBACKs")
        with Recorder(mosquitto.host, mosquitto.port, ["tierproof/line2/press-01/state"]) as late:
            got = await late.until(lambda ms: len(ms) >= 1, 30, "the retained state")
    assert got[0].retain
    assert int(got[0].payload) == plant.machine_values(LINE2[0], clock.t).state


def plain_values(pub: object, plant: Plant, assets: list[str], t: int) -> dict[str, str]:
    """topic -> payload of every plain signal of ``assets`` at ``t``."""
    from simulators.mqtt import MqttPublisher

    assert isinstance(pub, MqttPublisher)
    return {pub.topic(a, s): plain_number(v) for a in assets for s, v in expected(plant, a, t).items()}


async def test_a_stalled_broker_holds_qos1_messages_back_within_the_bound(
    mosquitto: Mosquitto, plant: Plant, clock: Clock
) -> None:
    """paho keeps every QoS 1 message until its PUBACK: with Mosquitto stopped (SIGSTOP: a
    real broker that takes bytes into its socket buffer and answers nothing, as a stalled
    one does) the messages it keeps stay within ``max_unacked``; the rest is held back and
    counted, and once the broker runs again the plant's *current* values reach the subscriber
    (the held ones are not sent late, out of date)."""
    bound, assets = 5, LINE1
    with Recorder(mosquitto.host, mosquitto.port, ["tierproof/#"]) as rec:
        async with serve_mqtt(plant, mosquitto.host, mosquitto.port, style="plain", assets=assets,
                              clock=clock, interval_s=SLOW, max_unacked=bound) as pub:
            (session,) = pub.sessions
            queued = session.client._out_messages  # paho's own queue: what grew without bound

            async def converge(what: str) -> None:
                """Tick until the subscriber's last value of every topic is the plant's now."""
                want, deadline = plain_values(pub, plant, assets, clock.t), time.monotonic() + 60
                while not ({m.topic: m.payload.decode() for m in rec.messages} == want
                           and pub.unacked == 0):
                    assert time.monotonic() < deadline, f"{what}: held {pub.held}, unacked {pub.unacked}"
                    pub.tick()
                    assert len(queued) <= bound
                    await asyncio.sleep(0.02)

            # the first tick alone has 22 messages: 5 go out, the rest wait for PUBACKs
            assert pub.published == bound and pub.held == len(assets) * len(EXPECTED) - bound
            await converge("the first values")
            assert mosquitto.proc is not None
            pid, held, sent = mosquitto.proc.pid, pub.held, pub.published
            os.kill(pid, SIGSTOP)
            try:
                for _ in range(40):  # the machines run on while the broker answers nothing
                    clock.t += 7 * S
                    pub.tick()
                    assert len(queued) <= bound and pub.unacked <= bound
                    await asyncio.sleep(0.005)
                assert pub.published <= sent + bound and pub.held > held
            finally:
                os.kill(pid, SIGCONT)
            await converge("the current values after the stall")
    assert pub.unacked == 0 and len(queued) == 0


async def test_the_bound_must_be_positive(plant: Plant) -> None:
    with pytest.raises(ValueError, match="max_unacked must be at least 1, not 0"):
        async with serve_mqtt(plant, "127.0.0.1", 1, style="plain", max_unacked=0):
            pass


# --------------------------------------------------------------------------- json


async def test_json_documents(mosquitto: Mosquitto, plant: Plant, clock: Clock) -> None:
    assets = LINE1 + LINE2
    with Recorder(mosquitto.host, mosquitto.port, ["tierproof/+/+"], qos=0) as rec:
        async with serve_mqtt(plant, mosquitto.host, mosquitto.port, style="json", assets=assets,
                              clock=clock, interval_s=SLOW, qos=0) as pub:
            got = await rec.until(lambda ms: len(ms) >= len(assets), 30, "one document per machine")
            for asset in assets:
                [msg] = [m for m in got if m.topic == pub.topic(asset)]
                doc = json.loads(msg.payload)
                assert set(doc) == {"ts", "machine", "counters", "energy", "process"}
                assert doc["ts"] == clock.t // 1_000_000
                for signal, value in expected(plant, asset, clock.t).items():
                    _, group, key, _ = EXPECTED[signal]
                    assert doc[group][key] == value and type(doc[group][key]) is type(value), signal
            # within the heartbeat and nothing changed: nothing sent
            pub.tick()
            assert pub.published == len(assets)


async def test_json_sends_at_once_when_a_counter_changes(
    mosquitto: Mosquitto, plant: Plant, clock: Clock
) -> None:
    asset = LINE1[0]
    async with serve_mqtt(plant, mosquitto.host, mosquitto.port, style="json", assets=[asset],
                          clock=clock, interval_s=SLOW) as pub:
        # find a later instant at which a part was made (counters changed)
        t0 = clock.t
        t1 = next(t0 + k * S for k in range(1, 3600)
                  if "total_count" in changed(plant, asset, t0, t0 + k * S))
        with Recorder(mosquitto.host, mosquitto.port, [pub.topic(asset)]) as rec:
            await rec.until(lambda ms: len(ms) == 1, 30, "the retained document")
            clock.t = t1
            pub.tick()
            got = await rec.until(lambda ms: len(ms) == 2, 30, "the document after the part")
    assert json.loads(got[1].payload)["counters"]["total"] == plant.machine_values(asset, t1).total


# --------------------------------------------------------------------------- sparkplug


def by_node(msgs: list[Received], node: str) -> list[tuple[str, int | None, list[Metric]]]:
    """(message type[/device], seq, metrics) of one edge node's messages, in order."""
    out = []
    for m in msgs:
        t = parse_topic(m.topic)
        if t.edge_node_id == node and t.message_type != "NCMD":
            p = decode_payload(m.payload)
            out.append((t.message_type + (f"/{t.device_id}" if t.device_id else ""), p.seq, p.metrics))
    return out


def sparkplug_recorder(m: Mosquitto) -> Recorder:
    return Recorder(m.host, m.port, ["spBv1.0/tierproof/#"], qos=1)


async def births(rec: Recorder, n: int) -> list[Received]:
    return await rec.until(lambda ms: len(ms) >= n, 30, f"{n} birth messages")


async def test_sparkplug_births_and_data(mosquitto: Mosquitto, plant: Plant, clock: Clock) -> None:
    with sparkplug_recorder(mosquitto) as rec:
        async with serve_mqtt(plant, mosquitto.host, mosquitto.port, style="sparkplug",
                              assets=LINE1 + LINE2, clock=clock, interval_s=SLOW) as pub:
            got = await births(rec, 2 + 3)  # 2 NBIRTH + 3 DBIRTH
            ts = clock.t // 1_000_000
            line1 = by_node(got, "line1")
            assert [(k, seq) for k, seq, _ in line1] == [
                ("NBIRTH", 0), ("DBIRTH/lathe-01", 1), ("DBIRTH/mill-01", 2)]
            line2 = [(k, seq) for k, seq, _ in by_node(got, "line2")]
            assert line2 == [("NBIRTH", 0), ("DBIRTH/press-01", 1)]
            nbirth = {m.name: m for m in line1[0][2]}
            assert nbirth["bdSeq"].datatype == DataType.INT64 and nbirth["bdSeq"].value == 0
            assert nbirth["Node Control/Rebirth"] == Metric("Node Control/Rebirth", None, DataType.BOOLEAN,
                                                            False, ts)
            aliases: dict[int, tuple[str, str]] = {}
            for kind, _, metrics in line1[1:]:
                device = kind.split("/")[1]
                asset = next(a for a in LINE1 if a.endswith(device))
                values = expected(plant, asset, clock.t)
                assert {m.name for m in metrics} == set(EXPECTED)
                for m in metrics:
                    assert m.name is not None and m.alias is not None
                    assert (m.datatype, m.value, m.timestamp_ms) == (EXPECTED[m.name][3], values[m.name], ts)
                    aliases[m.alias] = (asset, m.name)
            assert len(aliases) == 2 * len(EXPECTED)  # unique across the node's devices

            # DDATA: changed metrics only, by alias, with their timestamp; seq goes on
            t0, clock.t = clock.t, clock.t + 7 * S
            pub.tick()
            diff = {a: changed(plant, a, t0, clock.t) for a in LINE1}
            n_data = sum(1 for a in LINE1 if diff[a])
            got = await rec.until(lambda ms: len(by_node(ms, "line1")) >= 3 + n_data, 30, "DDATA")
            data = by_node(got, "line1")[3:]
            assert [seq for _, seq, _ in data] == list(range(3, 3 + n_data))
            for kind, _, metrics in data:
                assert kind.startswith("DDATA/")
                asset = next(a for a in LINE1 if a.endswith(kind.split("/")[1]))
                assert all(m.name is None for m in metrics)
                assert {aliases[m.alias][1] for m in metrics if m.alias is not None} == diff[asset]
                values = expected(plant, asset, clock.t)
                for m in metrics:
                    assert m.alias is not None
                    assert (m.value, m.timestamp_ms) == (values[aliases[m.alias][1]], clock.t // 1_000_000)


def ask_rebirth(broker: Mosquitto, node: str) -> None:
    """What a Sparkplug host sends when it needs a node's births again."""
    host = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="scada-host")
    host.connect(broker.host, broker.port)
    host.loop_start()
    cmd = encode_payload([Metric("Node Control/Rebirth", None, DataType.BOOLEAN, True, 1)], 0, 1)
    host.publish(f"spBv1.0/tierproof/NCMD/{node}", cmd, qos=1).wait_for_publish(5)
    host.disconnect()
    host.loop_stop()


async def test_sparkplug_rebirth_on_request(mosquitto: Mosquitto, plant: Plant, clock: Clock) -> None:
    with sparkplug_recorder(mosquitto) as rec:
        async with serve_mqtt(plant, mosquitto.host, mosquitto.port, style="sparkplug", assets=LINE2,
                              clock=clock, interval_s=SLOW) as pub:
            await births(rec, 2)
            # a host that saw a gap in seq asks for a rebirth, as Sparkplug hosts do
            pub.skip_seq()
            clock.t += 7 * S
            pub.tick()
            got = await rec.until(lambda ms: len(ms) >= 3, 30, "the DDATA after the skipped seq")
            assert [(k, seq) for k, seq, _ in by_node(got, "line2")] == [
                ("NBIRTH", 0), ("DBIRTH/press-01", 1), ("DDATA/press-01", 3)]

            await asyncio.to_thread(ask_rebirth, mosquitto, "line2")

            got = await rec.until(lambda ms: len(by_node(ms, "line2")) >= 5, 30, "the rebirth")
            assert [(k, seq) for k, seq, _ in by_node(got, "line2")][3:] == [
                ("NBIRTH", 0), ("DBIRTH/press-01", 1)]
            assert pub.rebirths == 1
            dbirth = by_node(got, "line2")[4][2]
            assert {m.name: m.value for m in dbirth} == expected(plant, LINE2[0], clock.t)


async def test_sparkplug_ignores_other_commands(mosquitto: Mosquitto, plant: Plant, clock: Clock) -> None:
    async with serve_mqtt(plant, mosquitto.host, mosquitto.port, style="sparkplug", assets=LINE2,
                          clock=clock, interval_s=SLOW) as pub:
        with Recorder(mosquitto.host, mosquitto.port, ["spBv1.0/tierproof/NCMD/line2"]) as rec:
            sender = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="odd-host")
            sender.connect(mosquitto.host, mosquitto.port)
            sender.loop_start()
            no = encode_payload([Metric("Node Control/Rebirth", None, DataType.BOOLEAN, False, 1)], 0, 1)
            for payload in (b"not protobuf", no):
                sender.publish("spBv1.0/tierproof/NCMD/line2", payload, qos=1).wait_for_publish(5)
            sender.disconnect()
            sender.loop_stop()
            # the publisher subscribed before the recorder, so it has seen both when the recorder has
            await rec.until(lambda ms: len(ms) == 2, 30, "both commands")
        pub.tick()
        assert pub.rebirths == 0


def deaths(msgs: list[Received]) -> int:
    return sum(parse_topic(m.topic).message_type == "NDEATH" for m in msgs)


async def test_sparkplug_death(mosquitto: Mosquitto, plant: Plant, clock: Clock) -> None:
    with sparkplug_recorder(mosquitto) as rec:
        async with serve_mqtt(plant, mosquitto.host, mosquitto.port, style="sparkplug",
                              assets=LINE1 + LINE2, clock=clock, interval_s=SLOW) as pub:
            await births(rec, 5)
            pub.die("line1")  # a crash: the broker publishes line1's Will
            got = await rec.until(lambda ms: deaths(ms) == 1, 30, "the NDEATH Will")
            [death] = [m for m in got if parse_topic(m.topic).message_type == "NDEATH"]
            assert parse_topic(death.topic).edge_node_id == "line1"
            payload = decode_payload(death.payload)
            assert payload.seq is None
            assert [(m.name, m.value) for m in payload.metrics] == [("bdSeq", 0)]
        # leaving cleanly, line2 says NDEATH itself (a clean DISCONNECT suppresses the Will)
        got = await rec.until(lambda ms: deaths(ms) == 2, 30, "line2's own NDEATH")
        assert parse_topic(got[-1].topic).edge_node_id == "line2"


# --------------------------------------------------------------------------- brokers that say no


async def test_password_and_tls_listeners(mosquitto: Mosquitto, plant: Plant, clock: Clock) -> None:
    m = mosquitto
    cases: list[tuple[int, dict[str, object]]] = [
        (m.auth_port, {"username": m.username, "password": m.password}),
        (m.tls_port, {"tls": (m.ca_file, m.client_cert, m.client_key)}),
    ]
    for port, kwargs in cases:
        with Recorder(m.host, m.port, ["tierproof/line2/press-01/state"]) as rec:
            async with serve_mqtt(plant, m.host, port, style="plain", assets=LINE2, clock=clock,
                                  interval_s=SLOW, retain=False, **kwargs):  # type: ignore[arg-type]
                got = await rec.until(lambda ms: len(ms) == 1, 30, f"a message through port {port}")
        assert int(got[0].payload) == plant.machine_values(LINE2[0], clock.t).state


@pytest.mark.parametrize(
    ("which", "reason"),
    [
        ("auth_port", "refused the simulator: Not authorized"),
        ("free", "cannot reach"),
    ],
)
async def test_refused_connection_raises(
    mosquitto: Mosquitto, plant: Plant, clock: Clock, which: str, reason: str
) -> None:
    from tests.helpers import free_port

    port = free_port() if which == "free" else getattr(mosquitto, which)
    with pytest.raises(ConnectionError, match=reason):
        async with serve_mqtt(plant, mosquitto.host, port, style="plain", assets=LINE2, clock=clock):
            pass


async def test_bad_arguments_are_named(plant: Plant) -> None:
    with pytest.raises(ValueError, match="unknown MQTT style 'xml'"):
        async with serve_mqtt(plant, "127.0.0.1", 1, style="xml"):  # type: ignore[arg-type]
            pass
    with pytest.raises(KeyError, match="asset 'x/y/z/w' is not in the plant"):
        async with serve_mqtt(plant, "127.0.0.1", 1, style="plain", assets=["x/y/z/w"]):
            pass


async def test_sparkplug_births_again_after_the_broker_restarts(
    mosquitto: Mosquitto, plant: Plant, clock: Clock
) -> None:
    """A new MQTT session is a new birth: bdSeq goes up by one, and NBIRTH and the new Will
    carry it (a host matches NDEATH to NBIRTH by it)."""
    async with serve_mqtt(plant, mosquitto.host, mosquitto.port, style="sparkplug", assets=LINE2,
                          clock=clock, interval_s=0.05) as pub:
        await asyncio.to_thread(mosquitto.restart)
        async with Recorder(mosquitto.host, mosquitto.port, ["spBv1.0/tierproof/#"]) as rec:
            # paho reconnects the publisher after its 1 s reconnect delay, and it births at
            # once; to not depend on who was first, wait for that (and for the broker's SUBACK
            # of its NCMD subscription: a command published before it reaches no one, which
            # under CI load it did) and then ask for a rebirth
            await wait_until(lambda: pub.sessions[0].connected and not pub.sessions[0].need_birth
                             and pub.sessions[0].listening,
                             30, "the publisher's new session, its births and its subscription")
            await asyncio.to_thread(ask_rebirth, mosquitto, "line2")  # the new session listens too
            await wait_until(lambda: pub.rebirths >= 1, 30, "the rebirth asked for")
            assert pub.rebirths == 1
            got = await rec.until(lambda ms: len(by_node(ms, "line2")) >= 2, 30, "births after restart")
            nbirths = [metrics for kind, _, metrics in by_node(got, "line2") if kind == "NBIRTH"]
            assert nbirths and all({m.name: m.value for m in n}["bdSeq"] == 1 for n in nbirths)
            pub.die()
            got = await rec.until(lambda ms: deaths(ms) == 1, 30, "the Will of the new session")
            death = next(m for m in got if parse_topic(m.topic).message_type == "NDEATH")
            assert [(m.name, m.value) for m in decode_payload(death.payload).metrics] == [("bdSeq", 1)]
