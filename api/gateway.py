"""The running gateway: store, writer and supervised collectors, owned as one async context."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from types import TracebackType
from typing import Self

from collector import Supervisor
from collector.base import tag_record
from config.errors import StoreError
from config.settings import Settings
from store import Store, TagRecord, open_store
from store.writer import Writer

log = logging.getLogger("tierproof.gateway")


def tag_records(settings: Settings) -> list[TagRecord]:
    """The store's view of every configured tag."""
    return [tag_record(d, t) for d, t in settings.all_tags()]


class Gateway:
    """Owns the store (unless one is passed in), the writer thread and the supervisor."""

    def __init__(self, settings: Settings, store: Store | None = None, collect: bool = True) -> None:
        self.settings = settings
        self._own_store = store is None
        self.store: Store = store if store is not None else open_store(settings.store)
        self.tag_ids: dict[str, int] = self.store.register_tags(tag_records(settings))
        #: no devices, and a store other gateways write to (InfluxDB): the central tierproof,
        #: which learns the configured assets' tags from the store (``discover_tags``)
        self.central = not settings.devices and callable(getattr(self.store, "discover_tags", None))
        self._discovery: asyncio.Task[None] | None = None
        if self.central:
            try:
                self.discover()
            except StoreError as exc:  # InfluxDB not up yet: the periodic look finds them
                log.warning("central: cannot read the tag register yet: %s", exc)
        self.writer = Writer(self.store)
        self.supervisor: Supervisor | None = None
        self._collect = collect
        self._retention: asyncio.Task[None] | None = None

    def tag_id(self, path: str) -> int | None:
        """The store id of a tag path: configured, discovered at connect (OPC UA browse rules)
        or registered by an earlier run -- every tag that ``store.tags()`` lists."""
        if path in self.tag_ids:
            return self.tag_ids[path]
        if self.supervisor is not None and path in self.supervisor.tag_ids:
            return self.supervisor.tag_ids[path]
        for t in self.store.tags():  # rare: a tag this process has not met yet
            if t.path == path:
                self.tag_ids[path] = t.tag_id
                return t.tag_id
        return None

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

    async def __aenter__(self) -> Self:
        if getattr(self.settings.store, "retention_days", None) is not None:
            self._retention = asyncio.create_task(self._apply_retention(3600.0), name="retention")
        if self.central:
            self._discovery = asyncio.create_task(self._rediscover(60.0), name="discover-tags")
        if self._collect:
            self.supervisor = Supervisor(
                [d for d in self.settings.devices], self.store, self.writer, self.tag_ids
            )
            await self.supervisor.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            for task in (self._retention, self._discovery):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if self.supervisor is not None:
                await self.supervisor.stop()
            await self.writer.close()
        finally:
            if self._own_store:
                self.store.close()
