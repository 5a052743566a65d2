"""store.writer: one writer thread, ordered, backpressure, errors surfaced, flush on close."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import numpy as np
import pytest

from config.errors import StoreError
from store.batch import Batch
from store.sqlite import SqliteStore
from store.writer import Writer


def batch(k: int, n: int = 3) -> Batch:
    return Batch.of(np.arange(n) + 1, 1_000_000_000 * (k + 1), float(k))


class SlowStore:
    """Records what was written, from which thread, and how many writes overlapped."""

    def __init__(self, gate: threading.Event | None = None, fail_on: set[float] | None = None):
        self.gate = gate
        self.fail_on = fail_on or set()
        self.written: list[float] = []
        self.writes = 0  # store.write calls (a group commit is one)
        self.threads: set[int] = set()
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()

    def write(self, b: Batch) -> None:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            self.threads.add(threading.get_ident())
            if self.gate is not None:
                assert self.gate.wait(20), "test gate never opened"
            values = sorted(set(b.value.tolist()))  # one value per test batch
            if self.fail_on.intersection(values):
                raise OSError(f"disk full at batch {values}")
            self.writes += 1
            self.written.extend(values)
        finally:
            with self.lock:
                self.active -= 1


async def test_write_is_durable_in_sqlite_on_return(sqlite_store: SqliteStore) -> None:
    w = Writer(sqlite_store)
    try:
        await w.write(batch(0))
        # read straight away, without flush: write() returned only after the commit
        s = sqlite_store.read(2, 0, 10**18)
        assert s.value.tolist() == [0.0] and s.ts_ns.tolist() == [1_000_000_000]
    finally:
        await w.close()


async def test_one_thread_in_order_with_backpressure() -> None:
    gate = threading.Event()
    store = SlowStore(gate)
    w = Writer(store, max_pending=3)  # type: ignore[arg-type]
    for k in range(3):
        await w.submit(batch(k))  # returns at once while there is room
    assert w.pending == 3
    fourth = asyncio.create_task(w.submit(batch(3)))
    await asyncio.sleep(0.05)
    assert not fourth.done()  # full: the producer waits
    gate.set()
    await asyncio.wait_for(fourth, 20)
    for k in range(4, 20):
        await w.submit(batch(k))
    await w.close()
    assert store.written == [float(k) for k in range(20)]
    assert len(store.threads) == 1 and threading.get_ident() not in store.threads
    assert store.max_active == 1
    assert w.stats.batches_written == 20 and w.stats.points_written == 60


async def test_submitted_failure_is_logged_and_counted_and_later_writes_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = SlowStore(fail_on={1.0})
    w = Writer(store)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="tierproof.store.writer"):
        for k in range(3):
            await w.submit(batch(k))
            await w.flush()  # one batch per store write: only batch 1 fails
        await w.close()
    assert store.written == [0.0, 2.0]
    assert w.stats.batches_failed == 1 and w.stats.points_failed == 3
    assert w.stats.last_error is not None and "disk full" in w.stats.last_error
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None


async def test_write_raises_store_error() -> None:
    store = SlowStore(fail_on={5.0})
    w = Writer(store)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="disk full") as err:
        await w.write(batch(5))
    assert isinstance(err.value.__cause__, OSError)
    await w.write(batch(6))
    await w.close()
    assert store.written == [6.0]


async def test_close_flushes_and_refuses_more() -> None:
    gate = threading.Event()
    store = SlowStore(gate)
    w = Writer(store, max_pending=100)  # type: ignore[arg-type]
    for k in range(10):
        await w.submit(batch(k))
    closing = asyncio.create_task(w.close())
    await asyncio.sleep(0.02)
    assert not closing.done()
    gate.set()
    await asyncio.wait_for(closing, 20)
    assert len(store.written) == 10
    with pytest.raises(StoreError):
        await w.submit(batch(11))


async def test_run_keeps_order_with_writes() -> None:
    store = SlowStore()
    w = Writer(store)  # type: ignore[arg-type]
    seen: list[Any] = []
    await w.submit(batch(0))
    await w.submit(batch(1))
    await w.run(lambda: seen.append(list(store.written)))
    await w.close()
    assert seen == [[0.0, 1.0]]


# ------------------------------------------------------------------ group commit


async def _hold_thread(w: Writer, gate: threading.Event) -> asyncio.Task[Any]:
    """Occupy the writer thread until ``gate`` is set (a long write in progress)."""
    held = asyncio.create_task(w.run(gate.wait, 20))
    await asyncio.sleep(0)  # the job is queued before anything the caller does next
    return held


async def test_concurrent_writes_are_one_transaction_and_readable_on_return(
    sqlite_store: SqliteStore,
) -> None:
    w = Writer(sqlite_store, max_pending=100)
    gate = threading.Event()
    seen: dict[int, list[float]] = {}

    async def one(tag: int, k: int) -> None:
        b = Batch.of(np.array([tag]), 1_000_000_000 * (k + 1), float(k))
        await w.write(b)
        # read straight away: the group holding this batch is committed
        seen[tag * 1000 + k] = sqlite_store.read(tag, 0, 10**18).value.tolist()

    try:
        held = await _hold_thread(w, gate)
        wave = [asyncio.create_task(one(t, 0)) for t in range(1, 51)]
        await asyncio.sleep(0.05)
        assert not any(t.done() for t in wave)  # nothing acknowledged before its commit
        assert w.pending == 50
        gate.set()
        await held
        await asyncio.gather(*wave)
        # 50 concurrent writes became one store write (one INSERT, one transaction)
        assert sqlite_store.stats().batches_written == 1
        assert w.stats.groups_written == 1 and w.stats.batches_written == 50
        assert all(seen[t * 1000] == [0.0] for t in range(1, 51))
        # without holding the thread: 200 writes to 5 tags, fewer store writes, each readable
        # with every earlier sample of its tag (order per series kept)
        before = sqlite_store.stats().batches_written
        await asyncio.gather(*(one(1 + k % 5, k) for k in range(1, 201)))
        writes = sqlite_store.stats().batches_written - before
        assert 1 <= writes < 200
        for k in range(1, 201):
            got = seen[(1 + k % 5) * 1000 + k]
            assert float(k) in got and got == sorted(got)
        assert sqlite_store.stats().points_written == 250 == w.stats.points_written
        assert w.stats.largest_group > 1
    finally:
        gate.set()
        await w.close()


async def test_failed_group_fails_every_batch_in_it(
    sqlite_store: SqliteStore, caplog: pytest.LogCaptureFixture,
) -> None:
    # a real fault: the store is closed while a group waits for the thread
    w = Writer(sqlite_store)
    gate = threading.Event()
    try:
        held = await _hold_thread(w, gate)
        waiting = [asyncio.create_task(w.write(batch(k))) for k in range(5)]
        for k in range(5, 8):
            await w.submit(batch(k))
        await asyncio.sleep(0)
        sqlite_store.close()
        with caplog.at_level(logging.ERROR, logger="tierproof.store.writer"):
            gate.set()
            await held
            results = await asyncio.gather(*waiting, return_exceptions=True)
            await w.flush()
        assert all(isinstance(r, StoreError) and "closed" in str(r) for r in results), results
        assert w.stats.groups_failed == 1 and w.stats.groups_written == 0
        assert w.stats.batches_failed == 8 and w.stats.points_failed == 24
        assert w.stats.batches_written == 0 and w.pending == 0
        assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    finally:
        gate.set()
        await w.close()


async def test_groups_are_bounded_and_stay_ordered_with_run_jobs() -> None:
    store = SlowStore()
    # room for all five batches while the thread is held (the default is 2 x 7 points)
    w = Writer(store, group_max_points=7, max_pending_points=100)  # type: ignore[arg-type]
    gate = threading.Event()
    seen: list[list[float]] = []
    held = await _hold_thread(w, gate)
    for k in range(5):
        await w.submit(batch(k))  # 3 points each: groups {0, 1}, {2, 3}, {4}
    snap = asyncio.create_task(w.run(lambda: seen.append(list(store.written))))
    await asyncio.sleep(0)
    await w.submit(batch(5))  # after the run job: not in the group of batch 4
    gate.set()
    await held
    await snap
    await w.close()
    assert seen == [[0.0, 1.0, 2.0, 3.0, 4.0]]
    assert store.written == [float(k) for k in range(6)]
    assert store.writes == 4 and w.stats.groups_written == 4 and store.max_active == 1


async def test_throughput_line_at_info(caplog: pytest.LogCaptureFixture) -> None:
    store = SlowStore()
    w = Writer(store, log_interval_s=0.0)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="tierproof.store.writer"):
        await w.write(batch(0))
        await w.close()
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(lines) == 1 and "points/s" in lines[0] and "batches per write" in lines[0]


# ------------------------------------------------------------------ backpressure in points


async def test_backpressure_counts_points_in_arrival_order() -> None:
    """The collectors wait once the writer holds max_pending_points points (not a number of
    batches): a slow store then gets larger groups instead of a stalled collector."""
    gate = threading.Event()
    store = SlowStore(gate)
    w = Writer(store, max_pending_points=10)  # type: ignore[arg-type]
    try:
        for k in range(3):
            await w.submit(batch(k))  # 9 points held
        big = asyncio.create_task(w.submit(batch(3, n=4)))  # 13 > 10: waits
        small = asyncio.create_task(w.submit(batch(4, n=1)))  # 10 would fit, but big came first
        await asyncio.sleep(0.05)
        assert not big.done() and not small.done()
        gate.set()
        await asyncio.wait_for(asyncio.gather(big, small), 20)
        await w.flush()
        assert store.written == [0.0, 1.0, 2.0, 3.0, 4.0]
    finally:
        gate.set()
        await w.close()


async def test_a_batch_above_the_bound_is_written_alone_and_a_cancelled_waiter_gives_way() -> None:
    gate = threading.Event()
    store = SlowStore(gate)
    w = Writer(store, max_pending_points=5)  # type: ignore[arg-type]
    try:
        await w.submit(batch(0, n=50))  # larger than the bound: admitted while nothing is held
        blocked = asyncio.create_task(w.submit(batch(1, n=2)))
        after = asyncio.create_task(w.submit(batch(2, n=2)))
        await asyncio.sleep(0.05)
        assert not blocked.done() and not after.done()
        blocked.cancel()  # its producer gave up: the next in line takes its turn
        gate.set()
        await asyncio.wait_for(after, 20)
        assert blocked.cancelled()
        await w.flush()
        assert store.written == [0.0, 2.0]
        assert w.pending == 0 and w._held_points == 0 and w._held_batches == 0
    finally:
        gate.set()
        await w.close()
