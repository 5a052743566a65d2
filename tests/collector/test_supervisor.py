"""Supervisor over real sockets and a real SqliteStore: gaps, reconnects, backoff, health."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Self

import numpy as np
import pytest

from collector import COLLECTORS, ModbusCollector, Supervisor, backoff_delays
from config.base import Backoff, DeviceBase
from config.signals import Quality
from simulators.modbus import RegisterImage
from store.batch import Batch
from store.sqlite import SqliteStore
from store.writer import Writer
from tests.collector.modbus_helpers import StartServer, mdevice, mtag
from tests.helpers import FAST, health, register, wait_until


def image(value: int) -> RegisterImage:
    img = RegisterImage()
    img.set_registers("holding", 0, [value, value + 1])
    return img


def two_tags(asset: str) -> list[Any]:
    return [mtag("a", 0, asset=asset), mtag("b", 1, asset=asset)]


async def test_device_outage_is_a_gap_and_other_devices_keep_going(
    start_server: StartServer, sqlite_store: SqliteStore
) -> None:
    server_a = await start_server({1: image(10)})
    server_b = await start_server({1: image(20)})
    dev_a = mdevice(server_a.port, two_tags("s/a/l/ma"), name="A", poll_interval_s=0.02,
                    timeout_s=0.3, backoff=FAST)
    dev_b = mdevice(server_b.port, two_tags("s/a/l/mb"), name="B", poll_interval_s=0.02,
                    timeout_s=0.3, backoff=FAST)
    ids = register(sqlite_store, dev_a, dev_b)
    writer = Writer(sqlite_store)
    async with Supervisor([dev_a, dev_b], sqlite_store, writer, ids) as sup:
        await wait_until(lambda: all(h.samples_delivered >= 10 for h in sup.status()),
                         what="both devices delivering")
        assert sqlite_store.gaps(None, 0, 2**62) == []  # nothing before: no startup gap

        await server_a.stop()
        await wait_until(lambda: health(sup, "A").gap_open_since is not None, what="gap on A")
        assert health(sup, "A").state in ("backoff", "connecting")
        open_gaps = sqlite_store.gaps("A", 0, 2**62)
        assert len(open_gaps) == 1 and open_gaps[0].end_ns is None
        # B goes on while A is down
        b_before = health(sup, "B").samples_delivered
        await wait_until(lambda: health(sup, "B").samples_delivered >= b_before + 20,
                         what="B delivering during A's outage")
        assert health(sup, "A").state != "connected"

        await server_a.start()  # same port
        await wait_until(lambda: health(sup, "A").gap_open_since is None, what="A's gap closed")
        a_after = health(sup, "A").samples_delivered
        await wait_until(lambda: health(sup, "A").samples_delivered > a_after + 4,
                         what="A delivering again")
        h = health(sup, "A")
        assert h.state == "connected" and h.reconnects >= 1
        assert h.last_error and str(server_a.port) in h.last_error
        assert health(sup, "B").reconnects == 0
    await writer.close()

    gaps = sqlite_store.gaps(None, 0, 2**62)
    assert [g.device for g in gaps] == ["A"]
    gap = gaps[0]
    assert gap.end_ns is not None and gap.start_ns < gap.end_ns
    # the gap runs from the gateway's last delivery of A before the outage to its first one
    # after it: A's last sample before lies before it, its first sample after lies in it at
    # the very end (sampled just before it was delivered), no other sample lies inside
    series = sqlite_store.read(ids[dev_a.tags[0].path], 0, 2**62, prior=False)
    ts = series.ts_ns
    before, after = ts[ts <= gap.start_ns], ts[ts > gap.start_ns]
    assert len(before) and len(after)
    assert gap.start_ns < int(after[0]) <= gap.end_ns
    assert not bool((after[1:] < gap.end_ns).any())
    assert bool((series.value == 10.0).all()) and bool((series.quality == 0).all())
    assert all(s.state == "stopped" for s in sup.status())


def test_backoff_delays_grow_and_are_bounded() -> None:
    exact = backoff_delays(Backoff(initial_s=0.5, max_s=4, multiplier=2, jitter=0))
    assert [next(exact) for _ in range(7)] == [0.5, 1, 2, 4, 4, 4, 4]
    b = Backoff(initial_s=0.5, max_s=4, multiplier=3, jitter=0.5)
    jittered = backoff_delays(b, random.Random(7))
    delays = [next(jittered) for _ in range(200)]
    assert max(delays) <= 4.0
    assert 0.25 <= delays[0] <= 0.75
    assert len({round(d, 6) for d in delays[5:]}) > 10  # jitter spreads reconnect storms


async def test_unreachable_device_backs_off_within_bounds(
    free_port: int, sqlite_store: SqliteStore
) -> None:
    dev = mdevice(free_port, two_tags("s/a/l/mx"), name="X",
                  backoff=Backoff(initial_s=0.01, max_s=0.08, multiplier=2, jitter=0.25))
    ids = register(sqlite_store, dev)
    delays: list[float] = []

    async def fake_sleep(s: float) -> None:
        delays.append(s)
        await asyncio.sleep(0)

    writer = Writer(sqlite_store)
    t0 = time.time_ns()
    sup = Supervisor([dev], sqlite_store, writer, ids, sleep=fake_sleep)
    async with sup:
        await wait_until(lambda: len(delays) >= 12, what="12 reconnect attempts")
        h = health(sup, "X")
        assert h.state in ("backoff", "connecting") and h.reconnects == 0
        assert h.samples_delivered == 0 and h.last_success is None
        assert h.last_error is not None and str(free_port) in h.last_error
        # the status names the device already: the reason does not repeat it ("X: X: ...")
        assert not h.last_error.startswith("X: "), h.last_error
        assert h.gap_open_since is not None and h.gap_open_since >= t0
    await writer.close()
    assert max(delays) <= 0.08
    assert 0.0075 <= delays[0] <= 0.0125
    assert all(0.06 <= d <= 0.08 for d in delays[6:])  # reached the cap
    # one gap for the whole outage, opened at the first attempt, closed at stop
    gaps = sqlite_store.gaps("X", 0, 2**62)
    assert len(gaps) == 1 and gaps[0].start_ns == h.gap_open_since and gaps[0].end_ns is not None


async def test_startup_records_gateway_not_running(
    start_server: StartServer, sqlite_store: SqliteStore
) -> None:
    """The outage starts at the last heartbeat, not at the newest sample (a report-by-exception
    source can be silent while connected); a gap a crash left open is closed at restart."""
    server = await start_server({1: image(1)})
    dev = mdevice(server.port, two_tags("s/a/l/m1"), name="M", poll_interval_s=0.05)
    fresh = mdevice(server.port, [mtag("c", 1, asset="s/a/l/m2")], name="N")
    ids = register(sqlite_store, dev, fresh)
    hour = 3600 * 10**9
    alive = time.time_ns() - hour
    sqlite_store.write(Batch.of([ids[dev.tags[0].path]], alive - 5 * hour, 1.0))  # old sample
    sqlite_store.mark_alive("M", alive)
    crashed = sqlite_store.open_gap("M", alive - 2 * hour, "connection refused")  # never closed
    writer = Writer(sqlite_store)
    before = time.time_ns()
    async with Supervisor([dev, fresh], sqlite_store, writer, ids, heartbeat_s=0.05) as sup:
        after = time.time_ns()
        await wait_until(lambda: health(sup, "M").samples_delivered > 0, what="M delivering")
        await wait_until(lambda: (sqlite_store.last_alive("N") or 0) > after, what="N heartbeat")
    await writer.close()
    gaps = sqlite_store.gaps(None, 0, 2**62)
    assert [(g.device, g.reason) for g in gaps] == [
        ("M", "connection refused"), ("M", "gateway not running")]
    assert gaps[0].gap_id == crashed and before <= (gaps[0].end_ns or 0) <= after
    assert gaps[1].start_ns == alive
    assert gaps[1].end_ns is not None and before <= gaps[1].end_ns <= after
    # a clean stop leaves a heartbeat at the stop, so the next start's gap begins there
    assert (sqlite_store.last_alive("M") or 0) >= after


class Flaky:
    """A driver that fails in unexpected ways on its first two connections."""

    connections = 0

    def __init__(self, device: DeviceBase, tag_ids: Mapping[str, int]) -> None:
        self.device = device
        self.ids = [tag_ids[t.path] for t in getattr(device, "tags", [])]

    async def __aenter__(self) -> Self:
        type(self).connections += 1
        if type(self).connections == 1:
            raise ValueError("bug in connect")
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        pass

    async def batches(self) -> AsyncIterator[Batch]:
        if type(self).connections == 2:
            raise RuntimeError("bug in poll")
        while True:
            await asyncio.sleep(0.01)
            yield Batch.of(self.ids, time.time_ns(), 1.0, Quality.UNCERTAIN)


async def test_driver_bugs_are_contained(
    start_server: StartServer, sqlite_store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server({1: image(5)})
    good = mdevice(server.port, two_tags("s/a/l/m1"), name="good", poll_interval_s=0.02)
    buggy = mdevice(server.port, two_tags("s/a/l/m2"), name="buggy", backoff=FAST)
    ids = register(sqlite_store, good, buggy)
    writer = Writer(sqlite_store)

    def factory(d: DeviceBase, tag_ids: Mapping[str, int]) -> Any:
        return Flaky(d, tag_ids) if d.name == "buggy" else ModbusCollector(d, tag_ids)

    with caplog.at_level(logging.ERROR, logger="tierproof.supervisor"):
        async with Supervisor([good, buggy], sqlite_store, writer, ids,
                              factories={"modbus": factory}) as sup:
            await wait_until(lambda: health(sup, "buggy").samples_delivered >= 10,
                             what="buggy device recovered")
            g0 = health(sup, "good").samples_delivered
            await wait_until(lambda: health(sup, "good").samples_delivered > g0, what="good")
            h = health(sup, "buggy")
            assert h.state == "connected" and h.reconnects == 1  # 3 connects, 2nd and 3rd count
            assert h.last_error is not None and "RuntimeError: bug in poll" in h.last_error
            assert health(sup, "good").reconnects == 0
    await writer.close()
    tracebacks = [r for r in caplog.records if r.exc_info and r.name == "tierproof.supervisor"]
    assert {type(r.exc_info[1]).__name__ for r in tracebacks if r.exc_info} == {
        "ValueError", "RuntimeError"
    }
    assert Flaky.connections >= 3


async def test_health_counts_bad_samples_and_tag_errors(
    start_server: StartServer, sqlite_store: SqliteStore
) -> None:
    img = image(7)
    img.set_illegal("holding", 1)
    server = await start_server({1: img})
    dev = mdevice(server.port, two_tags("s/a/l/m1"), name="M", poll_interval_s=0.02)
    off = mdevice(server.port, [mtag("c", 0, asset="s/a/l/m2")], name="off", enabled=False)
    ids = register(sqlite_store, dev, off)
    writer = Writer(sqlite_store)
    async with Supervisor([dev, off], sqlite_store, writer, ids) as sup:
        await wait_until(lambda: health(sup, "M").samples_delivered >= 5, what="samples")
        h = health(sup, "M")
        assert h.protocol == "modbus" and h.state == "connected"
        assert h.bad_samples >= 1 and h.bad_samples < h.samples_delivered
        assert set(h.tag_errors) == {dev.tags[1].path}
        assert h.last_success is not None
        assert health(sup, "off").state == "disabled"
        assert health(sup, "off").samples_delivered == 0
    await writer.close()
    assert {u for u, *_ in server.request_log} == {1}
    assert all(a in (0, 1) for _, _, a, _ in server.request_log)
    latest = sqlite_store.latest([ids[dev.tags[1].path]])
    assert latest[ids[dev.tags[1].path]].quality == Quality.BAD_CONFIG
    assert np.isnan(latest[ids[dev.tags[1].path]].value)


async def test_default_registry_and_unknown_tags(
    free_port: int, sqlite_store: SqliteStore
) -> None:
    assert COLLECTORS["modbus"] is ModbusCollector
    dev = mdevice(free_port, two_tags("s/a/l/m1"), name="M")
    writer = Writer(sqlite_store)
    # no tag ids: the driver refuses the configuration, which retrying cannot fix
    async with Supervisor([dev], sqlite_store, writer, {}) as sup:
        await wait_until(lambda: health(sup, "M").last_error is not None, what="an error")
        h = health(sup, "M")
        assert h.state == "stopped" and "s/a/l/m1/a" in (h.last_error or "")
        assert h.reconnects == 0 and h.gap_open_since is None
    await writer.close()
