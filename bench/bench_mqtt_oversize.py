"""What one huge MQTT message costs the gateway (issue 13 item 8): peak memory and what is stored.

Run: ``.venv/bin/python bench/bench_mqtt_oversize.py [--mb 100] [--unlimited]``. Prints figures
only; no assertions.

A real Mosquitto (the tests' fixture, free ports) carries one ``--mb`` MB plain payload to a
``string`` tag, then a small one (both sent by a paho client in a child process), to a
supervisor writing to a SqliteStore in a temporary directory. Printed: this process' peak RSS
(VmHWM) before the message and after both are handled, the collector's ``dropped`` counters
and the lengths of the stored texts (the 100 MB text is what ``/latest`` returned before the
small one). ``--unlimited`` sets ``max_payload_bytes`` and ``max_text_bytes`` to MQTT's
maximum (256 MB): the behaviour before the limits existed.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector import Supervisor
from config.mqtt import MQTT_MAX_PACKET, MqttDevice
from store.sqlite import SqliteStore
from store.writer import Writer
from tests.helpers import FAST, health, register, wait_until
from tests.mosquitto import Mosquitto

ASSET = "plant/area/L1/M1"
PUBLISH = """
import sys
import paho.mqtt.client as mqtt
host, port, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub")
c.connect(host, port)
c.loop_start()
for p in (b"x" * (mb * 1_000_000), b"small"):
    c.publish("tp/L1/M1/note", p, qos=1).wait_for_publish(120)
c.disconnect()
c.loop_stop()
"""


def hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run(mb: int, unlimited: bool) -> None:
    broker = Mosquitto()
    broker.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            limits = ({"max_payload_bytes": MQTT_MAX_PACKET, "max_text_bytes": MQTT_MAX_PACKET}
                      if unlimited else {})
            dev = MqttDevice.model_validate({
                "name": "mq", "protocol": "mqtt", "broker": broker.url, "backoff": FAST.model_dump(),
                "subscriptions": [{"topic": "tp/+/+/+", "template": "tp/{line}/{asset}/{signal}"}],
                "tags": [{"asset": ASSET, "name": "note", "type": "string", "role": "status"}],
                **limits,
            })
            store = SqliteStore(Path(tmp) / "t.db")
            ids = register(store, dev)
            writer = Writer(store)
            before = hwm_mb()
            async with Supervisor([dev], store, writer, ids) as sup:
                await wait_until(lambda: health(sup).state == "connected", what="connected")
                # the publisher is another process: this process' RSS is the gateway's alone
                await asyncio.to_thread(subprocess.run, [sys.executable, "-c", PUBLISH, broker.host,
                                                         str(broker.port), str(mb)], check=True, timeout=300)
                handled = lambda: health(sup).samples_delivered + sum(health(sup).dropped.values())  # noqa: E731
                await wait_until(lambda: handled() >= 2, 120, what="both messages handled")
                h = health(sup)
            await writer.close()
            latest = store.latest([ids[f"{ASSET}/note"]])[ids[f"{ASSET}/note"]]
            texts = store.read_text(ids[f"{ASSET}/note"], 0, 2**62)
            store.close()
    finally:
        broker.close()
    print(f"payload {mb} MB, limits {'unlimited' if unlimited else 'default'}: peak RSS {before:.0f} MB "
          f"before -> {hwm_mb():.0f} MB after; dropped {h.dropped}; stored texts "
          f"{[len(t) for _, t, _ in texts]}; latest text {len(latest.text or ''):,} characters")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--unlimited", action="store_true")
    args = ap.parse_args()
    asyncio.run(run(args.mb, args.unlimited))


if __name__ == "__main__":
    main()
