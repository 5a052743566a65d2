"""Moves batches from the event loop to a store on one dedicated writer thread.

Store writes block (sqlite commits, HTTP posts), so the event loop hands them to a single
thread: one thread keeps writes in submission order and never has two transactions of the
same store in flight. Other store operations that must stay ordered with the writes (opening
and closing gaps) go through :meth:`Writer.run` on the same thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from config.errors import StoreError

from .base import Store
from .batch import Batch

__all__ = ["Writer", "WriterStats"]

log = logging.getLogger("tierproof.store.writer")

T = TypeVar("T")


@dataclass(slots=True)
class WriterStats:
    batches_written: int = 0
    points_written: int = 0
    batches_failed: int = 0
    points_failed: int = 0
    last_error: str | None = None
    last_error_ns: int | None = None


class Writer:
    """Writes batches to ``store`` on one thread.

    - ``await write(batch)`` returns once the store has the batch durably (raises
      :class:`~config.errors.StoreError` if it failed): for acknowledging sources like MQTT.
    - ``await submit(batch)`` returns at once unless ``max_pending`` batches are already
      waiting, in which case it waits for room (backpressure on the collectors). A failed
      submitted write is logged with its traceback and counted in :attr:`stats`
      (``batches_failed``, ``last_error``); it does not stop later writes.
    - ``await close()`` waits for everything submitted, then stops the thread.
    """

    def __init__(self, store: Store, max_pending: int = 64) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        self.store = store
        self.max_pending = max_pending
        self.stats = WriterStats()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tierproof-writer")
        self._slots = asyncio.Semaphore(max_pending)
        self._pending: set[asyncio.Future[None]] = set()
        self._closed = False

    @property
    def pending(self) -> int:
        """Batches submitted and not yet written."""
        return len(self._pending)

    def _write(self, batch: Batch) -> None:  # on the writer thread
        self.store.write(batch)

    def _start(self, batch: Batch) -> asyncio.Future[None]:
        if self._closed:
            raise StoreError("writer is closed")
        fut = asyncio.get_running_loop().run_in_executor(self._executor, self._write, batch)
        self._pending.add(fut)
        fut.add_done_callback(lambda f: self._done(f, len(batch)))
        return fut

    def _done(self, fut: asyncio.Future[None], points: int) -> None:
        self._pending.discard(fut)
        self._slots.release()
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            self.stats.batches_written += 1
            self.stats.points_written += points
            return
        self.stats.batches_failed += 1
        self.stats.points_failed += points
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        self.stats.last_error_ns = time.time_ns()
        log.error("store write of %d points failed", points, exc_info=exc)

    async def submit(self, batch: Batch) -> None:
        """Queue a batch for writing; waits only while ``max_pending`` batches are queued."""
        await self._slots.acquire()
        try:
            self._start(batch)
        except BaseException:
            self._slots.release()
            raise

    async def write(self, batch: Batch) -> None:
        """Write a batch and return when it is durably stored (after all earlier batches)."""
        await self._slots.acquire()
        try:
            fut = self._start(batch)
        except BaseException:
            self._slots.release()
            raise
        try:
            # shielded: a cancelled caller must not leave the batch half-tracked
            await asyncio.shield(fut)
        except Exception as exc:
            raise StoreError(f"store write failed: {exc}") from exc

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run another store operation on the writer thread, after the batches queued so far."""
        if self._closed:
            raise StoreError("writer is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def flush(self) -> None:
        """Wait until every batch submitted so far is written (or failed)."""
        # asyncio.wait, unlike gather, does not cancel the writes if our caller is cancelled
        while self._pending:
            await asyncio.wait(set(self._pending))

    async def close(self) -> None:
        """Flush, then stop the writer thread. Idempotent."""
        if self._closed:
            return
        await self.flush()
        self._closed = True
        # one thread runs jobs in order: once this no-op ran, so did every earlier run() job
        await asyncio.get_running_loop().run_in_executor(self._executor, lambda: None)
        self._executor.shutdown(wait=True)
