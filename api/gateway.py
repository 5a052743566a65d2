"""The running gateway: store, writer and supervised collectors, owned as one async context."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Self

from collector import Supervisor
from config.settings import Settings
from store import Store, TagRecord, open_store
from store.writer import Writer

log = logging.getLogger("tierproof.gateway")


def tag_records(settings: Settings) -> list[TagRecord]:
    """The store's view of every configured tag."""
    return [
        TagRecord(
            path=t.path,
            asset=t.asset,
            role=t.role.value,
            device=d.name,
            protocol=getattr(d, "protocol", ""),
            unit=t.unit,
            enum=t.enum,
        )
        for d, t in settings.all_tags()
    ]


class Gateway:
    """Owns the store (unless one is passed in), the writer thread and the supervisor."""

    def __init__(self, settings: Settings, store: Store | None = None, collect: bool = True) -> None:
        self.settings = settings
        self._own_store = store is None
        self.store: Store = store if store is not None else open_store(settings.store)
        self.tag_ids: dict[str, int] = self.store.register_tags(tag_records(settings))
        self.writer = Writer(self.store)
        self.supervisor: Supervisor | None = None
        self._collect = collect

    async def __aenter__(self) -> Self:
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
            if self.supervisor is not None:
                await self.supervisor.stop()
            await self.writer.close()
        finally:
            if self._own_store:
                self.store.close()
