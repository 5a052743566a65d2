"""Moves batches from the event loop to a store on one dedicated writer thread, with group commit.

Store writes block (sqlite commits, HTTP posts, spool appends with their ``fdatasync``), so the
event loop hands them to a single thread: one thread keeps writes in submission order and never
has two transactions of the same store in flight. Other store operations that must stay ordered
with the writes (opening and closing gaps) go through :meth:`Writer.run` on the same thread.

Group commit: batches that arrive while the thread is busy (a write in progress, or writes
queued before them) wait in one *group*; when the thread reaches the group it concatenates its
batches (columnar, :meth:`Batch.concat`) and writes them with one ``store.write``: one SQLite
transaction, one InfluxDB POST (per ``batch_size`` points), one spool append and one
``fdatasync``. No wait is added: a batch that finds the thread idle is written alone at once.
A group is closed when it holds ``group_max_points`` points (a batch that would pass the bound
starts the next group; a batch larger than the bound is a group of its own) or when a
:meth:`Writer.run` job is queued after it, so run jobs stay ordered with the batches around
them. The bound also bounds latency: a batch waits at most for the write in progress and then
its own group's write. Every batch of a group is acknowledged (``write()`` returns) only after
the group's write returned, i.e. when the store has all of it durably; if the group's write
raises, every batch of the group fails exactly as one batch written alone would.

Backpressure is counted in points as well as batches: the collectors wait once
``max_pending_points`` points (default: twice ``group_max_points``: one group being written,
one filling) or ``max_pending`` batches are submitted and not yet written. The bound in points
is what lets groups grow: by Little's law a store that takes ``W`` seconds per write can be fed
at most (points allowed in the writer) / ``W`` points/s, and 64 polls of 125 registers (8,000
points, the bound when it counted batches only) capped a gateway writing to InfluxDB at
25-40k points/s at ~0.1-0.25 s per POST, whatever InfluxDB could take; with the bound in
points a slow store gets larger groups (fewer, fuller POSTs, fewer of InfluxDB's WAL fsyncs)
instead of a stalled collector. Waiting submitters are admitted in arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from config.errors import StoreError

from .base import Store
from .batch import Batch

__all__ = ["DEFAULT_GROUP_MAX_POINTS", "DEFAULT_MAX_PENDING", "Writer", "WriterStats"]

log = logging.getLogger("tierproof.store.writer")

T = TypeVar("T")

#: default bound of one group commit, in points (see the module docstring)
DEFAULT_GROUP_MAX_POINTS = 50_000
#: default bound of batches submitted and not yet written (see ``max_pending_points`` too)
DEFAULT_MAX_PENDING = 4096
#: default interval of the throughput line logged at INFO
DEFAULT_LOG_INTERVAL_S = 60.0


@dataclass(slots=True)
class WriterStats:
    batches_written: int = 0
    points_written: int = 0
    batches_failed: int = 0
    points_failed: int = 0
    #: store writes (groups) done, successful or not; batches / groups is the mean group size
    groups_written: int = 0
    groups_failed: int = 0
    largest_group: int = 0  # batches
    last_error: str | None = None
    last_error_ns: int | None = None


@dataclass(eq=False, slots=True)
class _Group:
    """Batches written together; ``waiters[i]`` is the future of ``batches[i]`` when its caller
    awaits it (``write``), None for a submitted batch."""

    batches: list[Batch] = field(default_factory=list)
    waiters: list[asyncio.Future[None] | None] = field(default_factory=list)
    points: int = 0
    started: bool = False  # set on the writer thread: no batch may join any more


class Writer:
    """Writes batches to ``store`` on one thread, several waiting batches per store write.

    - ``await write(batch)`` returns once the store has the batch durably (raises
      :class:`~config.errors.StoreError` if it failed): for acknowledging sources like MQTT.
    - ``await submit(batch)`` returns at once unless ``max_pending`` batches or
      ``max_pending_points`` points are already waiting, in which case it waits for room
      (backpressure on the collectors; a batch larger than the bound waits until the writer
      holds nothing else). A failed
      submitted write is logged with its traceback and counted in :attr:`stats`
      (``batches_failed``, ``last_error``); it does not stop later writes.
    - ``await close()`` waits for everything submitted, then stops the thread.

    ``group_max_points`` bounds one group commit (see the module docstring); every
    ``log_interval_s`` seconds with writes a throughput line is logged at INFO.
    """

    def __init__(self, store: Store, max_pending: int = DEFAULT_MAX_PENDING, *,
                 group_max_points: int = DEFAULT_GROUP_MAX_POINTS,
                 max_pending_points: int | None = None,
                 log_interval_s: float = DEFAULT_LOG_INTERVAL_S) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        if group_max_points < 1:
            raise ValueError("group_max_points must be >= 1")
        if max_pending_points is not None and max_pending_points < 1:
            raise ValueError("max_pending_points must be >= 1")
        self.store = store
        self.max_pending = max_pending
        self.group_max_points = group_max_points
        self.max_pending_points = (2 * group_max_points if max_pending_points is None
                                   else max_pending_points)
        self.log_interval_s = log_interval_s
        self.stats = WriterStats()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tierproof-writer")
        # admission (backpressure): batches and points held, and the submitters waiting for
        # room in arrival order (points, future set once admitted); event loop only
        self._held_batches = 0
        self._held_points = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._pending: set[asyncio.Future[None]] = set()  # one per group
        self._pending_batches = 0
        self._open: _Group | None = None  # the newest group, if batches may still join it
        self._lock = threading.Lock()  # guards _Group.batches/started between the two threads
        self._closed = False
        self._window = [time.monotonic(), 0, 0, 0]  # start, points, batches, groups

    @property
    def pending(self) -> int:
        """Batches submitted and not yet written."""
        return self._pending_batches

    def _write_group(self, group: _Group) -> None:  # on the writer thread
        with self._lock:
            group.started = True
        self.store.write(Batch.concat(group.batches))

    def _start(self, batch: Batch, waiter: asyncio.Future[None] | None) -> None:
        if self._closed:
            raise StoreError("writer is closed")
        n = len(batch)
        with self._lock:
            g = self._open
            if g is not None and not g.started and g.points + n <= self.group_max_points:
                g.batches.append(batch)
                g.waiters.append(waiter)
                g.points += n
                self._pending_batches += 1
                return
        g = _Group([batch], [waiter], n)
        self._open = g
        fut = asyncio.get_running_loop().run_in_executor(self._executor, self._write_group, g)
        self._pending.add(fut)
        self._pending_batches += 1
        fut.add_done_callback(lambda f: self._done(f, g))

    def _done(self, fut: asyncio.Future[None], group: _Group) -> None:
        self._pending.discard(fut)
        if self._open is group:
            self._open = None
        k = len(group.batches)
        self._pending_batches -= k
        self._release(k, group.points)
        exc = None if fut.cancelled() else fut.exception()
        if fut.cancelled():
            exc = StoreError("store write cancelled")
        for w in group.waiters:
            if w is not None and not w.done():
                if exc is None:
                    w.set_result(None)
                else:
                    w.set_exception(exc)
        st = self.stats
        st.largest_group = max(st.largest_group, k)
        if exc is None:
            st.groups_written += 1
            st.batches_written += k
            st.points_written += group.points
            self._note(group.points, k)
            return
        st.groups_failed += 1
        st.batches_failed += k
        st.points_failed += group.points
        st.last_error = f"{type(exc).__name__}: {exc}"
        st.last_error_ns = time.time_ns()
        log.error("store write of %d points (%d batches) failed", group.points, k, exc_info=exc)

    def _note(self, points: int, batches: int) -> None:
        w = self._window
        w[1] += points
        w[2] += batches
        w[3] += 1
        now = time.monotonic()
        span = now - w[0]
        if span >= self.log_interval_s:
            log.info("%s: %.0f points/s, %.1f batches/s, %.1f writes/s, %.1f batches per write "
                     "over %.0f s", type(self.store).__name__, w[1] / span, w[2] / span,
                     w[3] / span, w[2] / w[3], span)
            self._window = [now, 0, 0, 0]

    def _fits(self, points: int) -> bool:
        return self._held_batches < self.max_pending and (
            self._held_points == 0 or self._held_points + points <= self.max_pending_points)

    async def _acquire(self, points: int) -> None:
        """Room for one batch of ``points`` points (FIFO: no batch passes an earlier waiter)."""
        if not self._waiting and self._fits(points):
            self._held_batches += 1
            self._held_points += points
            return
        entry = (points, asyncio.get_running_loop().create_future())
        self._waiting.append(entry)
        try:
            await entry[1]
        except asyncio.CancelledError:
            if entry[1].done() and not entry[1].cancelled():  # admitted, then cancelled
                self._release(1, points)
            else:
                with contextlib.suppress(ValueError):
                    self._waiting.remove(entry)
                self._admit()  # the next waiter may fit now
            raise

    def _release(self, batches: int, points: int) -> None:
        self._held_batches -= batches
        self._held_points -= points
        self._admit()

    def _admit(self) -> None:
        while self._waiting:
            points, fut = self._waiting[0]
            if fut.done():  # its submitter was cancelled
                self._waiting.popleft()
                continue
            if not self._fits(points):
                return
            self._waiting.popleft()
            self._held_batches += 1
            self._held_points += points
            fut.set_result(None)

    async def submit(self, batch: Batch) -> None:
        """Queue a batch for writing; waits only while the writer holds ``max_pending`` batches
        or ``max_pending_points`` points."""
        await self._acquire(len(batch))
        try:
            self._start(batch, None)
        except BaseException:
            self._release(1, len(batch))
            raise

    async def write(self, batch: Batch) -> None:
        """Write a batch and return when it is durably stored (after all earlier batches)."""
        await self._acquire(len(batch))
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            self._start(batch, waiter)
        except BaseException:
            self._release(1, len(batch))
            raise
        try:
            # shielded: a cancelled caller must not leave the batch half-tracked
            await asyncio.shield(waiter)
        except asyncio.CancelledError:
            # the group still resolves the future; retrieve its outcome so none goes unlogged
            waiter.add_done_callback(lambda f: f.cancelled() or f.exception())
            raise
        except Exception as exc:
            raise StoreError(f"store write failed: {exc}") from exc

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run another store operation on the writer thread, after the batches queued so far."""
        if self._closed:
            raise StoreError("writer is closed")
        self._open = None  # batches queued after this job must be written after it
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
