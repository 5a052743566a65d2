"""The OPC UA collector against the plant simulator over real sockets: a server restart in
the middle of a subscription, and a 5,000-variable subscription that must see every change."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime

import numpy as np
import pytest
from asyncua import ua

from collector import OpcUaCollector, Supervisor
from config.base import DeviceBase
from simulators import Plant, datetime_ns
from simulators.opcua import OPCUA_SIGNALS, serve_opcua
from store.batch import Batch
from store.sqlite import SqliteStore
from store.writer import Writer
from tests.collector.opcua_helpers import odevice, otag
from tests.helpers import FAST, TickingClock, health, register, wait_until

NOW = datetime(2026, 11, 20, 10, 17, 3, 123456, tzinfo=UTC)
ASSET = "demo/machining/line1/mill-02"
STEP_NS = 10 * 1_000_000_000  # simulated time per simulator tick (a multiple of 1 µs)
OPEN = [ua.SecurityPolicyType.NoSecurity]
END = 2**62


class TeeCollector(OpcUaCollector):
    """An OpcUaCollector that also keeps every batch it hands to the supervisor."""

    def __init__(self, device: DeviceBase, tag_ids: Mapping[str, int], sink: list[Batch]) -> None:
        super().__init__(device, tag_ids)
        self._sink = sink

    async def batches(self) -> AsyncIterator[Batch]:
        async for b in super().batches():
            self._sink.append(b)
            yield b


def tag_name(key: str) -> str:
    """A tag name for a simulator key ("<asset>/<signal>" or "bulk/<i>")."""
    return key.removeprefix(f"{ASSET}/").replace("/", ".")


def newest(store: SqliteStore, tag_id: int) -> int:
    s = store.read(tag_id, 0, END, prior=False)
    return int(s.ts_ns[-1]) if len(s.ts_ns) else -1


def newer_than(store: SqliteStore, tag_id: int) -> Callable[[], bool]:
    """A condition: the store holds a sample of tag_id newer than its newest one now."""
    before = newest(store, tag_id)
    return lambda: newest(store, tag_id) > before


# --------------------------------------------------------------------------- restart


async def test_server_restart_mid_subscription(sqlite_store: SqliteStore, plant: Plant) -> None:
    clock = TickingClock(datetime_ns(NOW), STEP_NS)
    async with serve_opcua(plant, [ASSET], interval_s=0.05, clock=clock, security=OPEN,
                           extra_variables=3) as sim:
        # bulk/2 goes bad before anyone subscribes: its one (Bad) sample never changes, so
        # the re-created subscription's initial value re-sends it with the same timestamp
        await sim.set_bad("bulk/2")
        keys = [f"{ASSET}/{sig}" for sig in OPCUA_SIGNALS] + [f"bulk/{i}" for i in range(3)]
        tags = [otag(tag_name(k), sim.node_ids[k], asset=ASSET) for k in keys]
        dev = odevice(sim.endpoint, tags, backoff=FAST)
        ids = register(sqlite_store, dev)
        path = {k: t.path for k, t in zip(keys, dev.tags, strict=True)}
        live = ids[path["bulk/0"]]
        sink: list[Batch] = []

        def factory(device: DeviceBase, tag_ids: Mapping[str, int]) -> TeeCollector:
            return TeeCollector(device, tag_ids, sink)

        writer = Writer(sqlite_store)
        async with Supervisor([dev], sqlite_store, writer, ids,
                              factories={"opcua": factory}) as sup:
            await wait_until(lambda: newest(sqlite_store, live) > 0, what="first stored samples")
            for _ in range(3):  # a few changes through the first subscription
                await wait_until(newer_than(sqlite_store, live), what="a change before the outage")
            assert health(sup).state == "connected"

            await sim.stop()
            await wait_until(lambda: health(sup).gap_open_since is not None
                             and health(sup).state in ("backoff", "connecting"),
                             what="backoff with a gap open")
            stopped_at = clock.t
            await asyncio.sleep(0.3)  # the simulation goes on while the network is down
            await sim.start()
            await wait_until(lambda: health(sup).gap_open_since is None, what="the gap closed")
            await wait_until(lambda: newest(sqlite_store, live) > stopped_at,
                             what="samples after the restart")
            for _ in range(3):  # and the new subscription keeps delivering changes
                await wait_until(newer_than(sqlite_store, live), what="a change after the restart")
            h = health(sup)
            assert h.state == "connected" and h.reconnects >= 1
            await writer.flush()

        gaps = sqlite_store.gaps(dev.name, 0, END)
        assert len(gaps) == 1 and gaps[0].end_ns is not None
        # the gap covers the outage: unchanged values re-sent with their old source times by
        # the new subscription must not close it at its own start
        assert gaps[0].end_ns > gaps[0].start_ns

        # the re-created subscription did re-send an already delivered sample ...
        bad = ids[path["bulk/2"]]
        resent = sum(int(np.count_nonzero(b.tag_id == bad)) for b in sink)
        assert resent >= 2
        # ... and what the store reads back (what KPIs see) holds it once
        s = sqlite_store.read(bad, 0, END, prior=False)
        assert len(s.ts_ns) == 1 and s.quality[0] >= 2  # Quality.BAD

        truth_checked = 0
        for key, t in zip(keys, dev.tags, strict=True):
            s = sqlite_store.read(ids[t.path], 0, END, prior=False)
            ts, value = s.ts_ns.tolist(), s.value.tolist()
            assert len(ts) >= 1, key
            assert all(a < b for a, b in itertools.pairwise(ts)), f"{key}: {ts}"
            pairs = list(zip(ts, value, strict=True))
            assert len(set(pairs)) == len(pairs), key
            if key in ("bulk/0", "bulk/1"):
                # every tick changes them: values rise with time, before and after the outage
                assert all(a < b for a, b in itertools.pairwise(value)), key
                assert ts[0] < stopped_at < ts[-1], key
            elif key != "bulk/2":
                # each stored value is the plant's value at its source timestamp
                signal = key.removeprefix(f"{ASSET}/")
                spec_attr = {
                    "MachineryItemState/CurrentState": "state",
                    "MachineryOperationMode/CurrentState": "mode",
                    "ChannelMode": "channel_mode", "StopReason": "stop_reason",
                    "TotalCount": "total", "GoodCount": "good",
                    "RejectCount": "reject", "EnergyKwh": "energy_kwh", "PowerKw": "power_kw",
                    "SpeedRpm": "speed_rpm", "TemperatureC": "temperature_c",
                }[signal]
                for when, v in pairs:
                    raw = getattr(plant.values_at(when)[ASSET], spec_attr)
                    expected = float(raw % 2**32 if signal.endswith("Count") else raw)
                    assert v == expected, (key, when, v, expected)
                    truth_checked += 1
        assert truth_checked >= len(OPCUA_SIGNALS)


# --------------------------------------------------------------------------- 5,000 items


N_BULK = 5000
TICKS = 4


# serial: under the load of other xdist workers a change was never delivered (seen once,
# 180 s wait): the subscription is asked to keep up with 5,000 tags, which needs the cores
@pytest.mark.serial
async def test_5000_variable_subscription_delivers_every_change(plant: Plant) -> None:
    clock = TickingClock(datetime_ns(NOW), STEP_NS)
    async with serve_opcua(plant, [ASSET], interval_s=0.5, clock=clock, security=OPEN,
                           extra_variables=N_BULK) as sim:
        tags = [otag(tag_name(f"bulk/{i}"), sim.node_ids[f"bulk/{i}"]) for i in range(N_BULK)]
        dev = odevice(sim.endpoint, tags, publishing_interval_ms=100, timeout_s=10.0)
        assert dev.max_items_per_subscription == 1000
        ids = {t.path: 1 + i for i, t in enumerate(dev.tags)}
        # tag index -> {source ts: value}
        seen: list[dict[int, float]] = [{} for _ in range(N_BULK)]
        rows = 0

        collector = OpcUaCollector(dev, ids)
        async with collector:

            async def collect() -> None:
                nonlocal rows
                async for b in collector.batches():
                    rows += len(b)
                    for tid, ts, v, q in zip(b.tag_id.tolist(), b.ts_ns.tolist(),
                                             b.value.tolist(), b.quality.tolist(), strict=True):
                        assert q == 0, (tid, q)  # Quality.GOOD
                        prev = seen[tid - 1].setdefault(ts, v)
                        assert prev == v, (tid, ts, prev, v)

            task = asyncio.create_task(collect())
            try:
                # deadlines (180 s here and below), not timing assertions: 5,000 subscribed tags
                # on cores shared with other xdist workers took over the former 60 s under load
                await wait_until(lambda: all(seen), timeout=180, what="initial values of all tags")
                assert len(collector._subs) == N_BULK // 1000
                # the window: the refreshes after every tag has its initial value
                assert sim.last_refresh_ns is not None
                start = sim.last_refresh_ns
                await wait_until(lambda: sum(t > start for t in clock.calls) >= TICKS,
                                 timeout=180, what=f"{TICKS} simulator ticks")
                window = [t for t in clock.calls if t > start][:TICKS]
                end = window[-1]
                await wait_until(lambda: all(end in d for d in seen), timeout=180,
                                 what="the last change of the window at every tag")
                assert not task.done()
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    # every tag received every value the server wrote in the window, each once per tick
    missing = {i: sorted(set(window) - set(d)) for i, d in enumerate(seen) if set(window) - set(d)}
    assert not missing, f"{len(missing)} tags missed changes, e.g. {list(missing.items())[:3]}"
    for i, d in enumerate(seen):
        vals = [d[t] for t in window]
        assert len(set(vals)) == TICKS, (i, vals)
        assert all(a < b for a, b in itertools.pairwise(vals)), (i, vals)
    # within a tick every tag shows the same tick number (value = tick + i/1000)
    for t in window:
        ticks = {round(seen[i][t] - i * 1e-3, 6) for i in range(N_BULK)}
        assert len(ticks) == 1, (t, sorted(ticks)[:5])
    assert rows >= N_BULK * (TICKS + 1)


# --------------------------------------------------------------------------- one publish, one batch


async def test_each_publish_becomes_one_batch(plant: Plant) -> None:
    """The changes of one publish response reach the writer as one batch, none left behind
    for a later one: the simulator writes all its bulk values in one tick (no await between
    them yields to the server's publish loop), so every batch after the initial values holds
    whole ticks -- each of its source timestamps on all n tags."""
    n = 300
    clock = TickingClock(datetime_ns(NOW), STEP_NS)
    async with serve_opcua(plant, [ASSET], interval_s=0.3, clock=clock, security=OPEN,
                           extra_variables=n) as sim:
        tags = [otag(tag_name(f"bulk/{i}"), sim.node_ids[f"bulk/{i}"]) for i in range(n)]
        dev = odevice(sim.endpoint, tags, publishing_interval_ms=100, timeout_s=10.0)
        collector = OpcUaCollector(dev, {t.path: 1 + i for i, t in enumerate(dev.tags)})
        batches: list[Batch] = []
        async with collector:

            async def collect() -> None:
                async for b in collector.batches():
                    batches.append(b)

            task = asyncio.create_task(collect())
            try:
                await wait_until(lambda: sum(len(b) for b in batches) >= n, timeout=60,
                                 what="the initial values")
                first = len(batches)
                await wait_until(lambda: len(batches) >= first + 3, timeout=60,
                                 what="three batches of changes")
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    for b in batches[first:first + 3]:
        ts, counts = np.unique(b.ts_ns, return_counts=True)
        assert counts.tolist() == [n] * len(ts), (len(b), ts.tolist(), counts.tolist())
        for t in ts.tolist():
            assert sorted(b.tag_id[b.ts_ns == t].tolist()) == list(range(1, n + 1))
