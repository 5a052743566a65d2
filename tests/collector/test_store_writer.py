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
            if float(b.value[0]) in self.fail_on:
                raise OSError(f"disk full at batch {b.value[0]}")
            self.written.append(float(b.value[0]))
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
