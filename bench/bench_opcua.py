"""Benchmark of the OPC UA subscription path against a raw asyncua subscription, in the same run.

Run: ``.venv/bin/python bench/bench_opcua.py [--seconds N] [--variables V] [--interval-ms I]
[--servers K]``. Prints figures only; no assertions.

The simulator's OPC UA server (:func:`simulators.opcua.serve_opcua`: the demo plant's
OPC UA machine plus ``bulk/<i>`` Double variables that all change every I ms) runs in K child
processes (V/K variables each, one OPC UA device each), each with its own event loop, as
machines are other computers (and so that serving does not take the measured process' GIL).
The nominal offered load is V / I changes per second. A simulator tick runs every I ms and
writes its variables, and asyncua's server spends ~55 us per written value (mostly a deepcopy
in MonitoredItemValues.set_current_datavalue), so one process offers at most ~14,000
changes/s: the rate the servers really wrote during each window is measured and printed as
"offered". Then, for N seconds each:

(a) raw: per server one asyncua ``Client`` with the subscriptions the collector makes (chunks
    of ``max_items_per_subscription`` monitored items, same publishing / sampling interval,
    queue size 1), all with one handler that only counts data-change notifications.
(b) tierproof: per server one ``OpcUaCollector`` (subscribe mode), all into one ``Writer`` ->
    ``SqliteStore`` in a temporary directory; its points are those of the batches the
    collectors yielded, and its time runs until the writer has flushed them, so a point counts
    once it is durably stored. At the end the store is read back and must hold every point
    written.

Both run in alternating rounds (connect, subscribe, warm up, measure, disconnect), so that
load from elsewhere on a shared machine hits both alike; subscribing and the initial-value
notifications are outside the measured windows, which open and close right after data
arrived (once per publishing interval, as the collector drains). The CPU time of this
process in the windows gives each path's cost per point, and so its ceiling per core, even
when the servers are the bottleneck.

Goals: (b) >= 20,000 notifications/s and (b)/(a) >= 0.8 with 5,000 variables at 100 ms; the
gateway's RSS (VmRSS of this process while (b) holds its subscriptions) is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asyncua import Client, ua

from collector.opcua import OpcUaCollector
from config import load_settings, shipped_config
from config.opcua import OpcUaDevice, OpcUaTag
from simulators import Plant
from simulators.opcua import serve_opcua
from store.base import TagRecord
from store.batch import Batch
from store.sqlite import SqliteStore
from store.writer import Writer

ASSET = "demo/assembly/line3/assembler-01"  # the demo plant's OPC UA machine
SETUP_TIMEOUT_S = 120.0  # starting the server, or connecting and subscribing one round


def serve(variables: int, interval_s: float, conn: Connection) -> None:
    """Child process: serve the plant plus ``variables`` bulk variables until told to stop.

    Messages: "tick" -> (server ticks so far, time.monotonic()); anything else -> stop.
    """
    logging.basicConfig(level=logging.WARNING)

    async def run() -> None:
        plant = Plant(load_settings(shipped_config("demo.yaml")))
        async with serve_opcua(plant, [ASSET], extra_variables=variables, interval_s=interval_s,
                               security=[ua.SecurityPolicyType.NoSecurity]) as server:
            conn.send((server.endpoint, server.namespace_index))
            loop = asyncio.get_running_loop()
            while True:
                msg = await loop.run_in_executor(None, conn.recv)
                if msg != "tick":
                    break
                # read from the loop's thread: a consistent tick count
                conn.send((server._tick, time.monotonic()))

    asyncio.run(run())


class ServerProcess:
    """The simulator in a child process; always stopped (or killed) on leaving."""

    def __init__(self, variables: int, interval_s: float) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve, args=(variables, interval_s, child), daemon=True)

    def __enter__(self) -> tuple[str, int]:
        self.proc.start()
        if not self.conn.poll(SETUP_TIMEOUT_S):
            self._kill()
            raise RuntimeError(f"the OPC UA server did not start within {SETUP_TIMEOUT_S:.0f} s")
        endpoint, ns = self.conn.recv()
        return endpoint, ns

    def tick(self) -> tuple[int, float]:
        self.conn.send("tick")
        if not self.conn.poll(10):
            raise RuntimeError("the OPC UA server does not answer")
        ticks, t = self.conn.recv()
        return int(ticks), float(t)

    def _kill(self) -> None:
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.conn.send("stop")
        self.proc.join(15)
        self._kill()


class Servers:
    """The simulator servers (one per process); ``offered()`` counts the changes they made."""

    def __init__(self, variables: list[int], interval_s: float) -> None:
        self.variables = variables
        self.procs = [ServerProcess(v, interval_s) for v in variables]

    def __enter__(self) -> list[tuple[str, int]]:
        with contextlib.ExitStack() as stack:
            out = [stack.enter_context(p) for p in self.procs]
            self._stack = stack.pop_all()
        return out

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def offered(self) -> tuple[int, float]:
        """(bulk values written so far by all servers, time.monotonic())."""
        total = sum(p.tick()[0] * v for p, v in zip(self.procs, self.variables, strict=True))
        return total, time.monotonic()


def rss_kib() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in KiB."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(rest.split()[0])
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


class Window:
    """Measured windows: notifications counted, seconds, values the servers wrote meanwhile."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.offered_values = 0
        self.offered_seconds = 0.0
        self.cpu = 0.0  # CPU seconds of this process (all threads) in the windows

    def add(self, count: int, seconds: float, tick0: tuple[int, float], tick1: tuple[int, float],
            cpu: float) -> None:
        self.count += count
        self.seconds += seconds
        self.cpu += cpu
        self.offered_values += tick1[0] - tick0[0]
        self.offered_seconds += tick1[1] - tick0[1]

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def offered(self) -> float:
        return self.offered_values / self.offered_seconds if self.offered_seconds else 0.0

    def cpu_text(self) -> str:
        if not self.count or not self.cpu:
            return "no CPU figure"
        return (f"client CPU {self.cpu / self.seconds:.0%} of a core, "
                f"{self.cpu / self.count * 1e6:.1f} us/point -> "
                f"~{self.count / self.cpu:,.0f}/s per core")


def cpu_s() -> float:
    """CPU seconds (user + system) of this process, all threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _CountingHandler:
    def __init__(self) -> None:
        self.n = 0

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.n += 1


def subscription_params(client: Client, device: OpcUaDevice) -> ua.CreateSubscriptionParameters:
    """The subscription parameters the collector uses."""
    params = ua.CreateSubscriptionParameters()
    params.RequestedPublishingInterval = device.publishing_ms
    params.RequestedLifetimeCount = 10000
    params.RequestedMaxKeepAliveCount = client.get_keepalive_count(device.publishing_ms)
    params.MaxNotificationsPerPublish = 0
    params.PublishingEnabled = True
    params.Priority = 0
    return params


def item_requests(nodes: list[ua.NodeId], device: OpcUaDevice) -> list[ua.MonitoredItemCreateRequest]:
    """The monitored items the collector creates (client handles 1..n)."""
    out = []
    for k, node in enumerate(nodes, start=1):
        rv = ua.ReadValueId()
        rv.NodeId = node
        rv.AttributeId = ua.AttributeIds.Value
        p = ua.MonitoringParameters()
        p.ClientHandle = k
        p.SamplingInterval = device.sampling_ms
        p.QueueSize = device.queue_size
        p.DiscardOldest = True
        mir = ua.MonitoredItemCreateRequest()
        mir.ItemToMonitor = rv
        mir.MonitoringMode = ua.MonitoringMode.Reporting
        mir.RequestedParameters = p
        out.append(mir)
    return out


async def raw_round(devices: list[OpcUaDevice], servers: Servers, seconds: float, warmup: float,
                    window: Window) -> None:
    """One client per server, all counting into one handler."""
    handler = _CountingHandler()
    device = devices[0]
    clients: list[Client] = []
    try:
        async with asyncio.timeout(SETUP_TIMEOUT_S):
            n_items = 0
            for dev in devices:
                client = Client(dev.endpoint, timeout=dev.timeout_s)
                await client.connect()
                clients.append(client)
                nodes = [ua.NodeId.from_string(t.node_id) for t in dev.tags]
                size = dev.max_items_per_subscription
                for start in range(0, len(nodes), size):
                    sub = await client.create_subscription(subscription_params(client, dev),
                                                           handler)
                    results = await sub.create_monitored_items(
                        item_requests(nodes[start:start + size], dev))
                    bad = [r for r in results if isinstance(r, ua.StatusCode)]
                    if bad:
                        raise RuntimeError(f"raw: {len(bad)} monitored items refused: {bad[0]}")
                n_items += len(nodes)
            # the initial values of every item
            while handler.n < n_items:
                await asyncio.sleep(0.01)
        # Looked at once per publishing interval, as the collector drains its rows: the window
        # opens and closes right after data arrived, as (b)'s does at a yielded batch.
        interval = device.publishing_ms / 1000.0
        warm_from = time.perf_counter()
        t0 = deadline = c0 = 0.0
        tick0 = (0, 0.0)
        n0 = last = handler.n
        while True:
            await asyncio.sleep(interval)
            n = handler.n
            if n == last:
                continue
            last = n
            now = time.perf_counter()
            if not deadline:
                if now - warm_from >= warmup:
                    n0, t0, c0 = n, now, cpu_s()
                    deadline = now + seconds
                    # off the event loop: a busy server may take a while to answer
                    tick0 = await asyncio.to_thread(servers.offered)
                continue
            if now >= deadline:
                break
        t1, c1 = now, cpu_s()
        tick1 = await asyncio.to_thread(servers.offered)
        window.add(last - n0, t1 - t0, tick0, tick1, c1 - c0)
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 10)


class TierproofPath:
    """Collectors (one per server) -> one Writer -> SqliteStore, in rounds sharing one store."""

    def __init__(self, devices: list[OpcUaDevice], db: Path) -> None:
        self.devices = devices
        self.store = SqliteStore(db)
        self.ids: dict[str, int] = {}
        for device in devices:
            self.ids |= self.store.register_tags([
                TagRecord(path=t.path, asset=t.asset, role=t.role.value, device=device.name,
                          protocol="opcua")
                for t in device.tags
            ])
        self.window = Window()
        self.received = 0  # notifications the collectors got in the windows
        self.points_written = 0  # by the writer, all rounds, warm-up included
        self.batches = 0
        self.rss_kib = 0

    async def round(self, servers: Servers, seconds: float, warmup: float) -> None:
        """Collect for ``seconds`` after ``warmup``; the window ends once the writer flushed."""
        writer = Writer(self.store, max_pending=64)
        n_tags = sum(len(d.tags) for d in self.devices)
        queue: asyncio.Queue[Batch] = asyncio.Queue()

        async def pump(collector: OpcUaCollector) -> None:
            gen = collector.batches()
            try:
                async for batch in gen:
                    queue.put_nowait(batch)
            finally:
                await gen.aclose()  # type: ignore[attr-defined]

        async with contextlib.AsyncExitStack() as stack:
            collectors = []
            async with asyncio.timeout(SETUP_TIMEOUT_S):
                for device in self.devices:
                    collectors.append(await stack.enter_async_context(
                        OpcUaCollector(device, self.ids)))
            pumps = [asyncio.create_task(pump(c)) for c in collectors]
            try:
                loop = asyncio.get_running_loop()
                setup_deadline = loop.time() + SETUP_TIMEOUT_S
                warm_from: float | None = None
                t0 = deadline = c0 = 0.0
                tick0 = (0, 0.0)
                n0 = counted = 0
                while True:
                    get = asyncio.ensure_future(queue.get())
                    done, _ = await asyncio.wait([get, *pumps], return_when=asyncio.FIRST_COMPLETED)
                    if get not in done:  # a collector stopped: its error ends the run
                        get.cancel()
                        for p in done:
                            p.result()
                        raise RuntimeError("tierproof: a collector stopped")
                    batch = get.result()
                    await writer.submit(batch)
                    now = time.perf_counter()
                    notified = sum(c.stats.notifications for c in collectors)
                    if not deadline:
                        if loop.time() > setup_deadline:
                            raise RuntimeError("tierproof: no steady state within the setup time")
                        if warm_from is None:
                            if notified >= n_tags:  # initial values in
                                warm_from = now
                        elif now - warm_from >= warmup:
                            t0, deadline, c0 = now, now + seconds, cpu_s()
                            n0 = notified
                            tick0 = await asyncio.to_thread(servers.offered)
                        continue
                    counted += len(batch)
                    self.batches += 1
                    if now >= deadline:
                        break
                received = notified - n0
                self.rss_kib = max(self.rss_kib, rss_kib()[0])  # still subscribed
            finally:
                for p in pumps:
                    p.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
            await writer.close()
            t1, c1 = time.perf_counter(), cpu_s()
            tick1 = await asyncio.to_thread(servers.offered)
        self.window.add(counted, t1 - t0, tick0, tick1, c1 - c0)
        self.received += received
        self.points_written += writer.stats.points_written
        if writer.stats.batches_failed:
            raise RuntimeError(f"store writes failed: {writer.stats.last_error}")

    def stored_points(self) -> int:
        series = self.store.read_many(list(self.ids.values()), 0, 2**62, prior=False)
        return sum(len(s) for s in series.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0,
                    help="measured time of each path (split into rounds of about 5 s)")
    ap.add_argument("--variables", type=int, default=5000, help="bulk variables subscribed")
    ap.add_argument("--interval-ms", type=float, default=100.0,
                    help="server update = publishing = sampling interval")
    ap.add_argument("--servers", type=int, default=1,
                    help="simulator processes sharing the variables (one OPC UA device each)")
    ap.add_argument("--warmup", type=float, default=1.0,
                    help="seconds after the initial values before each window opens")
    args = ap.parse_args()
    if not 1 <= args.servers <= args.variables:
        ap.error("--servers must be between 1 and --variables")
    logging.basicConfig(level=logging.WARNING)

    rss_start = rss_kib()[0]
    offered_nominal = args.variables / (args.interval_ms / 1000.0)
    t_start = time.perf_counter()
    k = args.servers
    shares = [args.variables // k + (1 if j < args.variables % k else 0) for j in range(k)]
    servers = Servers(shares, args.interval_ms / 1000.0)
    with servers as started:
        print(f"servers: {k} process(es), {args.variables:,} bulk variables in all "
              f"({', '.join(f'{v:,}' for v in shares)}), changing every {args.interval_ms:g} ms "
              f"(started in {time.perf_counter() - t_start:.1f} s)")
        devices = []
        for j, ((endpoint, ns), n) in enumerate(zip(started, shares, strict=True)):
            tags = [OpcUaTag(name=f"v{i}", asset=f"bench/a/l/opcua{j}",
                             node_id=f"ns={ns};s=bulk/{i}") for i in range(n)]
            devices.append(OpcUaDevice(
                protocol="opcua", name=f"bench{j}", endpoint=endpoint, mode="subscribe",
                publishing_interval_ms=args.interval_ms, timeout_s=10.0, tags=tags))
        d = devices[0]
        n_subs = sum(-(-len(dev.tags) // dev.max_items_per_subscription) for dev in devices)
        print(f"subscriptions: {n_subs} of <= {d.max_items_per_subscription} items, publishing "
              f"{d.publishing_ms:g} ms, sampling {d.sampling_ms:g} ms, queue size "
              f"{d.queue_size}")

        rounds = max(1, round(args.seconds / 5))
        per_round = args.seconds / rounds
        raw = Window()
        with tempfile.TemporaryDirectory(prefix="tierproof-bench-") as tmp:
            tp = TierproofPath(devices, Path(tmp) / "bench.db")
            # every round is bounded: a server that stops sending cannot hang the run
            limit = 2 * SETUP_TIMEOUT_S + args.warmup + per_round
            for _ in range(rounds):
                asyncio.run(asyncio.wait_for(
                    raw_round(devices, servers, per_round, args.warmup, raw), limit))
                asyncio.run(asyncio.wait_for(tp.round(servers, per_round, args.warmup), limit))
            t_read = time.perf_counter()
            stored = tp.stored_points()
            read_s = time.perf_counter() - t_read
            tp.store.close()
        rss_end, hwm = rss_kib()

    tpw = tp.window
    print(f"offered (nominal): {offered_nominal:10,.0f} changes/s ({args.variables:,} / "
          f"{args.interval_ms:g} ms)")
    print(f"(a) raw asyncua subscription : {raw.rate:10,.0f} notifications/s "
          f"({raw.count:,} in {raw.seconds:.2f} s; servers offered {raw.offered:,.0f}/s; "
          f"received/offered {raw.rate / raw.offered:.2f})")
    print(f"(b) collector->writer->sqlite: {tpw.rate:10,.0f} points/s stored "
          f"({tpw.count:,} in {tpw.seconds:.2f} s incl. flush, {tp.batches:,} batches; "
          f"{tp.received:,} notifications received; servers offered {tpw.offered:,.0f}/s; "
          f"stored/offered {tpw.rate / tpw.offered:.2f})")
    print(f"    (a) {raw.cpu_text()}")
    print(f"    (b) {tpw.cpu_text()}")
    print(f"ratio (b)/(a): {tpw.rate / raw.rate:.2f}  (goal >= 0.80; goal (b) >= 20,000/s; "
          f"{rounds} alternating rounds of {per_round:.1f} s)")
    print(f"store: {stored:,} points read back of {tp.points_written:,} written "
          f"(warm-up included; {'all there' if stored == tp.points_written else 'MISMATCH'}), "
          f"read in {read_s:.2f} s")
    print(f"gateway RSS: {tp.rss_kib / 1024:,.0f} MiB while (b) holds {args.variables:,} "
          f"subscribed variables (at start {rss_start / 1024:,.0f} MiB, at end "
          f"{rss_end / 1024:,.0f} MiB, peak {hwm / 1024:,.0f} MiB; the raw client runs in "
          f"the same process)")
    print(f"total run time {time.perf_counter() - t_start:.1f} s")


if __name__ == "__main__":
    main()
