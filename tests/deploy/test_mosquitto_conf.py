"""deploy/mosquitto/mosquitto.conf and the compose start command, run by the real Debian
mosquitto (2.0, like the image's): the broker starts with that file, takes the user whose
password file the command writes, and refuses anonymous clients.

Only what differs between the container and this machine is rewritten: the data directory
(/mosquitto/data -> a temporary one) and the listener (1883 on every interface -> a free
port on 127.0.0.1); every other line is the shipped one.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml

from tests.helpers import free_port, wait_for

pytestmark = pytest.mark.mqtt

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def broker() -> Iterator[tuple[int, str, str]]:
    """(port, username, password) of a mosquitto started the way docker-compose.yml does."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    svc = compose["services"]["mosquitto"]
    script: str = svc["command"][2].replace("$$", "$")
    user, password = "plant-gw", "pw with spaces #1"
    # not pytest's tmp_path: its parents are 0700 root, which the mosquitto user cannot enter
    d = Path(tempfile.mkdtemp(prefix="tierproof-compose-mosquitto-"))
    data = d / "data"
    data.mkdir()
    shutil.chown(d, "mosquitto", "mosquitto")
    shutil.chown(data, "mosquitto", "mosquitto")
    port = free_port()
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    assert conf.count("/mosquitto/data/") == 2 and conf.count("listener 1883 0.0.0.0") == 1
    conf = conf.replace("/mosquitto/data/", f"{data}/").replace(
        "listener 1883 0.0.0.0", f"listener {port} 127.0.0.1")
    (d / "mosquitto.conf").write_text(conf)
    assert script.count("/mosquitto/data/passwd") == 3
    script = script.replace("/mosquitto/data/", f"{data}/").replace(
        "-c /mosquitto/config/mosquitto.conf", f"-c {d / 'mosquitto.conf'}")
    log = (d / "log").open("wb")
    proc = subprocess.Popen(["sh", "-c", script], stdout=log, stderr=subprocess.STDOUT,
                            env={"PATH": "/usr/sbin:/usr/bin:/bin", "MQTT_USERNAME": user,
                                 "MQTT_PASSWORD": password})
    try:
        def listening() -> bool:
            assert proc.poll() is None, f"mosquitto exited: {(d / 'log').read_text()}"
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_for(listening, 15, "mosquitto to listen")
        yield port, user, password
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
        shutil.rmtree(d, ignore_errors=True)


def connect(port: int, username: str | None, password: str | None) -> mqtt.ReasonCode:
    got: list[mqtt.ReasonCode] = []
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{username}")

    def on_connect(client: mqtt.Client, userdata: object, flags: object, rc: mqtt.ReasonCode,
                   props: object) -> None:
        got.append(rc)
        done.set()

    c.on_connect = on_connect
    if username is not None:
        c.username_pw_set(username, password)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        assert done.wait(10), "no CONNACK"
    finally:
        c.disconnect()
        c.loop_stop()
    return got[0]


def test_compose_broker_takes_the_configured_user_only(broker: tuple[int, str, str]) -> None:
    port, user, password = broker
    assert not connect(port, user, password).is_failure
    assert connect(port, user, "wrong").is_failure
    assert connect(port, None, None).is_failure  # allow_anonymous false
