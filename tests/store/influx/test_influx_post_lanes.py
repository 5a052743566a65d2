"""Several POSTs in flight (``posts_in_flight``): a large write is split by series into lanes
posted at once, each series in one lane in order, against a real InfluxDB 1.6.

Batches *rewrite* points of the batch before them (same series and time, new value): InfluxDB
keeps the last value written, so a batch landing after a later one shows up as a stale value.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from config.base import Backoff
from config.errors import SinkUnavailable
from config.store import InfluxStoreSettings, SpoolSettings
from store import SpooledStore, TagRecord, open_store
from store.batch import Batch
from store.influx import InfluxStore
from store.influx.lp import MIN_LANE_POINTS, LineEncoder
from store.writer import Writer
from tests.helpers import wait_for
from tests.influx_servers import InfluxDB16

pytestmark = pytest.mark.influxdb

T0 = 1_760_000_000_000_000_000
TAGS = 61  # odd: a tag's lane is not its position's parity in a batch
PER_TAG = 20  # 61 x 20 + 61 = 1,281 points a batch: two lanes of >= MIN_LANE_POINTS (3 bodies)
FAST = Backoff(initial_s=0.05, max_s=0.5, multiplier=2.0, jitter=0.1)


def tag_records() -> list[TagRecord]:
    return [TagRecord(path=f"plant/area/line1/m{i % 3}/s{i}", asset=f"plant/area/line1/m{i % 3}",
                      role="analog", device=f"plc{i % 3}", protocol="modbus") for i in range(TAGS)]


def batch_k(k: int, ids: list[int]) -> Batch:
    """PER_TAG new points per tag (interleaved by tag, as polls are), plus (k > 0) batch k-1's
    first point of every tag rewritten to -k."""
    tid = np.tile(np.array(ids, np.int32), PER_TAG)
    i = np.repeat(np.arange(PER_TAG), len(ids))
    ts = T0 + k * 1_000_000 + i * 1000
    val = k * 1000.0 + i
    if k > 0:
        tid = np.concatenate([tid, np.array(ids, np.int32)])
        ts = np.concatenate([ts, np.full(len(ids), T0 + (k - 1) * 1_000_000)])
        val = np.concatenate([val, np.full(len(ids), -float(k))])
    return Batch.of(tid, ts, val)


def expected(n: int, ids: list[int]) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {f"s{i}": {} for i in range(TAGS)}
    sig = {tid: f"s{n}" for n, tid in enumerate(ids)}
    for k in range(n):
        b = batch_k(k, ids)
        for t, ts, v in zip(b.tag_id.tolist(), b.ts_ns.tolist(), b.value.tolist(), strict=True):
            out[sig[t]][ts] = v
    return out


def stored(server: InfluxDB16) -> dict[str, dict[int, float]]:
    body: Any = server.query('SELECT "value" FROM "tierproof" GROUP BY "signal"', server.database)
    out: dict[str, dict[int, float]] = {f"s{i}": {} for i in range(TAGS)}
    for series in body["results"][0].get("series", []):
        out[series["tags"]["signal"]] = {int(ts): float(v) for ts, v in series["values"]}
    return out


def settings(server: InfluxDB16, tmp_path: Path, lanes: int) -> InfluxStoreSettings:
    return InfluxStoreSettings(
        type="influx", api="v1", url=server.url, database=server.database, timeout_s=3.0,
        # a write is split into lanes only when it needs more than one body of batch_size
        batch_size=500, posts_in_flight=lanes, meta_path=str(tmp_path / "meta.db"),
        spool=SpoolSettings(path=str(tmp_path / "spool"), backoff=FAST),
    )


class Watched:
    """Notes the POSTs of a sink as they run: how many were in flight at most, and on which
    threads (instrumentation around the real sink; every POST still goes to InfluxDB).

    ``meet``: the first ``meet`` POSTs wait for each other (at most 30 s) before they go on,
    so POSTs issued at once are seen in flight together however the threads are scheduled
    (they overlapped only by chance on a loaded machine); POSTs issued one after the other
    never meet, and the first one fails."""

    def __init__(self, store: InfluxStore, fail_once: str | None = None, meet: int = 0) -> None:
        self.meet = threading.Barrier(meet) if meet else None
        self.calls = 0
        self.sink: Any = store._sink
        self.post = self.sink.post
        self.lock = threading.Lock()
        self.now = self.most = 0
        self.threads: set[str] = set()
        self.done_ns: list[int] = []
        self.fail_once = fail_once
        self.sink.post = self.watched

    def watched(self, body: bytes) -> int:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.threads.add(threading.current_thread().name)
            fail = self.fail_once is not None and self.fail_once.encode() in body
            if fail:
                self.fail_once = None
            self.calls += 1
            meet = self.meet if self.meet is not None and self.calls <= self.meet.parties else None
        try:
            if meet is not None:
                meet.wait(30)  # BrokenBarrierError: the POSTs were not issued at once
            if fail:
                # A fault InfluxDB cannot be made to produce on cue: one of several concurrent
                # POSTs fails while the others are taken. Raised after the others had time to
                # land, as a timeout would be.
                time.sleep(0.3)
                raise SinkUnavailable("injected: this one POST timed out", unreachable=True)
            return int(self.post(body))
        finally:
            with self.lock:
                self.now -= 1
                self.done_ns.append(time.monotonic_ns())


def test_lanes_split_by_series_and_keep_each_series_in_order() -> None:
    keys = {t: f"m,signal=s{t}" for t in range(TAGS)}
    enc = LineEncoder(keys)
    # two batches as one group: the second rewrites a point of the first in every series
    b = Batch.concat([batch_k(3, list(range(TAGS))), batch_k(4, list(range(TAGS)))])
    whole = enc.encode(b, 10**9)[0].decode().splitlines()
    lanes = enc.encode_lanes(b, 100, 4)
    k = min(4, len(b) // MIN_LANE_POINTS)
    assert len(lanes) == k > 1
    assert all(len(body.decode().splitlines()) <= 100 for lane in lanes for body in lane)
    per_lane = [[ln for body in lane for ln in body.decode().splitlines()] for lane in lanes]
    assert sorted(ln for lane in per_lane for ln in lane) == sorted(whole)

    def by_series(lines: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for ln in lines:
            out.setdefault(ln.split(" ", 1)[0], []).append(ln)
        return out

    owner: dict[str, int] = {}
    for j, lane in enumerate(per_lane):
        for key, lines in by_series(lane).items():
            assert owner.setdefault(key, j) == j, f"{key} in lanes {owner[key]} and {j}"
            assert lines == by_series(whole)[key], f"{key}: lines out of batch order"
    # a small write is one lane: one POST
    assert len(enc.encode_lanes(Batch.of([1, 2], [T0, T0], [1.0, 2.0]), 100, 4)) == 1
    # so is a write that fits one body, however many lanes it could fill (2,562 points)
    assert [len(lane) for lane in enc.encode_lanes(b, len(b), 4)] == [1]
    # and a write of two bodies takes two lanes, not four
    assert len(enc.encode_lanes(b, len(b) - 1, 4)) == 2


def test_a_large_write_posts_its_lanes_at_once(influxdb16: InfluxDB16, tmp_path: Path) -> None:
    store = InfluxStore(settings(influxdb16, tmp_path, lanes=2))
    try:
        reg = store.register_tags(tag_records())
        ids = [reg[t.path] for t in tag_records()]
        w = Watched(store, meet=2)
        for k in range(6):
            store.write(batch_k(k, ids))
        assert w.most == 2 and len(w.threads) == 2, (w.most, w.threads)
        assert stored(influxdb16) == expected(6, ids)
    finally:
        store.close()


def test_one_lane_failing_spools_the_whole_write_after_every_lane_finished(
    influxdb16: InfluxDB16, tmp_path: Path
) -> None:
    store = open_store(settings(influxdb16, tmp_path, lanes=2))
    assert isinstance(store, SpooledStore) and isinstance(store.inner, InfluxStore)
    try:
        reg = store.register_tags(tag_records())
        ids = [reg[t.path] for t in tag_records()]
        store.write(batch_k(0, ids))
        w = Watched(store.inner, fail_once=",signal=s1,", meet=2)  # s1's lane, of the next write
        store.write(batch_k(1, ids))  # one lane taken, one failed: spooled, write returns
        returned = time.monotonic_ns()
        assert w.most == 2 and max(w.done_ns) <= returned  # no POST of it still in flight
        assert store.forward.spooled_batches == 1 and store.forward.sink == "unavailable"
        for k in range(2, 5):  # behind it in the spool, whatever lane they would take
            store.write(batch_k(k, ids))
        assert store.wait_drained(30), store.spool_stats()
        assert stored(influxdb16) == expected(5, ids)
    finally:
        store.close()


async def test_outage_mid_flight_loses_nothing_and_keeps_each_series_in_order(
    influxdb16: InfluxDB16, tmp_path: Path
) -> None:
    """The gateway's path (Writer, group commit, SpooledStore, 4 lanes): InfluxDB stopped
    while writes are in flight and started again; every acknowledged point is there once, and
    every rewritten point holds the last value written."""
    store = open_store(settings(influxdb16, tmp_path, lanes=4))
    assert isinstance(store, SpooledStore)
    writer = Writer(store)
    try:
        reg = store.register_tags(tag_records())
        ids = [reg[t.path] for t in tag_records()]
        acked: list[int] = []
        n = 0

        async def write(k: int) -> None:
            await writer.write(batch_k(k, ids))
            acked.append(k)

        async def burst(count: int) -> None:
            nonlocal n
            await asyncio.gather(*(write(k) for k in range(n, n + count)))
            n += count

        await burst(10)
        stop = asyncio.create_task(asyncio.to_thread(influxdb16.stop))
        while not stop.done():  # writes in flight while it goes down
            await burst(3)
        await burst(10)  # while it is down: spooled
        assert store.forward.spooled_batches > 0
        await asyncio.to_thread(influxdb16.start)
        await burst(10)
        assert sorted(acked) == list(range(n))
        assert await asyncio.to_thread(store.wait_drained, 60), store.spool_stats()
        got, want = stored(influxdb16), expected(n, ids)
        for sig in want:
            assert got[sig] == want[sig], f"{sig}: a write landed out of order or not at all"
        f = store.forward
        # each acknowledged point went to InfluxDB once: directly, or from the spool
        assert f.direct_points + f.drained_points == sum(len(batch_k(k, ids)) for k in range(n))
        assert store.spool_stats()["dropped_points"] == 0
    finally:
        await writer.close()
        store.close()


def test_small_writes_are_one_post(influxdb16: InfluxDB16, tmp_path: Path) -> None:
    store = InfluxStore(settings(influxdb16, tmp_path, lanes=4))
    try:
        reg = store.register_tags(tag_records())
        ids = [reg[t.path] for t in tag_records()]
        w = Watched(store)
        store.write(Batch.of(np.array(ids[:10], np.int32), T0, 1.0))
        wait_for(lambda: w.done_ns, 30, "the POST")
        assert w.most == 1 and len(w.threads) == 1
    finally:
        store.close()
