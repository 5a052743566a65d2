"""tierproof as the Sparkplug 3.0 primary host of an Eclipse Tahu edge node: the gateway's
retained ``spBv1.0/STATE/<host>`` JSON ``{"online", "timestamp"}`` (QoS 1; offline as its
MQTT Will and at a clean stop) as Tahu's edge node reads it, through a real Mosquitto.

Which Tahu: the edge node is ``node/tahu_edge.js`` on npm ``sparkplug-client`` 3.2.4, as in
``test_sparkplug_tahu.py``. Tahu's JavaScript client has no primary host support (no option,
no STATE subscription, in 3.2.4 and in Tahu's develop branch). Worse, it decodes every message
arriving on its connection as a Sparkplug protobuf before looking at the topic: a STATE
message (JSON, as Sparkplug 3.0 requires) throws ``RangeError: index out of range`` out of
mqtt.js's message event and ends the Node process. Tahu's Java edge node
(``org.eclipse.tahu.edge.EdgeClient``) does implement it, but needs Maven Central and Eclipse
Paho's Java client, which this machine cannot install. So ``tahu_edge.js`` applies
EdgeClient's rules to the STATE messages its mqtt.js client receives (see its header): wait
for online before any birth, ignore a STATE older than the last one seen, births on online,
DDEATH + NDEATH and silence on offline, births again when the host is back.

Found about tierproof (fixed in collector/mqtt/transport.py): the gateway did not subscribe to
its own STATE topic, as Sparkplug 3.0 asks of a host (and Tahu's Java HostApplication does),
so a late offline STATE -- the Will of a previous gateway session whose broken connection the
broker noticed only after the new session was online -- stayed retained: Tahu's nodes
already born ignore it (older timestamp), but every node connecting afterwards read "offline"
and never published. The gateway now answers an offline STATE on its own topic with its
online STATE again (the same session timestamp as its Will, as Tahu's host does).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from test_sparkplug_tahu import (
    ALIAS,
    ASSET,
    DEV,
    DEV_ALIAS,
    GROUP,
    N_TAGS,
    NODE,
    Harness,
    StartTahu,
    check_births,
    data_ms,
)

from store.sqlite import SqliteStore
from tests.helpers import free_port, health, wait_for, wait_until
from tests.mosquitto import Mosquitto, Recorder

pytestmark = pytest.mark.mqtt

HOST = "tierproof-primary"
STATE = f"spBv1.0/STATE/{HOST}"
ROOT = Path(__file__).resolve().parents[2]


def primary(node: Any) -> dict[str, Any]:
    status: dict[str, Any] = node.command(cmd="status")["primary"]
    return status


def ddata(node: Any, value: int, k: int = 0) -> dict[str, Any]:
    answer: dict[str, Any] = node.command(cmd="ddata", device=DEV, timestamp=data_ms() + k, metrics=[
        {"alias": DEV_ALIAS + ALIAS["UInt32"], "type": "UInt32", "value": value}])
    return answer


def host_harness(b: Mosquitto, store: SqliteStore) -> Harness:
    h = Harness(b, store)
    h.dev = h.dev.model_copy(update={"primary_host_id": HOST})
    return h


def retained_state(b: Mosquitto) -> dict[str, Any]:
    """The STATE the broker retains now, as a new subscriber gets it."""
    with Recorder(b.host, b.port, [STATE]) as rec:
        rec.wait_for(lambda got: len(got) >= 1, 10, "the retained STATE")
        msg = rec.messages[0]
        assert msg.retain, "a STATE must be retained"
        doc: dict[str, Any] = json.loads(msg.payload)
        return doc


async def test_tahu_births_on_our_online_state_and_goes_silent_on_our_offline_state(
    mosquitto: Mosquitto, sqlite_store: SqliteStore, tahu: StartTahu
) -> None:
    """The node starts first and waits; the gateway's STATE online makes it publish its
    births; the gateway's clean stop (STATE offline, same timestamp) makes it publish DDEATH
    and NDEATH and hold its DATA; a node connecting then reads the retained offline; the
    gateway's return (a newer timestamp) brings births from both nodes."""
    h = host_harness(mosquitto, sqlite_store)
    node = tahu(**h.node_options(primaryHostId=HOST))
    p = primary(node)
    assert p["granted"] == [1] and p["states"] == [] and node.command(cmd="status")["births"] == 0
    assert ddata(node, 7) == {"ok": True, "held": True}  # no host: EdgeClient drops DATA
    before = time.time_ns() // 1_000_000
    with Recorder(mosquitto.host, mosquitto.port, [f"spBv1.0/{GROUP}/#"]) as rec:
        async with h.supervisor() as sup:
            await wait_until(lambda: health(sup).samples_delivered >= N_TAGS, 60,
                             "Tahu's births after our STATE online")
            after = time.time_ns() // 1_000_000
            (online,) = primary(node)["states"]
            assert online["online"] is True and online["keys"] == ["online", "timestamp"]
            # the node had subscribed before: a live copy, not the retained one
            assert (online["qos"], online["retain"]) == (1, False)
            assert before <= online["timestamp"] <= after
            assert ddata(node, 1, 1)["ok"] is True
            await wait_until(lambda: h.count("d_uint32") == 2, 60, "DDATA while the host is online")
            assert retained_state(mosquitto) == {"online": True, "timestamp": online["timestamp"]}
            hs = health(sup)
        # the clean stop: our offline STATE, then DISCONNECT (no Will)
        await wait_until(lambda: len(primary(node)["states"]) >= 2, 30, "our offline STATE at Tahu")
        rec.wait_for(lambda got: any("/NDEATH/" in m.topic for m in got), 30, "Tahu's NDEATH")
        death_topics = [m.topic for m in rec.messages if "DEATH" in m.topic]
    assert hs.dropped == {}
    p = primary(node)
    assert p["states"][1] == {"online": False, "timestamp": online["timestamp"],
                              "keys": ["online", "timestamp"], "retain": False, "qos": 1}
    assert p["online"] is False and p["deaths"] == 1 and p["stale"] == 0
    assert death_topics == [f"spBv1.0/{GROUP}/DDEATH/{NODE}/{DEV}", f"spBv1.0/{GROUP}/NDEATH/{NODE}"]
    assert ddata(node, 2, 2)["held"] is True
    assert retained_state(mosquitto) == {"online": False, "timestamp": online["timestamp"]}

    # a node connecting while the gateway is away reads the retained offline and waits
    late = tahu(**h.node_options(primaryHostId=HOST, edgeNode="tahu2", devices=["M2"]))
    await wait_until(lambda: len(primary(late)["states"]) == 1, 30, "the retained STATE at tahu2")
    (seen,) = primary(late)["states"]
    assert (seen["online"], seen["retain"], seen["qos"]) == (False, True, 1)
    assert late.command(cmd="status")["births"] == 0

    # the gateway is back: a newer session timestamp, births from both nodes
    async with h.supervisor() as sup:
        await wait_until(lambda: node.command(cmd="status")["births"] == 2, 60, "tahu1's rebirth")
        await wait_until(lambda: late.command(cmd="status")["births"] == 1, 60, "tahu2's births")
        await wait_until(lambda: h.count("d_int16") == 2, 60, "tahu1's births stored again")
        back = primary(node)["states"][2]
        assert back["online"] is True and back["timestamp"] > online["timestamp"]
        assert ddata(node, 3, 3)["ok"] is True
        await wait_until(lambda: h.count("d_uint32") == 4, 60, "DDATA after the host's return")
    check_births(h, 0)
    check_births(h, 1)  # Tahu's DDEATH and NDEATH went out while no gateway listened
    # both births (now), then the DDATA (stamped an hour ahead): what Tahu held while the
    # host was away never went out
    assert h.series("d_uint32").value.tolist() == [4294967295.0, 4294967295.0, 1.0, 3.0]


def gateway_config(h: Harness, tmp: Path) -> Path:
    data = h.dev.model_dump(mode="json", exclude_none=True)
    data["client_id"] = "tierproof-interop-killed"
    cfg = {"version": 1, "assets": [{"path": ASSET}], "devices": [data],
           "store": {"type": "sqlite", "path": str(tmp / "gateway.db")},
           "api": {"host": "127.0.0.1", "port": free_port(), "auth": {"required": False}}}
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def stored(cfg: Path) -> int:
    """How many samples of Tahu's ``d_int16`` the running gateway's store holds (its API)."""
    port = yaml.safe_load(cfg.read_text())["api"]["port"]
    got = httpx.get(f"http://127.0.0.1:{port}/api/v1/tags/{ASSET}/d_int16/samples",
                    params={"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}, timeout=10)
    return len(got.json()["ts"]) if got.status_code == 200 else 0


def start_gateway(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "api.cli", "--log-level", "INFO", "run",
                                 "--config", str(cfg)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_the_gateways_will_takes_tahu_offline_and_its_return_brings_births(
    mosquitto: Mosquitto, sqlite_store: SqliteStore, tahu: StartTahu, tmp_path: Path
) -> None:
    """``tierproof run`` killed (SIGKILL: no DISCONNECT): Mosquitto publishes the gateway's
    Will, STATE offline with the timestamp of its online STATE; Tahu takes it as the host's
    death. ``tierproof run`` again: Tahu publishes its births to the new session."""
    h = host_harness(mosquitto, sqlite_store)
    cfg = gateway_config(h, tmp_path)
    log = tmp_path / "gateway.log"
    gw = start_gateway(cfg, log)
    try:
        node = tahu(**h.node_options(primaryHostId=HOST))
        deadline = time.monotonic() + 60
        while not primary(node)["online"]:
            assert gw.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        (online,) = primary(node)["states"]
        # the birth is in the store before the kill (a SIGKILL loses what is not yet written)
        wait_for(lambda: stored(cfg) >= 1, 30, "Tahu's first birth in the store")
        gw.send_signal(signal.SIGKILL)
        gw.wait(10)
        deadline = time.monotonic() + 30
        while len(primary(node)["states"]) < 2:
            assert time.monotonic() < deadline, "no Will at Tahu"
            time.sleep(0.2)
        p = primary(node)
        assert p["states"][1] == {"online": False, "timestamp": online["timestamp"],
                                  "keys": ["online", "timestamp"], "retain": False, "qos": 1}
        assert p["online"] is False and p["deaths"] == 1
        assert retained_state(mosquitto) == {"online": False, "timestamp": online["timestamp"]}
        gw = start_gateway(cfg, log)
        deadline = time.monotonic() + 60
        while node.command(cmd="status")["births"] < 2:
            assert gw.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        back = primary(node)["states"][2]
        assert back["online"] is True and back["timestamp"] > online["timestamp"]
        # Tahu published its births; the gateway stores them before it is stopped
        wait_for(lambda: stored(cfg) >= 2, 30, "Tahu's second birth in the store")
    finally:
        if gw.poll() is None:
            gw.terminate()
            gw.wait(20)
    with SqliteStore(tmp_path / "gateway.db") as store:  # both sessions stored Tahu's births
        tag = next(t for t in store.tags() if t.path == f"{ASSET}/d_int16")
        assert len(store.read(tag.tag_id, 0, 2**62, prior=False).value) >= 2


def _mqtt_str(b: bytes) -> bytes:
    return len(b).to_bytes(2, "big") + b


def stale_session(b: Mosquitto, timestamp_ms: int) -> socket.socket:
    """An MQTT session of a previous gateway process with its STATE offline Will (QoS 1,
    retained), connected: closing the returned socket ends it without DISCONNECT, as a cut
    network does once the broker notices (a fake of that fault: a real cut is noticed only
    after 1.5 keepalives). A bare MQTT 3.1.1 CONNECT on a socket: no client state to leak."""
    flags = 0x02 | 0x04 | 0x08 | 0x20  # clean session, Will, Will QoS 1, Will retained
    body = (_mqtt_str(b"MQTT") + bytes([4, flags]) + (60).to_bytes(2, "big")
            + _mqtt_str(b"tierproof-previous-session") + _mqtt_str(STATE.encode())
            + _mqtt_str(json.dumps({"online": False, "timestamp": timestamp_ms}).encode()))
    assert len(body) < 128  # one byte of remaining length
    sock = socket.create_connection((b.host, b.port), timeout=10)
    sock.sendall(bytes([0x10, len(body)]) + body)
    assert sock.recv(4) == b"\x20\x02\x00\x00", "the previous session was not accepted"
    return sock


async def test_a_late_offline_state_of_a_previous_session_is_answered_with_online(
    mosquitto: Mosquitto, sqlite_store: SqliteStore, tahu: StartTahu
) -> None:
    """A previous gateway session's Will (STATE offline, an older timestamp) published after
    the gateway is online: Tahu's born node ignores it as stale, and the gateway republishes
    its online STATE, so a node connecting afterwards reads online and publishes its births."""
    h = host_harness(mosquitto, sqlite_store)
    old = stale_session(mosquitto, time.time_ns() // 1_000_000 - 60_000)
    node = tahu(**h.node_options(primaryHostId=HOST))
    async with h.supervisor() as sup:
        await wait_until(lambda: health(sup).samples_delivered >= N_TAGS, 60, "Tahu's births")
        (online,) = primary(node)["states"]
        old.close()  # the broker publishes the previous session's Will now
        await wait_until(lambda: primary(node)["stale"] == 1, 30, "the old Will at Tahu")
        # the gateway says online again, with its session's timestamp (as its Will has it)
        await wait_until(lambda: len(primary(node)["states"]) == 3, 30, "our online STATE again")
        p = primary(node)
        assert p["states"][2] == online and p["online"] is True and p["deaths"] == 0
        assert retained_state(mosquitto) == {"online": True, "timestamp": online["timestamp"]}
        late = tahu(**h.node_options(primaryHostId=HOST, edgeNode="tahu2", devices=["M2"]))
        await wait_until(lambda: late.command(cmd="status")["births"] == 1, 30,
                         "births of a node connecting after the old Will")
        (seen,) = primary(late)["states"]
        assert (seen["online"], seen["timestamp"], seen["retain"]) == (True, online["timestamp"], True)
        assert ddata(node, 9, 1)["ok"] is True
        await wait_until(lambda: h.count("d_uint32") == 2, 60, "DDATA")
