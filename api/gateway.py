"""The running gateway: store, writer and supervised collectors, owned as one async context.

With ``isolate=True`` (what the API and ``tierproof run`` use) the collectors, the writer's
event-loop side, retention and the stall detector run on their **own event loop in their own
thread** ("tierproof-collect"), not on the loop that serves HTTP: nothing a request does on
the API's loop (parsing, serialising a large answer, accepting a flood of connections, logging
about it) can delay a poll, a subscription or an ack. KPI computations run on their own worker
threads (``api.flight``). What still shares the process -- the GIL, the CPU, the file
descriptors -- is bounded by the API's limits (``api.serving``), and any time the collectors'
loop could not run anyway is recorded as a gap by :class:`~collector.stall.StallMonitor`.
See ``docs/architecture.md``, "Collection is isolated from serving".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

from collector import StallMonitor, Supervisor
from collector.base import tag_record
from config.errors import StoreError
from config.settings import Settings
from store import SqliteStore, Store, TagIndex, TagRecord, open_store
from store.writer import Writer

log = logging.getLogger("tierproof.gateway")

T = TypeVar("T")


def tag_records(settings: Settings) -> list[TagRecord]:
    """The store's view of every configured tag."""
    return [tag_record(d, t) for d, t in settings.all_tags()]


class Gateway:
    """Owns the store (unless one is passed in), the writer thread and the supervisor."""

    def __init__(self, settings: Settings, store: Store | None = None, collect: bool = True,
                 *, isolate: bool = False, stall_tolerance_s: float | None = None) -> None:
        self.settings = settings
        self._own_store = store is None
        self.store: Store = store if store is not None else open_store(settings.store)
        self.tag_ids: dict[str, int] = self.store.register_tags(tag_records(settings))
        #: the store's tags by path and id, listed again only when they change: what every
        #: route resolving a path to its tag record asks (``store.tag_index``)
        self.tags = TagIndex(self.store)
        #: no devices, and a store other gateways write to (InfluxDB): the central tierproof,
        #: which learns the configured assets' tags from the store (``discover_tags``)
        self.central = not settings.devices and callable(getattr(self.store, "discover_tags", None))
        self._discovery: asyncio.Task[None] | None = None
        if self.central:
            try:
                self.discover()
            except StoreError as exc:  # InfluxDB not up yet: the periodic look finds them
                log.warning("central: cannot read the tag register yet: %s", exc)
        self.writer = Writer(self.store, group_max_points=settings.store.group_max_points)
        self.supervisor: Supervisor | None = None
        self.stall: StallMonitor | None = None
        self._collect = collect
        self._isolate = isolate
        self._stall_tolerance_s = stall_tolerance_s
        self._retention: asyncio.Task[None] | None = None
        #: the collectors' own loop and its thread (isolate=True), None otherwise
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def tag_id(self, path: str) -> int | None:
        """The store id of a tag path: configured, discovered at connect (OPC UA browse rules)
        or registered by an earlier run -- every tag that ``store.tags()`` lists."""
        if path in self.tag_ids:
            return self.tag_ids[path]
        if self.supervisor is not None and path in self.supervisor.tag_ids:
            return self.supervisor.tag_ids[path]
        t = self.tags.by_path(path)  # discovered, or registered by an earlier run
        return None if t is None else t.tag_id

    def latest_on_loop(self) -> bool:
        """Whether ``store.latest`` of a few tags may run on the event loop now: the embedded
        store with every recent write's summary in memory (no row to decode: tens of us).
        Never another store: InfluxDB's (or the spool's in front of it) is a network round
        trip."""
        store = self.store
        return isinstance(store, SqliteStore) and store.latest_in_memory()

    def discover(self) -> int:
        """Learn the tags of the configured assets from the store (the central tierproof)."""
        assets = [a.path for a in self.settings.assets]
        n: int = self.store.discover_tags(assets)  # type: ignore[attr-defined]
        have = {t.asset for t in self.store.tags()}
        missing = [a for a in assets if a not in have]
        log.info("central: %d tags of %d assets found in the store%s", n, len(assets) - len(missing),
                 f"; no tags yet for {', '.join(missing)} (no gateway has registered them)"
                 if missing else "")
        return n

    async def _rediscover(self, every_s: float) -> None:
        """Gateways started later register their tags later: look again every ``every_s``."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await asyncio.to_thread(self.discover)
            except Exception:
                log.exception("central: reading the tag register failed; will retry")

    async def _apply_retention(self, every_s: float) -> None:
        """Delete samples past ``store.retention_days`` at start and then every ``every_s``."""
        while True:
            try:
                deleted = await self.writer.run(self.store.apply_retention, time.time_ns())
                if deleted:
                    log.info("retention: deleted %d samples older than %s days",
                             deleted, getattr(self.settings.store, "retention_days", None))
            except Exception:
                log.exception("retention failed; will retry")
            await asyncio.sleep(every_s)

    async def _start(self) -> None:  # on the collectors' loop
        if getattr(self.settings.store, "retention_days", None) is not None:
            self._retention = asyncio.create_task(self._apply_retention(3600.0), name="retention")
        if self.central:
            self._discovery = asyncio.create_task(self._rediscover(60.0), name="discover-tags")
        if self._collect:
            self.supervisor = Supervisor(
                [d for d in self.settings.devices], self.store, self.writer, self.tag_ids
            )
            await self.supervisor.start()
            kwargs = {} if self._stall_tolerance_s is None else {"tolerance_s": self._stall_tolerance_s}
            self.stall = StallMonitor(self.supervisor.record_stall, **kwargs)
            await self.stall.__aenter__()

    async def _stop(self) -> None:  # on the collectors' loop
        if self.stall is not None:
            await self.stall.__aexit__(None, None, None)
        for task in (self._retention, self._discovery):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.supervisor is not None:
            await self.supervisor.stop()
        await self.writer.close()

    def _run_loop(self, loop: asyncio.AbstractEventLoop) -> None:  # the collectors' thread
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _on_collectors(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the collectors' loop and wait for it without blocking this loop."""
        assert self.loop is not None
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def _end_thread(self) -> None:
        loop, thread = self.loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join)
        self.loop, self._thread = None, None

    async def __aenter__(self) -> Self:
        if not self._isolate:
            await self._start()
            return self
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, args=(self.loop,),
                                        name="tierproof-collect", daemon=True)
        self._thread.start()
        try:
            await self._on_collectors(self._start())
        except BaseException:
            with contextlib.suppress(Exception):
                await self._on_collectors(self._stop())
            await self._end_thread()
            if self._own_store:
                self.store.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._isolate:
                try:
                    await self._on_collectors(self._stop())
                finally:
                    await self._end_thread()
            else:
                await self._stop()
        finally:
            if self._own_store:
                self.store.close()
