"""Stores: where batches go and where KPIs read them from.

Backends are chosen by the explicit :data:`STORES` registry (config ``store.type``);
importing this package opens nothing and registers nothing.
"""

from __future__ import annotations

from config.errors import StoreError
from config.settings import SqliteStoreSettings, StoreSettings

from .base import Gap, Latest, Store, StoreStats, TagRecord
from .batch import Batch, Series
from .sqlite import SCHEMA_VERSION, SqliteStore

__all__ = [
    "SCHEMA_VERSION",
    "STORES",
    "Batch",
    "Gap",
    "Latest",
    "Series",
    "SqliteStore",
    "Store",
    "StoreStats",
    "TagRecord",
    "open_store",
]

#: config ``store.type`` -> backend class
STORES: dict[str, type[SqliteStore]] = {"sqlite": SqliteStore}


def open_store(settings: StoreSettings) -> Store:
    """Open the store that ``settings`` describe."""
    if not isinstance(settings, SqliteStoreSettings):
        raise StoreError(f"store type {settings.type!r} is not available yet")
    cls = STORES[settings.type]
    return cls(
        settings.path,
        synchronous=settings.synchronous,
        retention_days=settings.retention_days,
        compact_every=settings.compact_every,
    )
