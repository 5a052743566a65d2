"""Benchmark of the MQTT path against a raw paho receive loop, in the same run.

Run: ``.venv/bin/python bench/bench_mqtt.py [--messages N] [--machines M] [--qos 0 1]
[--modes live backlog] [--broker-inflight K]``. Prints figures only; no assertions.

A real Mosquitto (Debian's, started like the tests' fixture on free ports) carries JSON
documents shaped like the simulator's json style (``simulators/mqtt/TOPICS.md``: 10 values
per message) on ``bench/L1/m<i>`` for M machines. A publisher in a child process (so that it
does not share this process' GIL) sends N pre-encoded messages as fast as paho lets it.

For each QoS and mode, two receivers take the same stream, one after the other:

(a) raw: what a user would otherwise write -- a paho client (``loop_start`` thread) whose
    ``on_message`` ``json.loads`` the payload and pulls out the same time and 10 values by
    hand-written subscripts into columns (Python lists: topic, time, values); paho
    acknowledges QoS 1 itself, on receipt. It stores nothing and validates nothing.
(b) tierproof: ``collector.mqtt.MqttCollector`` (json subscription, one tag per value) ->
    ``Writer`` -> ``SqliteStore`` in a temporary directory, driven as the supervisor drives it:
    at QoS 1 each batch is written durably and only then acknowledged (``stored()``); at QoS 0
    batches are submitted. Its time runs until the last batch is durably stored, and the store
    is read back at the end: it must hold every value of every message.

Modes:

* ``live``: the receiver is connected while the publisher sends; the rate is messages over the
  time from the first message received to the last one received (raw) or durably stored
  (tierproof). When a path keeps up, its rate is the publisher's ("offered"), and the ratio
  ~1 says only that.
* ``backlog``: the publisher sends while the receiver is away (a persistent session, QoS 0
  queued too via ``queue_qos0_messages``), then the receiver connects and drains the broker:
  the rate is N over connect-to-last -- the receive path's own ceiling, as after a gateway
  restart.

Each row also prints this process' CPU time (user + system, all threads) per message for both
paths.

``--broker-inflight`` sets Mosquitto's ``max_inflight_messages`` (QoS 1 messages sent to a
client and not yet acknowledged; Mosquitto's default is 20). Because tierproof acknowledges
only after storing, this window bounds its QoS 1 rate to about window / (batch latency).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt

from collector.mqtt import MqttCollector
from config.mqtt import MqttDevice
from store.base import TagRecord
from store.sqlite import SqliteStore
from store.writer import Writer
from tests.mosquitto import Mosquitto

TOPIC = "bench/{line}/{asset}"
FIELDS = {
    "state": "machine.state", "mode": "machine.mode", "channel_mode": "machine.channel_mode",
    "total_count": "counters.total", "good_count": "counters.good", "reject_count": "counters.reject",
    "energy_kwh": "energy.kwh", "power_kw": "energy.power_kw", "speed_rpm": "process.speed_rpm",
    "temperature_c": "process.temperature_c",
}
T0_MS = 1_764_000_000_000
TIMEOUT_S = 300.0


def machine(i: int) -> str:
    return f"m{i:04d}"


def payloads(n: int, machines: int) -> list[tuple[str, bytes]]:
    """Message k goes to machine k % M with ts T0 + k ms: distinct per tag, so none overwrites
    another in the store."""
    out = []
    for k in range(n):
        m, c = k % machines, k // machines
        doc = {
            "ts": T0_MS + k,
            "machine": {"state": 3, "mode": 3, "channel_mode": 0},
            "counters": {"total": c, "good": c - c // 50, "reject": c // 50},
            "energy": {"kwh": round(c * 0.0125, 4), "power_kw": 12.5 + (k % 7)},
            "process": {"speed_rpm": 1200.0 + (k % 13), "temperature_c": 35.0 + (k % 11) / 10},
        }
        out.append((f"bench/L1/{machine(m)}", json.dumps(doc, separators=(",", ":")).encode()))
    return out


# --------------------------------------------------------------------------- publisher


def publisher(host: str, port: int, machines: int, conn: Connection) -> None:
    """Child process. Messages: ("run", qos, n) -> publishes n messages, answers (n, seconds);
    anything else -> stop."""
    cache: dict[int, list[tuple[str, bytes]]] = {}
    while True:
        cmd = conn.recv()
        if not (isinstance(cmd, tuple) and cmd[0] == "run"):
            return
        _, qos, n = cmd
        msgs = cache.setdefault(n, payloads(n, machines))
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{time.time_ns()}")
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.connect(host, port, 60)
        client.loop_start()
        t0 = time.perf_counter()
        info = None
        for topic, payload in msgs:
            info = client.publish(topic, payload, qos=qos)
        assert info is not None
        info.wait_for_publish(TIMEOUT_S)
        seconds = time.perf_counter() - t0
        client.disconnect()
        client.loop_stop()
        conn.send((n, seconds))


class Publisher:
    def __init__(self, host: str, port: int, machines: int) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=publisher, args=(host, port, machines, child), daemon=True)

    def __enter__(self) -> Publisher:
        self.proc.start()
        return self

    def start(self, qos: int, n: int) -> None:
        self.conn.send(("run", qos, n))

    def result(self) -> float:
        """Messages per second the publisher managed (waits for it to finish)."""
        if not self.conn.poll(TIMEOUT_S):
            raise RuntimeError("the publisher did not finish")
        n, seconds = self.conn.recv()
        return float(n / seconds)

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.conn.send("stop")
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


# --------------------------------------------------------------------------- (a) raw


class RawReceiver:
    def __init__(self, host: str, port: int, qos: int, client_id: str) -> None:
        self.host, self.port, self.qos = host, port, qos
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=False)
        self.n = 0
        self.target = 0
        # the columns a user's own loop would build from the documents
        self.topics: list[str] = []
        self.ts: list[int] = []
        self.values: list[tuple[float, ...]] = []
        self.first = self.last = 0.0
        self.done = threading.Event()
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("bench/#", qos)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_message = self._on_message

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        doc = json.loads(msg.payload)
        m, k, e, p = doc["machine"], doc["counters"], doc["energy"], doc["process"]
        self.topics.append(msg.topic)
        self.ts.append(doc["ts"])
        self.values.append((m["state"], m["mode"], m["channel_mode"], k["total"], k["good"],
                            k["reject"], e["kwh"], e["power_kw"], p["speed_rpm"], p["temperature_c"]))
        self.n += 1
        if self.n == 1:
            self.first = time.perf_counter()
        if self.n >= self.target:
            self.last = time.perf_counter()
            self.done.set()

    def connect(self, target: int) -> float:
        self.target = target
        t0 = time.perf_counter()
        self.client.connect(self.host, self.port, 60)
        self.client.loop_start()
        if not self.subscribed.wait(30):
            raise RuntimeError("raw: no SUBACK")
        return t0

    def wait(self) -> None:
        if not self.done.wait(TIMEOUT_S):
            raise RuntimeError(f"raw: {self.n} of {self.target} messages within {TIMEOUT_S} s")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def raw_run(broker: Mosquitto, pub: Publisher, qos: int, n: int, mode: str,
            tag: str) -> tuple[float, float, float]:
    """(messages/s, offered messages/s, CPU s per message in this process)."""
    cid = f"bench-raw-{tag}"
    if mode == "backlog":
        setup = RawReceiver(broker.host, broker.port, qos, cid)
        setup.connect(1)
        setup.close()
        pub.start(qos, n)
        offered = pub.result()
        rx = RawReceiver(broker.host, broker.port, qos, cid)
        c0 = cpu_s()
        t0 = rx.connect(n)
        rx.wait()
        cpu = cpu_s() - c0
        rx.close()
        rate = n / (rx.last - t0)
    else:
        rx = RawReceiver(broker.host, broker.port, qos, cid)
        rx.connect(n)
        c0 = cpu_s()
        pub.start(qos, n)
        rx.wait()
        cpu = cpu_s() - c0
        offered = pub.result()
        rx.close()
        rate = (n - 1) / (rx.last - rx.first)
    if len(rx.values) != rx.n or rx.n < n:
        raise RuntimeError(f"raw: {len(rx.values)} documents decoded of {n}")
    return rate, offered, cpu / n


# --------------------------------------------------------------------------- (b) tierproof


def device(broker: Mosquitto, qos: int, machines: int, client_id: str) -> MqttDevice:
    tags = [
        {"asset": f"bench/area/L1/{machine(m)}", "name": name, "field": field,
         "type": "int" if field.startswith(("machine", "counters")) else "float"}
        for m in range(machines) for name, field in FIELDS.items()
    ]
    return MqttDevice.model_validate({
        "name": "bench", "protocol": "mqtt", "broker": broker.url, "client_id": client_id,
        "qos": qos, "clean_session": False,
        "subscriptions": [{"topic": "bench/+/+", "format": "json", "template": TOPIC,
                           "timestamp_field": "ts"}],
        "tags": tags,
    })


def register(store: SqliteStore, dev: MqttDevice) -> dict[str, int]:
    return store.register_tags([
        TagRecord(path=t.path, asset=t.asset, role=t.role.value, device=dev.name, protocol="mqtt")
        for t in dev.tags
    ])


async def collect(dev: MqttDevice, ids: dict[str, int], store: SqliteStore, n: int,
                  started: asyncio.Event | None = None) -> tuple[float, float, float, int]:
    """Collect until n messages are stored: (connect time, first message time, end time,
    points)."""
    writer = Writer(store, max_pending=64)
    t_connect = time.perf_counter()
    first = 0.0
    rows = 0

    def clock() -> int:
        # the collector reads its clock once per message: the first call marks the first
        # message received, as the raw receiver's does
        nonlocal first
        if not first:
            first = time.perf_counter()
        return time.time_ns()

    async with MqttCollector(dev, ids, clock=clock) as coll:
        if started is not None:
            started.set()
        async with asyncio.timeout(TIMEOUT_S):
            async for batch in coll.batches():
                if coll.acknowledges:
                    await writer.write(batch)
                    coll.stored(batch)
                else:
                    await writer.submit(batch)
                rows += len(batch)
                # every value of every message yielded (messages received are not all in a
                # yielded batch yet)
                if rows >= n * len(FIELDS):
                    break
        await writer.flush()
        end = time.perf_counter()
        dropped = dict(coll.dropped)
    await writer.close()
    if dropped:
        raise RuntimeError(f"tierproof dropped messages: {dropped}")
    if writer.stats.batches_failed:
        raise RuntimeError(f"store writes failed: {writer.stats.last_error}")
    return t_connect, first, end, writer.stats.points_written


def stored_points(store: SqliteStore, ids: dict[str, int]) -> int:
    series = store.read_many(list(ids.values()), 0, 2**62, prior=False)
    return sum(len(s) for s in series.values())


async def tierproof_run(broker: Mosquitto, pub: Publisher, qos: int, n: int, mode: str, machines: int,
                        tag: str) -> tuple[float, float, float]:
    """(messages/s, offered messages/s, CPU s per message in this process)."""
    cid = f"bench-tp-{tag}"
    dev = device(broker, qos, machines, cid)
    with tempfile.TemporaryDirectory(prefix="tierproof-bench-mqtt-") as tmp:
        store = SqliteStore(Path(tmp) / "bench.db")
        try:
            ids = register(store, dev)
            if mode == "backlog":
                async with MqttCollector(dev, ids):
                    pass  # the persistent session and its subscription
                pub.start(qos, n)
                offered = await asyncio.to_thread(pub.result)
                c0 = cpu_s()
                t0, _, t1, points = await collect(dev, ids, store, n)
                rate = n / (t1 - t0)
            else:
                started = asyncio.Event()
                task = asyncio.create_task(collect(dev, ids, store, n, started))
                await started.wait()
                c0 = cpu_s()
                pub.start(qos, n)
                _, first, t1, points = await task
                offered = await asyncio.to_thread(pub.result)
                rate = (n - 1) / (t1 - first)
            cpu = cpu_s() - c0
            have = stored_points(store, ids)
            if have != n * len(FIELDS) or points != have:
                raise RuntimeError(f"tierproof stored {have} points (writer: {points}), expected "
                                   f"{n * len(FIELDS)}")
        finally:
            store.close()
    return rate, offered, cpu / n


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--messages", type=int, default=50_000, help="messages per measurement")
    ap.add_argument("--machines", type=int, default=500, help="topics (machines), 10 tags each")
    ap.add_argument("--qos", type=int, nargs="+", default=[0, 1], choices=[0, 1])
    ap.add_argument("--modes", nargs="+", default=["live", "backlog"], choices=["live", "backlog"])
    ap.add_argument("--broker-inflight", type=int, default=20,
                    help="Mosquitto max_inflight_messages (its default: 20)")
    args = ap.parse_args()
    n, machines = args.messages, args.machines

    extra = (f"max_inflight_messages {args.broker_inflight}\nqueue_qos0_messages true\n"
             f"max_queued_messages {2 * n}\nmax_queued_bytes 0\n")
    print(f"MQTT: {n:,} JSON messages ({len(FIELDS)} values each) over {machines} topics per "
          f"measurement; Mosquitto max_inflight_messages {args.broker_inflight}")
    print(f"{'mode':8} {'qos':>3} {'offered msg/s':>14} {'raw msg/s':>11} {'tierproof msg/s':>16} "
          f"{'points/s':>10} {'ratio':>6} {'CPU/msg raw':>12} {'tierproof':>10}")
    with Mosquitto(extra_config=extra) as broker, Publisher(broker.host, broker.port, machines) as pub:
        for mode in args.modes:
            for qos in args.qos:
                tag = f"{mode}-q{qos}"
                raw, offered_a, cpu_raw = raw_run(broker, pub, qos, n, mode, tag)
                tp, offered_b, cpu = asyncio.run(tierproof_run(broker, pub, qos, n, mode, machines, tag))
                offered = (offered_a + offered_b) / 2
                print(f"{mode:8} {qos:>3} {offered:>14,.0f} {raw:>11,.0f} {tp:>16,.0f} "
                      f"{tp * len(FIELDS):>10,.0f} {tp / raw:>6.2f} {cpu_raw * 1e6:>9.1f} us "
                      f"{cpu * 1e6:>7.1f} us", flush=True)
    print("ratio = tierproof / raw; offered = the publisher's own rate (one paho client, one "
          "process); CPU/msg = this process' user + system CPU (all threads) per message")


if __name__ == "__main__":
    main()
